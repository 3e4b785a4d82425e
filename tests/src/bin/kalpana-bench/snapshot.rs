//! `snapshot [MIB]`: a bucket holding MIB (1024) MiB of incompressible objects is snapshotted
//! into another bucket and restored from it, beside a plain `docker cp` of the same volume path
//! measured in the same run: throughput of each (volume MiB per second), how long the container
//! was paused per GiB, how long the bucket was out of service for the restore, and the daemon's
//! peak RSS growth over idle during each.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use kalpana_e2e::{proc_memory, Api, Daemon, DaemonOptions};
use serde_json::{json, Value};

use super::{direct_client, RssSampler, MIB};

/// Objects are this big (the snapshot sees the engine's files, not objects).
const OBJECT: u64 = 64 * MIB;

/// `len` bytes of xorshift noise, made a MiB at a time (nothing a compressor can shrink).
fn noise(len: u64, seed: u64) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::iter((0..len.div_ceil(MIB)).map(move |i| {
        let n = (len - i * MIB).min(MIB) as usize;
        Ok(Bytes::from(kalpana_e2e::noise(n, seed << 32 | i)))
    }))
}

/// `docker cp <container>:<path> -`, counting the tar bytes; returns bytes and seconds.
async fn docker_cp(container: &str, path: &str) -> Result<(u64, f64)> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new("docker")
        .args(["cp", &format!("{container}:{path}"), "-"])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut out = child.stdout.take().context("stdout")?;
    let bytes = tokio::io::copy(&mut out, &mut tokio::io::sink()).await?;
    if !child.wait().await?.success() {
        bail!("docker cp failed");
    }
    Ok((bytes, started.elapsed().as_secs_f64()))
}

/// Polls `path` every 50 ms until `done` holds.
async fn until(api: &Api, path: &str, done: impl Fn(&Value) -> bool) -> Result<Value> {
    let started = Instant::now();
    loop {
        let (status, v) = api.send("GET", path, None).await?;
        if status == 200 && done(&v) {
            return Ok(v);
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("{path} never finished: {v}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn run(mib: u64) -> Result<()> {
    // SeaweedFS keeps recently written data in memory; see `transfer`.
    let d = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_CONTAINER_MEMORY_MB".into(), "6144".into())],
        ..Default::default()
    })
    .await?;
    let pid = d.pid().context("daemon pid")?;
    let (api, _) = d.new_user("bench").await?;
    let (_, src) = api.create_bucket(json!({ "name": "volume" })).await?;
    let (_, vault) = api.create_bucket(json!({ "name": "vault" })).await?;
    if src["status"] != "RUNNING" || vault["status"] != "RUNNING" {
        bail!("create failed: {src} {vault}");
    }
    let id = src["id"].as_str().context("id")?.to_string();
    let vault_id = vault["id"].as_str().context("id")?.to_string();
    let direct = direct_client(&src)?;
    let total = mib * MIB;
    let mut put = 0u64;
    let mut n = 0u64;
    while put < total {
        let size = (total - put).min(OBJECT);
        direct
            .put_object(
                &format!("obj-{n:04}"),
                None,
                Some(size),
                Box::pin(
                    noise(size, n + 1)
                        .map(|c| c.map_err(|e| Box::new(e) as kalpana_s3_ops::BoxError)),
                ),
            )
            .await?;
        put += size;
        n += 1;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let container = format!("kalpana-bucket-{id}");

    // Baseline: the same volume path read by Docker straight to a pipe.
    let (tar_bytes, cp_secs) = docker_cp(&container, "/data").await?;
    let volume_mib = tar_bytes as f64 / MIB as f64;
    let cp_rate = volume_mib / cp_secs;
    println!(
        "snapshot.baseline volume_mib={volume_mib:.0} objects={n} docker_cp_secs={cp_secs:.2} docker_cp_mib_s={cp_rate:.1}"
    );

    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = proc_memory(pid, "VmRSS").context("VmRSS")?;
    let sampler = RssSampler::start(pid);
    let path = format!("/api/buckets/{id}/snapshots");
    let started = Instant::now();
    let (status, s) = api
        .send("POST", &path, Some(json!({ "targetBucketId": vault_id })))
        .await?;
    if status != 202 {
        bail!("snapshot: {status} {s}");
    }
    let sid = s["id"].as_str().context("id")?.to_string();
    let done = until(&api, &format!("{path}/{sid}"), |s| {
        s["status"] == "DONE" || s["status"] == "FAILED"
    })
    .await?;
    let secs = started.elapsed().as_secs_f64();
    if done["status"] != "DONE" {
        bail!("snapshot failed: {done}");
    }
    let snap_peak = sampler.take_peak().max(idle);
    let paused = done["pausedMillis"].as_u64().unwrap_or(0) as f64;
    let rate = volume_mib / secs;
    println!(
        "snapshot.take volume_mib={volume_mib:.0} archive_mib={:.0} secs={secs:.2} mib_s={rate:.1} ratio_vs_docker_cp={:.3} paused_ms={paused:.0} paused_ms_per_gib={:.0}",
        done["sizeBytes"].as_u64().unwrap_or(0) as f64 / MIB as f64,
        rate / cp_rate,
        paused / (volume_mib / 1024.0),
    );

    let started = Instant::now();
    let (status, r) = api
        .send("POST", &format!("{path}/{sid}/restore"), None)
        .await?;
    if status != 202 {
        bail!("restore: {status} {r}");
    }
    let done = until(&api, &format!("{path}/{sid}"), |s| {
        matches!(s["restore"]["status"].as_str(), Some("DONE" | "FAILED"))
    })
    .await?;
    let secs = started.elapsed().as_secs_f64();
    if done["restore"]["status"] != "DONE" {
        bail!("restore failed: {done}");
    }
    let restore_peak = sampler.take_peak().max(idle);
    let rate = volume_mib / secs;
    let downtime = done["restore"]["downtimeMillis"].as_u64().unwrap_or(0) as f64;
    println!(
        "snapshot.restore volume_mib={volume_mib:.0} secs={secs:.2} mib_s={rate:.1} ratio_vs_docker_cp={:.3} out_of_service_ms={downtime:.0} out_of_service_ms_per_gib={:.0}",
        rate / cp_rate,
        downtime / (volume_mib / 1024.0),
    );
    // The data is back: one object read whole.
    let mut got = direct.get_object("obj-0000", None).await?.body;
    let mut bytes = 0u64;
    while let Some(chunk) = got.next().await {
        bytes += chunk.map_err(|e| anyhow::anyhow!("{e}"))?.len() as u64;
    }
    if bytes != total.min(OBJECT) {
        bail!("after the restore obj-0000 has {bytes} bytes");
    }
    println!(
        "snapshot.memory daemon_idle_rss_mib={:.1} snapshot_growth_mib={:.1} restore_growth_mib={:.1}",
        idle as f64 / MIB as f64,
        snap_peak.saturating_sub(idle) as f64 / MIB as f64,
        restore_peak.saturating_sub(idle) as f64 / MIB as f64,
    );
    Ok(())
}
