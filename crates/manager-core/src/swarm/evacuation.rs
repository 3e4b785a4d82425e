//! A lost node's buckets brought back elsewhere: a fresh data volume filled from an archive on
//! another node (by that node's agent) and the service pinned there; and, when the lost node
//! comes back, its old copy moved aside so that nothing can serve it again.

use super::{service, SwarmRuntime};
use crate::error::{Error, Result};
use crate::node_hub::JobExtras;
use crate::node_protocol::{wire_open_key, JobBucket, Work};
use crate::runtime::{FillJob, JobOutcome};
use crate::spec::BucketSpec;

impl SwarmRuntime {
    /// Fills bucket `spec`'s data volume on a reporting node other than `lost` (an old copy
    /// there is removed first) and pins its service there, scaled to zero: the caller starts it.
    pub(super) async fn evacuate_to_another(
        &self,
        spec: &BucketSpec,
        lost: &str,
        job: FillJob,
    ) -> Result<(JobOutcome, String)> {
        // Chosen and counted as one step, so that concurrent evacuations spread.
        let node = {
            let _one = self.choosing.lock().await;
            let node = self.choose_node_but(Some(lost)).await?;
            if !self.hub.connected(&node) {
                return Err(Error::NodeUnavailable(format!(
                    "no node but {lost} has an agent that reports"
                )));
            }
            *self
                .incoming
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(node.clone())
                .or_default() += 1;
            node
        };
        let moved = self.fill_and_pin(spec, &node, job).await;
        if let Some(n) = self
            .incoming
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&node)
        {
            *n = n.saturating_sub(1);
        }
        moved.map(|o| (o, node))
    }

    /// Fills the bucket's data volume on `node` afresh and pins its service there, scaled to
    /// zero.
    async fn fill_and_pin(
        &self,
        spec: &BucketSpec,
        node: &str,
        job: FillJob,
    ) -> Result<JobOutcome> {
        let url = job
            .source
            .presigner
            .presign_get(&job.source.key, super::node_jobs::URL_LIFETIME)?
            .url;
        let work = Work::Fill {
            staging: false,
            url,
            key: wire_open_key(&job.open),
            fresh: true,
        };
        let extras = JobExtras {
            progress: Some(job.progress.clone()),
            parts: None,
        };
        let done = self
            .on_node(node, JobBucket::of(spec), work, extras)
            .await?;
        let outcome: JobOutcome = done.outcome.map(Into::into).ok_or_else(|| Error::Job {
            what: "filling the volume",
            message: format!("node {node} reported no outcome"),
            outcome: None,
        })?;
        // Scaled to zero and pinned at once: the old task (on a node that does not answer) is
        // not waited for, and the next start makes a task on the new node.
        if self.service(&spec.id).await?.is_some() {
            self.modify(&spec.id, "re-pin service", |s| {
                service::with_pin(service::with_replicas(s, 0), node)
            })
            .await?;
        } else {
            self.planned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(spec.id.clone(), node.to_string());
        }
        Ok(outcome)
    }

    /// Removes bucket `spec`'s data volume from every reporting node but `keep`: what an
    /// evacuation a killed daemon began left on a node the one that finished it did not choose.
    /// Best effort: a node that fails is logged (its volume is labelled with the bucket and
    /// removed with it).
    pub(super) async fn remove_half_made(&self, spec: &BucketSpec, keep: &[&str]) {
        for node in self.hub.connected_nodes() {
            if keep.contains(&node.as_str()) {
                continue;
            }
            let done = self
                .on_node(
                    &node,
                    JobBucket::of(spec),
                    Work::RemoveVolume,
                    JobExtras::default(),
                )
                .await;
            if let Err(e) = done {
                tracing::warn!(bucket = %spec.id, node = %node, error = %e,
                    "removing what an interrupted evacuation left on a node failed");
            }
        }
    }

    /// Moves bucket `id`'s data volume on `node` aside into `name`; false when it had none.
    pub(super) async fn set_aside_on(
        &self,
        node: &str,
        spec: &BucketSpec,
        name: &str,
        evacuated_at: &str,
    ) -> Result<bool> {
        crate::names::check("volume", name)?;
        let work = Work::SetAside {
            name: name.to_string(),
            evacuated_at: evacuated_at.to_string(),
        };
        let done = self
            .on_node(node, JobBucket::of(spec), work, JobExtras::default())
            .await?;
        Ok(done.set_aside.unwrap_or(false))
    }
}
