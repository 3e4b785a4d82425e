//! Benchmarks that print one line per figure, each beside a baseline measured in the same run.
//!
//! `cargo run --release -p kalpana-e2e --bin kalpana-bench -- provision [N]`:
//! `POST /api/buckets?wait=true` to RUNNING through the daemon, N sequential creates, beside a
//! plain `docker run` of the same image to its first S3 answer.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kalpana_e2e::{Daemon, ENGINE_IMAGE};
use kalpana_manager_core::EngineProfile;
use serde_json::json;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// `docker run` of the engine image, as the daemon configures it, to its first 200 on /healthz.
async fn plain_docker_run(port: u16) -> Result<f64> {
    let name = format!("kalpana-bench-plain-{}", uuid::Uuid::new_v4().simple());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let started = Instant::now();
    let status = Command::new("docker")
        .args(["run", "-d", "--name", &name, "-p"])
        .arg(format!("127.0.0.1:{port}:8333"))
        .args([
            "-e",
            "AWS_ACCESS_KEY_ID=benchbenchbench",
            "-e",
            "AWS_SECRET_ACCESS_KEY=benchbenchbenchbench",
        ])
        .args(["--entrypoint", "/usr/bin/weed", ENGINE_IMAGE])
        // The same command the daemon's seaweedfs profile runs.
        .args(&EngineProfile::seaweedfs().cmd)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("docker run failed");
    }
    let url = format!("http://127.0.0.1:{port}/healthz");
    let result = loop {
        if let Ok(r) = http.get(&url).send().await {
            if r.status().is_success() {
                break Ok(started.elapsed().as_secs_f64());
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            break Err(anyhow::anyhow!("plain container never answered"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let _ = Command::new("docker")
        .args(["rm", "-f", "-v", &name])
        .stdout(Stdio::null())
        .status();
    result
}

async fn provision(n: usize) -> Result<()> {
    let d = Daemon::start().await?;
    let (api, _) = d.new_user("bench").await?;
    // One warm-up of each so that neither side pays first-use costs.
    let _ = plain_docker_run(d.port_range.1).await?;
    let (status, b) = api.create_bucket(json!({ "name": "warmup" })).await?;
    if status != 201 || b["status"] != "RUNNING" {
        bail!("warm-up create failed: {status} {b}");
    }
    let mut plain = Vec::new();
    let mut daemon = Vec::new();
    for i in 0..n {
        // Interleave so both see the same machine conditions.
        plain.push(plain_docker_run(d.port_range.1).await?);
        let started = Instant::now();
        let (status, b) = api
            .create_bucket(json!({ "name": format!("bench-{i}") }))
            .await?;
        let secs = started.elapsed().as_secs_f64();
        if status != 201 || b["status"] != "RUNNING" {
            bail!("create {i} failed: {status} {b}");
        }
        daemon.push(secs);
        let id = b["id"].as_str().context("id")?;
        let status = api.delete_bucket(id, true).await?;
        if status != 204 {
            bail!("delete {i} failed: {status}");
        }
    }
    let (pm, dm) = (median(&mut plain.clone()), median(&mut daemon.clone()));
    println!("provision.sequential n={n} plain_docker_run_to_first_s3_answer median_s={pm:.3} p95_s={:.3}", percentile(&mut plain, 95.0));
    println!(
        "provision.sequential n={n} daemon_post_to_running median_s={dm:.3} p95_s={:.3}",
        percentile(&mut daemon, 95.0)
    );
    println!(
        "provision.sequential ratio daemon/plain median={:.3} (overhead {:+.1}%)",
        dm / pm,
        (dm / pm - 1.0) * 100.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("provision") => {
            let n = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(10);
            provision(n).await
        }
        _ => bail!("usage: kalpana-bench provision [N]"),
    }
}
