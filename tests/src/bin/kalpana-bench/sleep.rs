//! `sleep [N [WAKES]]`: wake to first byte of a sleeping bucket beside `docker start` of a plain
//! stopped container of the same image and command to its first S3 answer (polled every 10 ms,
//! as the daemon polls); the daemon's RSS with N sleeping buckets; the bucket containers'
//! memory awake and asleep.

use aws_sdk_s3::primitives::ByteStream;
use kalpana_e2e::s3_client_no_retries;

use super::*;

/// A plain container of the engine, started and stopped by hand.
struct Plain {
    name: String,
    port: u16,
}

impl Plain {
    async fn create(port: u16) -> Result<Self> {
        let name = format!("kalpana-bench-sleep-{}", uuid::Uuid::new_v4().simple());
        let status = tokio::process::Command::new("docker")
            .args(["create", "--name", &name, "-p"])
            .arg(format!("127.0.0.1:{port}:8333"))
            .args(["--memory", "512m", "--read-only", "--cap-drop", "ALL"])
            .args([
                "--tmpfs",
                "/tmp",
                "--security-opt",
                "no-new-privileges:true",
            ])
            .args(["-e", "AWS_ACCESS_KEY_ID=benchbenchbench"])
            .args(["-e", "AWS_SECRET_ACCESS_KEY=benchbenchbenchbench"])
            .args(["-v", "/data", "--entrypoint", "/usr/bin/weed", ENGINE_IMAGE])
            .args(EngineProfile::seaweedfs().command(512 * 1024 * 1024))
            .stdout(Stdio::null())
            .status()
            .await?;
        if !status.success() {
            bail!("docker create failed");
        }
        Ok(Plain { name, port })
    }

    async fn docker(&self, verb: &str) -> Result<()> {
        let status = tokio::process::Command::new("docker")
            .args([verb, &self.name])
            .stdout(Stdio::null())
            .status()
            .await?;
        if !status.success() {
            bail!("docker {verb} failed");
        }
        Ok(())
    }

