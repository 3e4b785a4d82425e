//! What the `swarm` runtime asks of the bucket's node, through that node's agent: volume jobs,
//! volumes listed and removed, samples. The bytes of an archive go between the node and the
//! archive's bucket (presigned URLs for that one object), never through the daemon.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{service, SwarmRuntime};
use crate::error::{Error, Result};
use crate::node_hub::{JobExtras, PartSigner};
use crate::node_protocol::{wire_open_key, JobBucket, JobDone, WireSeal, Work};
use crate::reports::ManagedVolume;
use crate::runtime::Runtime;
use crate::runtime::{ArchiveJob, FillJob, JobOutcome, VolumeRole};
use crate::spec::BucketSpec;

/// How long a presigned URL of a job stays valid.
pub(super) const URL_LIFETIME: Duration = Duration::from_secs(6 * 3600);

impl SwarmRuntime {
    /// The node bucket `id`'s volume is on: its service's pin, or the node a fill chose for it
    /// before its service existed.
    pub(super) async fn node_of(&self, id: &str) -> Result<Option<String>> {
        if let Some(svc) = self.service(id).await? {
            if let Some(n) = svc.spec.as_ref().and_then(service::pinned_node) {
                return Ok(Some(n));
            }
        }
        Ok(self.planned(id))
    }

