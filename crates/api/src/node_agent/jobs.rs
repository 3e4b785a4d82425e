//! The agent's volume jobs, run on its own engine: archives uploaded in parts to URLs the
//! daemon presigns one by one, fills read from a presigned URL, volumes listed and removed.
//! Memory stays constant whatever the size: one part in flight, streams everywhere else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use kalpana_manager_core::archive::ByteStream;
use kalpana_manager_core::node_protocol::{
    open_key, JobDone, JobProgress, NodeJob, PartRequest, PartUrl, WireOutcome, WireVolume, Work,
    PART_SIZE,
};
use kalpana_manager_core::runtime::{JobOutcome, Progress, VolumeRole};
use kalpana_manager_core::spec::volume_name;
use kalpana_manager_core::{DockerRuntime, Runtime};

use super::Link;

/// Runs one job and reports how it ended.
pub(super) async fn run(link: &Link, runtime: &DockerRuntime, job: NodeJob) {
    let kind = kind(&job.work);
    tracing::info!(job = %job.id, bucket = %job.bucket.id, kind, "job started");
    let moved = Arc::new(AtomicU64::new(0));
    let reporter = progress_reporter(link.clone(), job.id.clone(), moved.clone());
    let done = match execute(link, runtime, &job, moved).await {
        Ok(done) => done,
        Err(e) => JobDone {
            error: Some(e.to_string()),
            outcome: match e.downcast_ref::<kalpana_manager_core::Error>() {
                Some(kalpana_manager_core::Error::Job { outcome, .. }) => {
                    outcome.as_ref().map(WireOutcome::from)
                }
                _ => None,
            },
            ..Default::default()
        },
    };
    reporter.abort();
    match &done.error {
        None => tracing::info!(job = %job.id, bucket = %job.bucket.id, kind, "job done"),
        Some(e) => {
            tracing::warn!(job = %job.id, bucket = %job.bucket.id, kind, error = %e, "job failed")
        }
    }
    let path = format!("/api/node/jobs/{}/done", job.id);
    if let Err(e) = link.post::<_, ()>(&path, &done).await {
        tracing::warn!(job = %job.id, error = %e, "reporting a job's end failed");
    }
}

fn kind(w: &Work) -> &'static str {
    match w {
        Work::Archive { .. } => "archive",
        Work::Fill { .. } => "fill",
        Work::Staged => "staged",
        Work::PromoteStaging => "promote staging",
        Work::DropStaging => "drop staging",
        Work::RemoveVolume => "remove volume",
        Work::RemoveVolumeNamed { .. } => "remove volume by name",
        Work::ListVolumes => "list volumes",
        Work::SetAside { .. } => "set aside",
        Work::Exec { .. } => "exec",
    }
}

/// Sends the bytes moved so far, once a second, while a job runs; at least every 10 s, even
/// with nothing moved, so the daemon knows the job is still being worked on.
fn progress_reporter(
    link: Link,
    job: String,
    moved: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut sent = 0u64;
        let mut quiet = 0u32;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = moved.load(Ordering::SeqCst);
            quiet += 1;
            if now > sent || quiet >= 10 {
                quiet = 0;
                let path = format!("/api/node/jobs/{job}/progress");
                let p = JobProgress { bytes: now - sent };
                if link.post::<_, ()>(&path, &p).await.is_ok() {
                    sent = now;
                }
            }
        }
    })
}

