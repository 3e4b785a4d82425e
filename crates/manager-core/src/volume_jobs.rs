//! Volume jobs as a node agent runs them on its own engine (the `swarm` runtime's data jobs):
//! the same pipeline as the `docker` runtime's, but reading the volume through a data helper
//! (the bucket's server is a Swarm task the daemon has stopped first) and with the archive's
//! bytes handed to whatever stores or fetches them (presigned URLs, from the agent).

use std::future::Future;

use futures::TryStreamExt;

use crate::archive::{self, ByteStream, OpenKey, SealKey};
use crate::docker_runtime::{DockerRuntime, Metered};
use crate::error::{Error, Result};
use crate::runtime::{JobOutcome, Progress, VolumeRole};
use crate::spec::{staging_volume_name, volume_name, BucketSpec, LABEL_SET_ASIDE};

impl DockerRuntime {
    /// Archives the bucket's volume through an export helper (nothing may write to it
    /// meanwhile: the caller stopped its server): tar, zstd, sealed with `seal`; `upload`
    /// stores the stream. The helper is removed whatever happened.
    pub async fn archive_volume<F, Fut>(
        &self,
        spec: &BucketSpec,
        seal: &SealKey,
        progress: Progress,
        upload: F,
    ) -> Result<JobOutcome>
    where
        F: FnOnce(ByteStream) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let docker = self.docker();
        let helper = docker
            .create_helper(spec, &volume_name(&spec.id), "export")
            .await?;
        let result = async {
            let tar = docker
                .archive(&helper, spec.engine.data_path)
                .map_err(std::io::Error::other);
            let reader = tokio_util::io::StreamReader::new(tar);
            let zstd = async_compression::tokio::bufread::ZstdEncoder::new(reader);
            let compressed: ByteStream = Box::pin(tokio_util::io::ReaderStream::new(zstd));
            let (stored, meter) = Metered::wrap(archive::seal(seal, compressed), progress);
            upload(stored).await?;
            Ok::<_, Error>(meter.outcome())
        }
        .await;
        if let Err(e) = docker.remove_container(&helper).await {
            tracing::warn!(bucket = %spec.id, error = %e, "removing the export helper failed");
        }
        result
    }

    /// Fills one of the bucket's volumes from `stored` (the archive as stored), opened with
    /// `open`. A failure part-way is [`Error::Job`] with what was read by then.
    pub async fn fill_volume(
        &self,
        spec: &BucketSpec,
        role: VolumeRole,
        open: OpenKey,
        progress: Progress,
        stored: ByteStream,
    ) -> Result<JobOutcome> {
        let docker = self.docker();
        let volume = match role {
            VolumeRole::Data => {
                docker.create_volume(spec).await?;
                volume_name(&spec.id)
            }
            VolumeRole::Staging => docker.fresh_staging_volume(spec).await?,
        };
        let (stored, meter) = Metered::wrap(stored, progress);
        let compressed = archive::open(open, stored);
        let reader = tokio_util::io::StreamReader::new(compressed);
        let tar = async_compression::tokio::bufread::ZstdDecoder::new(reader);
        let tar: ByteStream = Box::pin(tokio_util::io::ReaderStream::new(tar));
        let role_name = match role {
            VolumeRole::Data => "import",
            VolumeRole::Staging => "staging",
        };
        let extracted = self.extract_into(spec, &volume, role_name, tar).await;
        let outcome = meter.outcome();
        match extracted {
            Ok(()) => Ok(outcome),
            // A damaged archive fails to open or to extract: the caller compares the outcome
            // with what it expects and says so in its own words.
            Err(e) => Err(Error::Job {
                what: "filling the volume",
                message: e.to_string(),
                outcome: Some(outcome),
            }),
        }
    }

    /// Makes the bucket's volume anew from its staging volume; the containers that held the
    /// old one (stopped Swarm tasks) go first. Repeatable.
    pub async fn volume_from_staging(&self, spec: &BucketSpec) -> Result<()> {
        let docker = self.docker();
        self.remove_volume_and_holders(&volume_name(&spec.id))
            .await?;
        crate::fault::point("restore.emptied");
        docker.create_volume(spec).await?;
        let from = docker
            .create_helper(spec, &staging_volume_name(&spec.id), "export")
            .await?;
        let tar: ByteStream = Box::pin(
            docker
                .archive(&from, spec.engine.data_path)
                .map_err(std::io::Error::other),
        );
        let copied = self
            .extract_into(spec, &volume_name(&spec.id), "import", tar)
            .await;
        if let Err(e) = docker.remove_container(&from).await {
            tracing::warn!(bucket = %spec.id, error = %e, "removing the export helper failed");
        }
        copied
    }

    /// Moves the bucket's data volume on this engine aside into volume `name` (labelled
    /// [`LABEL_SET_ASIDE`] with `evacuated_at`): copied, then the original and the stopped
    /// containers holding it removed, so nothing here can serve it again. False when there is
    /// no such volume; repeatable (a copy made before a failure is made again).
    pub async fn set_aside_volume(
        &self,
        spec: &BucketSpec,
        name: &str,
        evacuated_at: &str,
    ) -> Result<bool> {
        let docker = self.docker();
        let data = volume_name(&spec.id);
        if !docker.volume_exists(&data).await? {
            return Ok(false);
        }
        // A running holder (a task the node's engine restarted) must not be copied under it.
        for holder in docker.containers_using(&data).await? {
            if holder.1 {
                docker
                    .stop_container(&holder.0, std::time::Duration::from_secs(5))
                    .await?;
            }
        }
        self.remove_volume_and_holders(name).await?;
        docker
            .labelled_volume_with(
                spec,
                name.to_string(),
                std::collections::HashMap::from([(
                    LABEL_SET_ASIDE.to_string(),
                    evacuated_at.to_string(),
                )]),
            )
            .await?;
        let from = docker.create_helper(spec, &data, "export").await?;
        let tar: ByteStream = Box::pin(
            docker
                .archive(&from, spec.engine.data_path)
                .map_err(std::io::Error::other),
        );
        let copied = self.extract_into(spec, name, "import", tar).await;
        if let Err(e) = docker.remove_container(&from).await {
            tracing::warn!(bucket = %spec.id, error = %e, "removing the export helper failed");
        }
        copied?;
        self.remove_volume_and_holders(&data).await?;
        Ok(true)
    }

    /// Removes volume `name` and the stopped containers that hold it (a running one is an
    /// error: its server must be stopped first). A missing volume is fine.
    pub async fn remove_volume_and_holders(&self, name: &str) -> Result<()> {
        let docker = self.docker();
        for holder in docker.containers_using(name).await? {
            if holder.1 {
                return Err(Error::Docker {
                    op: "remove volume",
                    status: 409,
                    message: format!("volume {name} is in use by running container {}", holder.0),
                });
            }
            docker.remove_container(&holder.0).await?;
        }
        docker.remove_volume(name).await
    }
}