    /// The node chosen for bucket `id` before its service was made.
    pub(super) fn planned(&self, id: &str) -> Option<String> {
        self.planned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// The reporting node that holds bucket `id`'s data volume, if any does.
    pub(super) async fn locate_volume(&self, id: &str) -> Result<Option<String>> {
        let wanted = crate::spec::volume_name(id);
        for node in self.hub.connected_nodes() {
            let done = self
                .on_node(&node, bare(""), Work::ListVolumes, JobExtras::default())
                .await?;
            if done.volumes.iter().any(|v| v.name == wanted) {
                return Ok(Some(node));
            }
        }
        Ok(None)
    }

    /// A node for a new volume: of the nodes labelled for buckets whose agents report, the one
    /// with the fewest buckets pinned to it.
    pub(super) async fn choose_node(&self) -> Result<String> {
        self.choose_node_but(None).await
    }

    /// [`SwarmRuntime::choose_node`], never `avoid`.
    pub(super) async fn choose_node_but(&self, avoid: Option<&str>) -> Result<String> {
        let nodes = self.nodes().await?;
        let services = self.managed_services().await?;
        let mut load: HashMap<String, usize> = self
            .incoming
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for s in &services {
            if let Some(n) = s.spec.as_ref().and_then(service::pinned_node) {
                *load.entry(n).or_default() += 1;
            }
        }
        // Nodes whose agents report first: only they can run its volume jobs.
        let labelled: Vec<&String> = nodes
            .iter()
            .filter(|(id, n)| n.for_buckets && Some(id.as_str()) != avoid)
            .map(|(id, _)| id)
            .collect();
        let reporting: Vec<&String> = labelled
            .iter()
            .copied()
            .filter(|id| self.hub.connected(id))
            .collect();
        let candidates = if reporting.is_empty() {
            labelled
        } else {
            reporting
        };
        candidates
            .into_iter()
            .min_by_key(|id| (load.get(*id).copied().unwrap_or(0), (*id).clone()))
            .cloned()
            .ok_or_else(|| Error::NodeUnavailable("no node is labelled for buckets".into()))
    }

    /// Runs `work` for `spec`'s bucket on `node`; a job the agent says failed is an error.
    pub(super) async fn on_node(
        &self,
        node: &str,
        bucket: JobBucket,
        work: Work,
        extras: JobExtras,
    ) -> Result<JobDone> {
        let done = self.hub.run(node, bucket, work, extras).await?;
        match &done.error {
            None => Ok(done),
            Some(message) => Err(Error::Job {
                what: "the node's job",
                message: format!("node {node}: {message}"),
                outcome: done.outcome.clone().map(Into::into),
            }),
        }
    }

    /// The node of bucket `spec`'s volume, or an error saying it has none.
    async fn volume_node(&self, id: &str) -> Result<String> {
        self.node_of(id).await?.ok_or_else(|| Error::Docker {
            op: "find the bucket's node",
            status: 404,
            message: format!("bucket {id} has no volume on any node yet"),
        })
    }

    /// Archives on the volume's node: the service stopped meanwhile (a task cannot be frozen),
    /// started again afterwards if it ran; the archive uploaded by the agent in parts.
    pub(super) async fn archive_on_node(
        &self,
        spec: &BucketSpec,
        job: ArchiveJob,
    ) -> Result<JobOutcome> {
        let node = self.volume_node(&spec.id).await?;
        let running = match self.service(&spec.id).await? {
            Some(svc) => svc.spec.as_ref().map(service::replicas).unwrap_or(0) > 0,
            None => false,
        };
        if running {
            self.stop_server(&spec.id, Duration::from_secs(30)).await?;
        }
        crate::fault::point("snapshot.paused");
        let result = self.upload_archive(&node, spec, &job).await;
        let restarted = if running {
            self.serve_again(spec).await
        } else {
            Ok(())
        };
        let outcome = result?;
        restarted?;
        Ok(outcome)
    }

    /// Starts the bucket's service again and waits for its engine to answer (a new task is a
    /// new container: unlike a thawed one, it needs its start-up time).
    async fn serve_again(&self, spec: &BucketSpec) -> Result<()> {
        self.start_server(&spec.id).await?;
        let origin = self
            .address(&spec.id, spec.engine.s3_port)
            .await?
            .ok_or_else(|| Error::Docker {
                op: "start service",
                status: 500,
                message: format!("bucket {} runs without an address", spec.id),
            })?;
        crate::readiness::wait_http_ok(
            spec.engine.kind.as_str(),
            &format!("{origin}{}", spec.engine.health_path),
            Duration::from_secs(90),
        )
        .await
        .map(drop)
    }

    async fn upload_archive(
        &self,
        node: &str,
        spec: &BucketSpec,
        job: &ArchiveJob,
    ) -> Result<JobOutcome> {
        let target = &job.target;
        let upload_id = target
            .client
            .start_multipart(&target.key, Some("application/octet-stream"))
            .await?;
        let (presigner, key, uid) = (
            target.presigner.clone(),
            target.key.clone(),
            upload_id.clone(),
        );
        let parts: PartSigner = Arc::new(move |n| {
            if !(1..=10_000).contains(&n) {
                return Err(Error::UnknownJob(format!("part {n}")));
            }
            Ok(presigner
                .presign_upload_part(&key, &uid, n, URL_LIFETIME)?
                .url)
        });
        let extras = JobExtras {
            progress: Some(job.progress.clone()),
            parts: Some(parts),
        };
        let work = Work::Archive {
            seal: WireSeal::of(&job.seal),
        };
        let done = self.on_node(node, JobBucket::of(spec), work, extras).await;
        let finished = match done {
            Ok(d) => match d.outcome.clone() {
                Some(o) if !d.parts.is_empty() => target
                    .client
                    .complete_multipart(&target.key, &upload_id, &d.parts)
                    .await
                    .map(|()| o.into())
                    .map_err(Error::from),
                _ => Err(Error::Job {
                    what: "archiving the volume",
                    message: format!("node {node} reported no parts"),
                    outcome: None,
                }),
            },
            Err(e) => Err(e),
        };
        if finished.is_err() {
            if let Err(e) = target.client.abort_multipart(&target.key, &upload_id).await {
                tracing::warn!(bucket = %spec.id, error = %e, "aborting the archive's upload failed");
            }
        }
        finished
    }

    /// Fills a volume on its node (a new bucket's: on a node chosen now, where its service
    /// will be pinned) from a URL presigned for the archive.
    pub(super) async fn fill_on_node(
        &self,
        spec: &BucketSpec,
        role: VolumeRole,
        job: FillJob,
    ) -> Result<JobOutcome> {
        let node = match (role, self.node_of(&spec.id).await?) {
            (_, Some(n)) => n,
            (VolumeRole::Data, None) => {
                let n = self.choose_node().await?;
                self.planned
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(spec.id.clone(), n.clone());
                n
            }
            (VolumeRole::Staging, None) => self.volume_node(&spec.id).await?,
        };
        let url = job
            .source
            .presigner
            .presign_get(&job.source.key, URL_LIFETIME)?
            .url;
        let work = Work::Fill {
            staging: role == VolumeRole::Staging,
            url,
            key: wire_open_key(&job.open),
            fresh: false,
        };
        let extras = JobExtras {
            progress: Some(job.progress.clone()),
            parts: None,
        };
        let done = self
            .on_node(&node, JobBucket::of(spec), work, extras)
            .await?;
        done.outcome.map(Into::into).ok_or_else(|| Error::Job {
            what: "filling the volume",
            message: format!("node {node} reported no outcome"),
            outcome: None,
        })
    }

    /// Whether the bucket has a staging volume on its node.
    pub(super) async fn staged_on_node(&self, id: &str) -> Result<bool> {
        let Some(node) = self.node_of(id).await? else {
            return Ok(false);
        };
        let done = self
            .on_node(&node, bare(id), Work::Staged, JobExtras::default())
            .await?;
        Ok(done.staged.unwrap_or(false))
    }

    /// The staged data made the bucket's: service stopped, volume made anew on its node, service
    /// updated from `spec` (left stopped).
    pub(super) async fn promote_on_node(&self, spec: &BucketSpec) -> Result<()> {
        let node = self.volume_node(&spec.id).await?;
        self.stop_server(&spec.id, Duration::from_secs(30)).await?;
        self.on_node(
            &node,
            JobBucket::of(spec),
            Work::PromoteStaging,
            JobExtras::default(),
        )
        .await?;
        self.create_server(spec, false).await.map(drop)
    }

    /// Runs `cmd` in the bucket's running task, on its node.
    pub(super) async fn exec_on_node(
        &self,
        id: &str,
        cmd: &[&str],
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<crate::reports::ExecOutput> {
        use base64::Engine;
        let node = self.volume_node(id).await?;
        let work = Work::Exec {
            cmd: cmd.iter().map(|c| c.to_string()).collect(),
            stdin: base64::engine::general_purpose::STANDARD.encode(stdin),
            timeout_secs: timeout.as_secs().max(1),
        };
        let done = self
            .on_node(&node, bare(id), work, JobExtras::default())
            .await?;
        done.exec
            .ok_or_else(|| Error::Job {
                what: "running a command",
                message: format!("node {node} reported no output"),
                outcome: None,
            })?
            .output()
    }

    /// Drops the staging volume wherever it is.
    pub(super) async fn drop_staging_on_node(&self, id: &str) -> Result<()> {
        match self.node_of(id).await? {
            Some(node) => self
                .on_node(&node, bare(id), Work::DropStaging, JobExtras::default())
                .await
                .map(drop),
            None => self.everywhere(id, Work::DropStaging).await,
        }
    }

    /// Removes the bucket's volume on every node whose agent reports (its service is gone, so
    /// its pin is too); a node whose agent is away keeps it until the orphan sweep finds it.
    pub(super) async fn remove_volume_everywhere(&self, id: &str) -> Result<()> {
        self.planned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.everywhere(id, Work::RemoveVolume).await
    }

    /// Removes a managed volume by name on every reporting node.
    pub(super) async fn remove_volume_named_everywhere(&self, name: &str) -> Result<()> {
        crate::names::check("volume", name)?;
        let id = name.strip_prefix("kalpana-bucket-").unwrap_or(name);
        self.everywhere(
            id,
            Work::RemoveVolumeNamed {
                name: name.to_string(),
            },
        )
        .await
    }

    /// The nodes whose agents report; an error when none does.
    fn reporting(&self) -> Result<Vec<String>> {
        let nodes = self.hub.connected_nodes();
        if nodes.is_empty() {
            return Err(Error::NodeUnavailable(
                "no node agent reports (kalpana-buckets node on every bucket node)".into(),
            ));
        }
        Ok(nodes)
    }

    async fn everywhere(&self, id: &str, work: Work) -> Result<()> {
        for node in self.reporting()? {
            self.on_node(&node, bare(id), work.clone(), JobExtras::default())
                .await?;
        }
        Ok(())
    }

    /// The managed volumes of every reporting node.
    pub(super) async fn volumes_everywhere(&self) -> Result<Vec<ManagedVolume>> {
        let mut out = Vec::new();
        for node in self.reporting()? {
            let done = self
                .on_node(&node, bare(""), Work::ListVolumes, JobExtras::default())
                .await?;
            out.extend(done.volumes.into_iter().map(ManagedVolume::from));
        }
        Ok(out)
    }
}

/// A job's bucket known by its id only (for jobs that need nothing more).
pub(super) fn bare(id: &str) -> JobBucket {
    JobBucket {
        id: id.to_string(),
        name: String::new(),
        owner: String::new(),
        instance: String::new(),
        engine: crate::engine::EngineKind::Seaweedfs,
        image: String::new(),
    }
}