async fn execute(
    link: &Link,
    runtime: &DockerRuntime,
    job: &NodeJob,
    moved: Arc<AtomicU64>,
) -> anyhow::Result<JobDone> {
    let spec = job.bucket.spec();
    let progress: Progress = Arc::new(move |n| {
        moved.fetch_add(n, Ordering::SeqCst);
    });
    let mut done = JobDone::default();
    match &job.work {
        Work::Archive { seal } => {
            let seal = seal.seal_key()?;
            let parts = Arc::new(std::sync::Mutex::new(Vec::new()));
            let uploaded = parts.clone();
            let outcome = runtime
                .archive_volume(&spec, &seal, progress, |stored| async move {
                    let p = upload_parts(link, &job.id, stored).await.map_err(|e| {
                        kalpana_manager_core::Error::Job {
                            what: "uploading the archive",
                            message: e.to_string(),
                            outcome: None,
                        }
                    })?;
                    *uploaded.lock().unwrap_or_else(|p| p.into_inner()) = p;
                    Ok(())
                })
                .await?;
            done.outcome = Some(WireOutcome::from(&outcome));
            done.parts = std::mem::take(&mut *parts.lock().unwrap_or_else(|p| p.into_inner()));
        }
        Work::Fill {
            staging,
            url,
            key,
            fresh,
        } => {
            let open = open_key(key.as_deref())?;
            if *fresh && !*staging {
                runtime
                    .remove_volume_and_holders(&volume_name(&spec.id))
                    .await?;
            }
            // The presigned URL is a credential: errors drop it before they are told or logged.
            let resp = link
                .http
                .get(url)
                .timeout(Duration::from_secs(24 * 3600))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(reqwest::Error::without_url)?;
            let stored: ByteStream = Box::pin(
                resp.bytes_stream()
                    .map_err(|e| std::io::Error::other(e.without_url())),
            );
            let role = if *staging {
                VolumeRole::Staging
            } else {
                VolumeRole::Data
            };
            let outcome: JobOutcome = runtime
                .fill_volume(&spec, role, open, progress, stored)
                .await?;
            done.outcome = Some(WireOutcome::from(&outcome));
        }
        Work::Staged => done.staged = Some(runtime.staged(&spec.id).await?),
        Work::PromoteStaging => runtime.volume_from_staging(&spec).await?,
        Work::DropStaging => runtime.drop_staging(&spec.id).await?,
        Work::RemoveVolume => {
            runtime
                .remove_volume_and_holders(&volume_name(&spec.id))
                .await?
        }
        Work::RemoveVolumeNamed { name } => runtime.remove_volume_and_holders(name).await?,
        Work::Exec {
            cmd,
            stdin,
            timeout_secs,
        } => {
            use base64::Engine;
            let stdin = base64::engine::general_purpose::STANDARD.decode(stdin)?;
            let task = runtime
                .docker()
                .running_task_of(&kalpana_manager_core::spec::container_name(&spec.id))
                .await?
                .ok_or_else(|| anyhow::anyhow!("bucket {} runs no task on this node", spec.id))?;
            let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
            let out = runtime
                .docker()
                .exec(&task, &cmd, &stdin, Duration::from_secs(*timeout_secs))
                .await?;
            done.exec = Some(kalpana_manager_core::node_protocol::WireExec::from(&out));
        }
        Work::SetAside { name, evacuated_at } => {
            done.set_aside = Some(runtime.set_aside_volume(&spec, name, evacuated_at).await?)
        }
        Work::ListVolumes => {
            done.volumes = runtime
                .list_volumes()
                .await?
                .iter()
                .map(WireVolume::from)
                .collect()
        }
    }
    Ok(done)
}

/// Uploads `stored` in parts of [`PART_SIZE`], each to a URL the daemon presigns for it;
/// returns the parts (number, ETag).
async fn upload_parts(
    link: &Link,
    job: &str,
    mut stored: ByteStream,
) -> anyhow::Result<Vec<(i32, String)>> {
    let mut parts = Vec::new();
    let mut buf = BytesMut::with_capacity(PART_SIZE);
    let mut number = 1i32;
    loop {
        let chunk = stored.next().await.transpose()?;
        let end = chunk.is_none();
        if let Some(c) = chunk {
            buf.extend_from_slice(&c);
        }
        while buf.len() >= PART_SIZE || (end && !buf.is_empty()) {
            let take = buf.len().min(PART_SIZE);
            let part = buf.split_to(take).freeze();
            parts.push((number, put_part(link, job, number, part).await?));
            number += 1;
        }
        if end {
            return Ok(parts);
        }
    }
}

async fn put_part(link: &Link, job: &str, number: i32, part: Bytes) -> anyhow::Result<String> {
    let path = format!("/api/node/jobs/{job}/parts");
    let PartUrl { url } = link.post(&path, &PartRequest { part: number }).await?;
    let resp = link
        .http
        .put(&url)
        .timeout(Duration::from_secs(600))
        .body(part)
        .send()
        .await
        .map_err(reqwest::Error::without_url)?;
    let status = resp.status();
    if !status.is_success() {
        anyhow::bail!("uploading part {number}: {status}");
    }
    resp.headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("part {number}: the server gave no ETag"))
}
