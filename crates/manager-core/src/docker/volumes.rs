//! Data volumes and the ways data enters or leaves them: volumes made ahead, restore staging,
//! tar archives.

use std::collections::HashMap;

use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{
    CreateContainerOptions, ListVolumesOptions, RemoveVolumeOptions, UploadToContainerOptions,
};
use futures::{Stream, StreamExt};

use super::{DockerClient, ManagedVolume};
use crate::error::{Error, Result};
use crate::names;
use crate::spec::{
    helper_name, staging_volume_name, volume_name, BucketSpec, LABEL_BUCKET_ID, LABEL_INSTANCE,
    LABEL_MANAGED, LABEL_POOL,
};

impl DockerClient {
    /// Creates the bucket's data volume (idempotent: an existing volume is kept, data and all).
    pub async fn create_volume(&self, spec: &BucketSpec) -> Result<String> {
        self.labelled_volume(spec, volume_name(&spec.id)).await
    }

    /// Creates volume `name` with the bucket's labels and `extra` (an existing one is kept).
    pub async fn labelled_volume_with(
        &self,
        spec: &BucketSpec,
        name: String,
        extra: HashMap<String, String>,
    ) -> Result<String> {
        names::check("volume", &name)?;
        let mut labels = spec.volume_labels();
        labels.extend(extra);
        let req = VolumeCreateRequest {
            name: Some(name.clone()),
            labels: Some(labels),
            ..Default::default()
        };
        self.docker
            .create_volume(req)
            .await
            .map_err(|e| Error::docker("create volume", e))?;
        Ok(name)
    }

    /// Creates volume `name` with the bucket's labels (an existing one is kept).
    async fn labelled_volume(&self, spec: &BucketSpec, name: String) -> Result<String> {
        self.labelled_volume_with(spec, name, HashMap::new()).await
    }

    /// Makes the data volume of a bucket that does not exist yet (id `id`, labelled as made
    /// ahead) and writes fresh internal certificates into it through a helper of `image`
    /// mounted at `data_path`, so the bucket's first container starts without that step.
    pub async fn prepare_volume(
        &self,
        id: &str,
        image: &str,
        data_path: &str,
        internal_security: bool,
    ) -> Result<()> {
        let name = volume_name(id);
        names::check("volume", &name)?;
        let req = VolumeCreateRequest {
            name: Some(name.clone()),
            labels: Some(HashMap::from([
                (LABEL_MANAGED.to_string(), "true".to_string()),
                (LABEL_INSTANCE.to_string(), self.instance.clone()),
                (LABEL_BUCKET_ID.to_string(), id.to_string()),
                (LABEL_POOL.to_string(), "true".to_string()),
            ])),
            ..Default::default()
        };
        self.docker
            .create_volume(req)
            .await
            .map_err(|e| Error::docker("create volume", e))?;
        if !internal_security {
            return Ok(());
        }
        let helper = helper_name(id, "prepare");
        self.remove_container(&helper).await?;
        let body = bollard::models::ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(vec!["kalpana-data-helper-is-never-started".to_string()]),
            labels: Some(HashMap::from([
                (LABEL_MANAGED.to_string(), "true".to_string()),
                (LABEL_INSTANCE.to_string(), self.instance.clone()),
                (LABEL_BUCKET_ID.to_string(), id.to_string()),
                (crate::spec::LABEL_HELPER.to_string(), "prepare".to_string()),
            ])),
            network_disabled: Some(true),
            host_config: Some(bollard::models::HostConfig {
                binds: Some(vec![format!("{name}:{data_path}")]),
                network_mode: Some("none".to_string()),
                cap_drop: Some(vec!["ALL".to_string()]),
                security_opt: Some(vec!["no-new-privileges:true".to_string()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptions {
            name: Some(helper.clone()),
            ..Default::default()
        };
        self.docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| Error::docker("create data helper", e))?;
        let written = self.write_internal_tls(&helper, data_path).await;
        self.remove_container(&helper).await?;
        written
    }

    /// Removes a volume; a missing one is fine.
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        names::check("volume", name)?;
        let opts = RemoveVolumeOptions { force: true };
        match self.docker.remove_volume(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) => match Error::docker("remove volume", e) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Whether a volume exists.
    pub async fn volume_exists(&self, name: &str) -> Result<bool> {
        names::check("volume", name)?;
        match self.docker.inspect_volume(name).await {
            Ok(_) => Ok(true),
            Err(e) => match Error::docker("inspect volume", e) {
                e if e.is_not_found() => Ok(false),
                e => Err(e),
            },
        }
    }

    /// A tar stream of `path` inside a container (Docker reads it from the container's mounts;
    /// the container may be paused).
    pub fn archive(
        &self,
        name: &str,
        path: &str,
    ) -> futures::stream::BoxStream<'static, Result<bytes::Bytes>> {
        if let Err(e) = names::check("container", name) {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        let opts = bollard::query_parameters::DownloadFromContainerOptions {
            path: path.to_string(),
        };
        self.docker
            .download_from_container(name, Some(opts))
            .map(|r| r.map_err(|e| Error::docker("archive", e)))
            .boxed()
    }

    /// Writes a tar stream into a container at `path` (Docker extracts it as it arrives; the
    /// container may be created and never started). A body that fails fails the upload.
    pub async fn upload_archive(
        &self,
        name: &str,
        path: &str,
        tar: impl Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    ) -> Result<()> {
        names::check("container", name)?;
        let opts = UploadToContainerOptions {
            path: path.to_string(),
            ..Default::default()
        };
        self.docker
            .upload_to_container(name, Some(opts), bollard::body_try_stream(tar))
            .await
            .map_err(|e| Error::docker("extract archive", e))
    }

    /// Makes the restore staging volume of a bucket, empty: one left by an earlier attempt is
    /// removed first.
    pub async fn fresh_staging_volume(&self, spec: &BucketSpec) -> Result<String> {
        let name = staging_volume_name(&spec.id);
        self.remove_container(&helper_name(&spec.id, "staging"))
            .await?;
        self.remove_volume(&name).await?;
        self.labelled_volume(spec, name).await
    }

    /// Every volume this daemon instance manages: name, bucket id, and whether it was made
    /// ahead of its bucket and not yet given to one.
    pub async fn list_managed_volumes(&self) -> Result<Vec<ManagedVolume>> {
        let opts = ListVolumesOptions {
            filters: Some(self.managed_filters()),
        };
        let resp = self
            .docker
            .list_volumes(Some(opts))
            .await
            .map_err(|e| Error::docker("list volumes", e))?;
        Ok(resp
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| ManagedVolume {
                bucket_id: v.labels.get(LABEL_BUCKET_ID).cloned(),
                made_ahead: v.labels.contains_key(LABEL_POOL),
                name: v.name,
            })
            .collect())
    }
}