    /// `docker start` to the first 200 of its health path, polled every 10 ms.
    async fn start_to_answer(&self, http: &reqwest::Client) -> Result<f64> {
        let started = Instant::now();
        self.docker("start").await?;
        let url = format!("http://127.0.0.1:{}/healthz", self.port);
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(started.elapsed().as_secs_f64());
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("plain container never answered");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", "-v", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Sum of the memory Docker reports for the running containers of `instance`, in bytes.
fn containers_memory(instance: &str) -> Result<u64> {
    let ids = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter"])
        .arg(format!("label=kalpana.instance={instance}"))
        .output()?;
    let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let out = std::process::Command::new("docker")
        .args(["stats", "--no-stream", "--format", "{{.MemUsage}}"])
        .args(&ids)
        .output()?;
    let mut total = 0u64;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let used = line.split('/').next().unwrap_or("").trim();
        let (num, unit) = used.split_at(
            used.find(|c: char| c.is_ascii_alphabetic())
                .unwrap_or(used.len()),
        );
        let n: f64 = num.trim().parse().unwrap_or(0.0);
        let mult = match unit {
            "KiB" => 1024.0,
            "MiB" => MIB as f64,
            "GiB" => (1024 * MIB) as f64,
            _ => 1.0,
        };
        total += (n * mult) as u64;
    }
    Ok(total)
}

async fn sleep_bucket(api: &kalpana_e2e::Api, id: &str) -> Result<()> {
    let (status, v) = api
        .send("POST", &format!("/api/buckets/{id}/sleep"), None)
        .await?;
    if status != 200 || v["activity"]["state"] != "asleep" {
        bail!("sleep of {id}: {status} {v}");
    }
    Ok(())
}

pub(super) async fn run(n: usize, wakes: usize) -> Result<()> {
    // Ports above every test process's slice, and no per-owner cap: N buckets of one owner.
    let d = Daemon::start_with(DaemonOptions {
        port_range: Some(format!("52000-{}", 52000 + n + 50)),
        env: vec![("KALPANA_MAX_BUCKETS_PER_OWNER".into(), "100000".into())],
        ..Default::default()
    })
    .await?;
    let pid = d.pid().context("daemon pid")?;
    let (api, _) = d.new_user("bench").await?;
    let rss0 = proc_memory(pid, "VmRSS:").unwrap_or(0);

    // Wake latency, interleaved with the plain baseline so both see the same machine.
    let (status, b) = api.create_bucket(json!({ "name": "wake-bench" })).await?;
    if status != 201 || b["status"] != "RUNNING" {
        bail!("create failed: {status} {b}");
    }
    let id = b["id"].as_str().context("id")?.to_string();
    let (endpoint, access, secret, name) = (
        b["endpoint"].as_str().context("endpoint")?.to_string(),
        b["accessKey"].as_str().context("accessKey")?.to_string(),
        b["secretKey"].as_str().context("secretKey")?.to_string(),
        b["name"].as_str().context("name")?.to_string(),
    );
    s3_client(&endpoint, &access, &secret)
        .put_object()
        .bucket(&name)
        .key("k")
        .body(ByteStream::from_static(b"first byte"))
        .send()
        .await?;
    let plain = Plain::create(d.port_range.1).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let (mut woke, mut started, mut to_sleep) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..wakes + 1 {
        let t = Instant::now();
        sleep_bucket(&api, &id).await?;
        let slept = t.elapsed().as_secs_f64();
        let s3 = s3_client_no_retries(&endpoint, &access, &secret);
        let t = Instant::now();
        let got = s3.get_object().bucket(&name).key("k").send().await?;
        let mut body = got.body;
        let first = body.next().await.transpose()?.context("no first byte")?;
        let wake = t.elapsed().as_secs_f64();
        if first.is_empty() {
            bail!("empty first chunk");
        }
        plain.docker("stop").await?;
        let start = plain.start_to_answer(&http).await?;
        // The first round warms both up.
        if i > 0 {
            woke.push(wake);
            started.push(start);
            to_sleep.push(slept);
        }
    }
    plain.docker("stop").await?;
    let (w50, w99) = (
        percentile(&mut woke.clone(), 50.0),
        percentile(&mut woke.clone(), 99.0),
    );
    let (p50, p99) = (
        percentile(&mut started.clone(), 50.0),
        percentile(&mut started.clone(), 99.0),
    );
    println!(
        "sleep.wake n={wakes} plain_docker_start_to_first_s3_answer p50_s={p50:.3} p99_s={p99:.3}"
    );
    println!("sleep.wake n={wakes} daemon_wake_to_first_byte p50_s={w50:.3} p99_s={w99:.3}");
    println!(
        "sleep.wake ratio daemon/plain p50={:.3} p99={:.3}",
        w50 / p50,
        w99 / p99
    );
    println!(
        "sleep.going_to_sleep n={wakes} post_sleep_to_asleep p50_s={:.3} p99_s={:.3}",
        percentile(&mut to_sleep.clone(), 50.0),
        percentile(&mut to_sleep, 99.0)
    );

    // N buckets: made, each put to sleep at once (the machine need not hold N awake).
    let mut ids = Vec::new();
    for i in 0..n {
        let (status, b) = api
            .create_bucket(json!({ "name": format!("many-{i}") }))
            .await?;
        if status != 201 || b["status"] != "RUNNING" {
            bail!("create {i} failed: {status} {b}");
        }
        let id = b["id"].as_str().context("id")?.to_string();
        sleep_bucket(&api, &id).await?;
        ids.push(id);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_n = proc_memory(pid, "VmRSS:").unwrap_or(0);
    println!(
        "sleep.daemon_rss buckets_asleep={} rss_mib={:.1} at_start_mib={:.1} per_bucket_kib={:.1} projected_1000_mib={:.1}",
        n + 1,
        rss_n as f64 / MIB as f64,
        rss0 as f64 / MIB as f64,
        rss_n.saturating_sub(rss0) as f64 / 1024.0 / (n + 1) as f64,
        (rss0 as f64 + rss_n.saturating_sub(rss0) as f64 / (n + 1) as f64 * 1000.0) / MIB as f64
    );
    let asleep_mem = containers_memory(&d.instance)?;
    // A sample of them awake (all at once would ask the machine for N engines): the memory of
    // idle awake engines, per bucket, scaled to N.
    let sample: Vec<&String> = ids.iter().take(20.min(ids.len())).collect();
    for id in &sample {
        let (status, v) = api
            .send("POST", &format!("/api/buckets/{id}/wake"), None)
            .await?;
        if status != 200 {
            bail!("wake of {id}: {status} {v}");
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let awake_mem = containers_memory(&d.instance)?;
    let per = awake_mem as f64 / sample.len().max(1) as f64;
    println!(
        "sleep.containers_memory buckets={} asleep_total_mib={:.1} awake_sample={} awake_sample_mib={:.1} awake_per_bucket_mib={:.1} awake_total_projected_mib={:.1}",
        n + 1,
        asleep_mem as f64 / MIB as f64,
        sample.len(),
        awake_mem as f64 / MIB as f64,
        per / MIB as f64,
        per * (n + 1) as f64 / MIB as f64
    );
    for id in &ids {
        api.delete_bucket(id, true).await?;
    }
    api.delete_bucket(&id, true).await?;
    Ok(())
}
