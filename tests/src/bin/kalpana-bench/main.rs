//! Benchmarks that print one line per figure, each beside a baseline measured in the same run.
//! `cargo run --release -p kalpana-e2e --bin kalpana-bench -- <what>`, where what is:
//!
//! - `provision [N]`: `POST /api/buckets?wait=true` to RUNNING, N sequential and N concurrent
//!   creates, beside a plain `docker run` of the same image to its first S3 answer.
//! - `transfer [REPS]`: 1 MiB, 64 MiB and 1 GiB uploads and downloads through the daemon beside
//!   the same transfer straight to the bucket container with aws-sdk-s3; the daemon's idle and
//!   peak RSS.
//! - `presign [N]`: presigned URLs per second on one core, as the daemon makes them, beside the
//!   SDK presigning with one reused client.
//! - `list [RECORDS]`: `GET /api/buckets` and `GET /api/buckets/{id}` latency with RECORDS bucket
//!   records in the store, beside `GET /healthz` on the same daemon.
//! - `stores [RECORDS [REQUESTS]]`: `list` on the embedded store, then on a MongoDB wire server
//!   (SecantusDB from `.tools/mongo-venv`, started by the benchmark), in one run.
//! - `small [N]`: N sequential 4 KiB and N/10 1 MiB PUTs and GETs through the API beside the same
//!   straight to the bucket with aws-sdk-s3: operations per second, p99, and their ratios.
//! - `inventory [VOLUMES [PAGES]]`: a dock sync of VOLUMES (5,000) volumes over PAGES (50)
//!   pages from a provider stand-in, on both stores, beside reading the pages directly; then a
//!   second, unchanged sync and the store writes of each.
//! - `snapshot [MIB]`: a bucket of MIB (1024) MiB of incompressible objects snapshotted into
//!   another bucket and restored, beside `docker cp` of the same volume path: MiB/s of each,
//!   pause per GiB, restore downtime, the daemon's peak RSS growth.
//! - `all`: every one of the above with its defaults.

mod inventory;
mod snapshot;

use std::process::Stdio;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use kalpana_e2e::{
    object_path, percentile, proc_memory, s3_client, Daemon, DaemonOptions, ENGINE_IMAGE,
};
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

/// `docker run` of the engine image, as the daemon configures it, to its first 200 on /healthz.
async fn plain_docker_run(port: u16) -> Result<f64> {
    let name = format!("kalpana-bench-plain-{}", uuid::Uuid::new_v4().simple());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let started = Instant::now();
    // tokio's Command, so that concurrent runs really start concurrently.
    let status = tokio::process::Command::new("docker")
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
        .args(EngineProfile::seaweedfs().command(512 * 1024 * 1024))
        .stdout(Stdio::null())
        .status()
        .await?;
    if !status.success() {
        // A failed run can leave a created container behind.
        let _ = tokio::process::Command::new("docker")
            .args(["rm", "-f", "-v", &name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
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
    let _ = tokio::process::Command::new("docker")
        .args(["rm", "-f", "-v", &name])
        .stdout(Stdio::null())
        .status()
        .await;
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

    // n concurrent creates through the daemon, beside n concurrent plain `docker run`s.
    // Outside every test daemon's slice of this process's ports (see `port_base`).
    let ports: Vec<u16> = (0..n.min(20) as u16)
        .map(|i| kalpana_e2e::port_base() + 376 + i)
        .collect();
    let wall = Instant::now();
    let mut plain_c: Vec<f64> =
        futures::future::join_all(ports.iter().map(|p| plain_docker_run(*p)))
            .await
            .into_iter()
            .collect::<Result<_>>()?;
    let plain_wall = wall.elapsed().as_secs_f64();
    let wall = Instant::now();
    let created = futures::future::join_all((0..n).map(|i| {
        let api = api.clone();
        async move {
            let started = Instant::now();
            let (status, b) = api
                .create_bucket(json!({ "name": format!("conc-{i}") }))
                .await?;
            if status != 201 || b["status"] != "RUNNING" {
                bail!("concurrent create {i} failed: {status} {b}");
            }
            anyhow::Ok((
                started.elapsed().as_secs_f64(),
                b["id"].as_str().unwrap_or_default().to_string(),
            ))
        }
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>>>()?;
    let daemon_wall = wall.elapsed().as_secs_f64();
    let mut daemon_c: Vec<f64> = created.iter().map(|(s, _)| *s).collect();
    for (_, id) in &created {
        api.delete_bucket(id, true).await?;
    }
    let (pm, dm) = (median(&mut plain_c.clone()), median(&mut daemon_c.clone()));
    println!("provision.concurrent n={n} plain_docker_run_to_first_s3_answer median_s={pm:.3} p95_s={:.3} wall_s={plain_wall:.3}", percentile(&mut plain_c, 95.0));
    println!("provision.concurrent n={n} daemon_post_to_running median_s={dm:.3} p95_s={:.3} wall_s={daemon_wall:.3}", percentile(&mut daemon_c, 95.0));
    println!(
        "provision.concurrent ratio daemon/plain median={:.3} wall={:.3}",
        dm / pm,
        daemon_wall / plain_wall
    );
    Ok(())
}

const MIB: u64 = 1024 * 1024;

/// A body of `size` bytes made of one shared 1 MiB chunk: no disk, no allocation per chunk.
fn body_stream(
    size: u64,
) -> impl futures::Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + Sync + 'static
{
    let chunk = Bytes::from(kalpana_e2e::pattern(MIB as usize, 9));
    let full = size / MIB;
    let rest = (size % MIB) as usize;
    let tail = chunk.slice(..rest);
    futures::stream::iter(
        (0..full)
            .map(move |_| Ok(chunk.clone()))
            .chain((rest > 0).then_some(Ok(tail))),
    )
}

fn human(size: u64) -> String {
    if size >= 1024 * MIB {
        format!("{}GiB", size / (1024 * MIB))
    } else {
        format!("{}MiB", size / MIB)
    }
}

/// An S3 client straight to a bucket's engine, from the create answer (endpoint, name, keys).
fn direct_client(b: &serde_json::Value) -> Result<kalpana_s3_ops::BucketClient> {
    let field = |k: &str| -> Result<String> {
        Ok(b[k]
            .as_str()
            .with_context(|| format!("{k} in {b}"))?
            .to_string())
    };
    Ok(kalpana_s3_ops::BucketClient::new(
        &kalpana_s3_ops::Endpoint {
            url: field("endpoint")?,
            region: "us-east-1".into(),
            access_key: field("accessKey")?,
            secret_key: field("secretKey")?,
        },
        &field("name")?,
    ))
}

/// Samples a process's RSS every 10 ms and keeps the highest value until reset.
struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(rss) = proc_memory(pid, "VmRSS") {
                    p.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        RssSampler { peak, stop }
    }

    fn take_peak(&self) -> u64 {
        self.peak.swap(0, Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn transfer(reps: usize) -> Result<()> {
    // SeaweedFS `mini` keeps recently written data in its own memory (about the object size): it
    // is OOM-killed by a 1 GiB object in the default 512 MiB container, and still in 2 GiB.
    let d = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_CONTAINER_MEMORY_MB".into(), "6144".into())],
        ..Default::default()
    })
    .await?;
    let pid = d.pid().context("daemon pid")?;
    let (api, _) = d.new_user("bench").await?;
    let (status, b) = api.create_bucket(json!({ "name": "transfer" })).await?;
    if status != 201 || b["status"] != "RUNNING" {
        bail!("create failed: {status} {b}");
    }
    let id = b["id"].as_str().context("id")?.to_string();
    let direct = direct_client(&b)?;
    let (http, _, _) = api.raw();
    let http = http.clone();
    // Warm both paths up once so first-connection costs stay out of the figures.
    direct
        .put_object(
            "warm",
            None,
            Some(MIB),
            Box::pin(
                body_stream(MIB).map(|c| c.map_err(|e| Box::new(e) as kalpana_s3_ops::BoxError)),
            ),
        )
        .await?;
    api.put_object(&id, "warm", vec![0u8; MIB as usize], None)
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = proc_memory(pid, "VmRSS").context("VmRSS")?;
    println!(
        "transfer.memory daemon_idle_rss_mib={:.1}",
        idle as f64 / MIB as f64
    );
    let sampler = RssSampler::start(pid);

    for size in [MIB, 64 * MIB, 1024 * MIB] {
        let mut up = (Vec::new(), Vec::new());
        let mut down = (Vec::new(), Vec::new());
        sampler.take_peak();
        for _ in 0..reps {
            // Straight to the container with the daemon's own S3 client code.
            let started = Instant::now();
            direct
                .put_object(
                    "direct",
                    None,
                    Some(size),
                    Box::pin(
                        body_stream(size)
                            .map(|c| c.map_err(|e| Box::new(e) as kalpana_s3_ops::BoxError)),
                    ),
                )
                .await?;
            up.0.push(started.elapsed().as_secs_f64());

            // Through the daemon's raw PUT.
            let started = Instant::now();
            let resp = api
                .request(reqwest::Method::PUT, &object_path(&id, "daemon"))
                .header("content-length", size)
                .body(reqwest::Body::wrap_stream(body_stream(size)))
                .send()
                .await?;
            if resp.status() != 201 {
                bail!("daemon upload: {} {}", resp.status(), resp.text().await?);
            }
            up.1.push(started.elapsed().as_secs_f64());

            let started = Instant::now();
            let mut got = direct.get_object("direct", None).await?.body;
            let mut n = 0u64;
            while let Some(chunk) = got.next().await {
                n += chunk.map_err(|e| anyhow::anyhow!("{e}"))?.len() as u64;
            }
            if n != size {
                bail!("direct download got {n} of {size} bytes");
            }
            down.0.push(started.elapsed().as_secs_f64());

            let started = Instant::now();
            let resp = http
                .get(format!("{}{}", d.url, object_path(&id, "daemon")))
                .bearer_auth(api_token(&api))
                .send()
                .await?;
            let mut stream = resp.bytes_stream();
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                n += chunk?.len() as u64;
            }
            if n != size {
                bail!("daemon download got {n} of {size} bytes");
            }
            down.1.push(started.elapsed().as_secs_f64());
        }
        let peak = sampler.take_peak().max(idle);
        let mbps = |secs: f64| size as f64 / MIB as f64 / secs;
        for (what, (direct, daemon)) in [("upload", &mut up), ("download", &mut down)] {
            let (dm, pm) = (median(direct), median(daemon));
            println!(
                "transfer.{what} size={} reps={reps} direct_mib_s={:.1} daemon_mib_s={:.1} ratio_daemon/direct={:.3}",
                human(size),
                mbps(dm),
                mbps(pm),
                dm / pm
            );
        }
        println!(
            "transfer.memory size={} daemon_peak_rss_mib={:.1} growth_over_idle_mib={:.1}",
            human(size),
            peak as f64 / MIB as f64,
            (peak.saturating_sub(idle)) as f64 / MIB as f64
        );
    }
    Ok(())
}

/// Runs [`presign`] on a thread of its own, outside the main runtime.
fn presign_on_own_thread(n: usize) -> Result<()> {
    std::thread::spawn(move || presign(n))
        .join()
        .map_err(|_| anyhow::anyhow!("presign thread panicked"))?
}

fn api_token(api: &kalpana_e2e::Api) -> String {
    api.raw().2.unwrap_or_default().to_string()
}

fn presign(n: usize) -> Result<()> {
    use aws_sdk_s3::presigning::PresigningConfig;
    use kalpana_s3_ops::{Endpoint, Presigner};
    // One thread with a current-thread runtime: the figures are per core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let endpoint = Endpoint {
        url: "http://photos.buckets.example.test:8080".into(),
        region: "us-east-1".into(),
        access_key: "AKIABENCHBENCHBENCH0".into(),
        secret_key: "benchbenchbenchbenchbenchbenchbenchbench".into(),
    };
    let expires = Duration::from_secs(3600);
    rt.block_on(async {
        // Baseline: the SDK's own presigning with one client built once.
        let sdk = s3_client(&endpoint.url, &endpoint.access_key, &endpoint.secret_key);
        let sdk_presign = |key: String| {
            let sdk = sdk.clone();
            async move {
                sdk.get_object()
                    .bucket("photos")
                    .key(key)
                    .presigned(PresigningConfig::expires_in(expires)?)
                    .await
                    .map(|r| r.uri().to_string())
                    .map_err(anyhow::Error::from)
            }
        };
        for i in 0..200 {
            sdk_presign(format!("warm/{i}")).await?;
        }
        let started = Instant::now();
        for i in 0..n {
            sdk_presign(format!("key/{i}")).await?;
        }
        let sdk_rate = n as f64 / started.elapsed().as_secs_f64();
        // The daemon's path: a presigner for the bucket's public origin per request.
        let started = Instant::now();
        for i in 0..n {
            Presigner::new(&endpoint, "photos").presign_get(&format!("key/{i}"), expires)?;
        }
        let daemon_rate = n as f64 / started.elapsed().as_secs_f64();
        println!("presign n={n} sdk_reused_client_urls_per_s_per_core={sdk_rate:.0}");
        println!(
            "presign n={n} daemon_path_urls_per_s_per_core={daemon_rate:.0} ratio_daemon/sdk={:.3}",
            daemon_rate / sdk_rate
        );
        anyhow::Ok(())
    })
}

/// Operations per second and p99 latency of `n` sequential PUTs and GETs of `size`-byte objects
/// through the API (one keep-alive client) beside the same through aws-sdk-s3 straight to the
/// bucket's container, in one run.
async fn small(n: usize) -> Result<()> {
    let d = Daemon::start().await?;
    let (api, _) = d.new_user("bench").await?;
    let (status, b) = api.create_bucket(json!({ "name": "small" })).await?;
    if status != 201 || b["status"] != "RUNNING" {
        bail!("create failed: {status} {b}");
    }
    let id = b["id"].as_str().context("id")?.to_string();
    let direct = s3_client(
        b["endpoint"].as_str().context("endpoint")?,
        b["accessKey"].as_str().context("accessKey")?,
        b["secretKey"].as_str().context("secretKey")?,
    );
    let (http, base, token) = api.raw();
    let (http, base, token) = (
        http.clone(),
        base.to_string(),
        token.unwrap_or("").to_string(),
    );
    // Rounds interleave the four phases, so that the machine's drift over a run (the direct
    // figures alone moved 30 % between runs) falls on both sides alike.
    const ROUNDS: usize = 5;
    const PHASES: [(&str, &str); 4] = [
        ("direct", "put"),
        ("api", "put"),
        ("direct", "get"),
        ("api", "get"),
    ];
    for (size, count) in [(4 * 1024usize, n), (1024 * 1024, n / 5)] {
        let body = vec![7u8; size];
        let per_round = count.div_ceil(ROUNDS);
        let mut lat: Vec<Vec<f64>> = vec![Vec::with_capacity(count); PHASES.len()];
        let mut spent = [0f64; PHASES.len()];
        for round in 0..ROUNDS {
            for (phase, (via, op)) in PHASES.into_iter().enumerate() {
                let started = Instant::now();
                for i in round * per_round..(round + 1) * per_round {
                    let key = format!("obj-{size}-{i}");
                    let t = Instant::now();
                    match (via, op) {
                        ("direct", "put") => {
                            direct
                                .put_object()
                                .bucket("small")
                                .key(&key)
                                .body(body.clone().into())
                                .send()
                                .await?;
                        }
                        ("direct", _) => {
                            let got = direct.get_object().bucket("small").key(&key).send().await?;
                            got.body.collect().await?;
                        }
                        ("api", "put") => {
                            let resp = http
                                .put(format!("{base}{}", object_path(&id, &format!("{key}-api"))))
                                .bearer_auth(&token)
                                .body(body.clone())
                                .send()
                                .await?;
                            if resp.status() != 201 {
                                bail!("API PUT: {}", resp.status());
                            }
                        }
                        _ => {
                            let resp = http
                                .get(format!("{base}{}", object_path(&id, &format!("{key}-api"))))
                                .bearer_auth(&token)
                                .send()
                                .await?;
                            if resp.status() != 200 {
                                bail!("API GET: {}", resp.status());
                            }
                            resp.bytes().await?;
                        }
                    }
                    lat[phase].push(t.elapsed().as_secs_f64() * 1000.0);
                }
                spent[phase] += started.elapsed().as_secs_f64();
            }
        }
        let mut figures = Vec::new();
        for (phase, (via, op)) in PHASES.into_iter().enumerate() {
            let done = lat[phase].len();
            let ops = done as f64 / spent[phase];
            let p99 = percentile(&mut lat[phase], 99.0);
            println!(
                "small.{op} size={size} via={via} n={done} ops_per_s={ops:.1} p99_ms={p99:.2}"
            );
            figures.push(ops);
        }
        println!(
            "small.ratio size={size} put_api_over_direct={:.3} get_api_over_direct={:.3}",
            figures[1] / figures[0],
            figures[3] / figures[2]
        );
    }
    Ok(())
}

/// `list` on the embedded store and on a MongoDB wire server (SecantusDB from `.tools`), one
/// after the other in the same run.
async fn stores(records: usize, requests: usize) -> Result<()> {
    list(records, requests, None).await?;
    let server = kalpana_e2e::mongo::MongoServer::start().await?;
    list(records, requests, Some(server.uri("bench"))).await
}

async fn list(records: usize, requests: usize, store_uri: Option<String>) -> Result<()> {
    use kalpana_domain::model::{now, BucketStatus, User};
    let store_name = if store_uri.is_some() {
        "mongodb"
    } else {
        "embedded"
    };
    let instance = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let data_dir = std::env::temp_dir().join(format!("kalpana-{instance}"));
    std::fs::create_dir_all(&data_dir)?;
    let token = format!("kb_bench{}", uuid::Uuid::new_v4().simple());
    let mut ids = Vec::new();
    {
        let store = kalpana_domain::store::open(store_uri.as_deref(), &data_dir).await?;
        store
            .put_user(&User {
                id: "bench-user".into(),
                name: "bench".into(),
                admin: false,
                token_hash: kalpana_domain::secrets::hash_token(&token),
                created_at: now(),
            })
            .await?;
        let started = Instant::now();
        for i in 0..records {
            let mut b = kalpana_domain::model::BucketRecord {
                image: "img".into(),
                host: "127.0.0.1".into(),
                access_key: "AK".into(),
                secret_key_enc: "sealed".into(),
                region: "us-east-1".into(),
                ..kalpana_domain::model::BucketRecord::new(
                    kalpana_domain::model::new_id(),
                    format!("b-{i:06}"),
                    "bench-user".into(),
                    kalpana_manager_core::EngineKind::Seaweedfs,
                )
            };
            b.status = BucketStatus::Stopped;
            b.provisioned = true;
            ids.push(b.id.clone());
            store.insert_bucket(&b).await?;
        }
        println!(
            "list.setup store={store_name} records={records} inserted_in_s={:.1}",
            started.elapsed().as_secs_f64()
        );
    }
    let opts = DaemonOptions {
        env: store_uri
            .iter()
            .map(|u| ("KALPANA_STORE".to_string(), u.clone()))
            .collect(),
        ..Default::default()
    };
    let d = Daemon::start_in(opts, instance, data_dir).await?;
    let api = d.api(&token);
    let (http, base, _) = api.raw();
    let time_get = |path: String| {
        let req = http.get(format!("{base}{path}")).bearer_auth(&token);
        async move {
            let started = Instant::now();
            let resp = req.send().await?;
            let ok = resp.status().is_success();
            let body = resp.bytes().await?;
            if !ok {
                bail!("GET failed: {}", String::from_utf8_lossy(&body));
            }
            anyhow::Ok((started.elapsed().as_secs_f64() * 1000.0, body))
        }
    };
    for _ in 0..50 {
        time_get("/healthz".into()).await?;
    }
    let mut health = Vec::new();
    let mut one = Vec::new();
    let mut page = Vec::new();
    let mut cursors: Vec<Option<String>> = vec![None];
    for i in 0..requests {
        health.push(time_get("/healthz".into()).await?.0);
        one.push(
            time_get(format!("/api/buckets/{}", ids[(i * 7919) % ids.len()]))
                .await?
                .0,
        );
        let cursor = cursors[i % cursors.len()].clone();
        let path = match &cursor {
            Some(c) => format!("/api/buckets?cursor={c}"),
            None => "/api/buckets".into(),
        };
        let (ms, body) = time_get(path).await?;
        page.push(ms);
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        if v["buckets"].as_array().map(Vec::len) != Some(100) {
            bail!("a page should hold 100 buckets");
        }
        if let Some(next) = v["nextCursor"].as_str() {
            if cursors.len() < 100 {
                cursors.push(Some(next.to_string()));
            }
        }
    }
    let line = |what: &str, v: &mut Vec<f64>| {
        println!(
            "list.latency store={store_name} records={records} n={requests} {what} p50_ms={:.2} p99_ms={:.2}",
            percentile(v, 50.0),
            percentile(v, 99.0)
        );
    };
    line("baseline_get_healthz", &mut health);
    line("get_one_bucket", &mut one);
    line("get_bucket_page_of_100", &mut page);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: usize| -> Result<usize> {
        Ok(args
            .get(i)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    match args.first().map(String::as_str) {
        Some("provision") => provision(arg(1, 20)?).await,
        Some("transfer") => transfer(arg(1, 3)?).await,
        Some("presign") => presign_on_own_thread(arg(1, 20_000)?),
        Some("list") => list(arg(1, 10_000)?, arg(2, 1000)?, None).await,
        Some("stores") => stores(arg(1, 10_000)?, arg(2, 1000)?).await,
        Some("small") => small(arg(1, 500)?).await,
        Some("inventory") => inventory::run(arg(1, 5000)?, arg(2, 50)?).await,
        Some("snapshot") => snapshot::run(arg(1, 1024)? as u64).await,
        Some("all") => {
            provision(20).await?;
            transfer(3).await?;
            presign_on_own_thread(20_000)?;
            stores(10_000, 1000).await?;
            inventory::run(5000, 50).await?;
            snapshot::run(1024).await
        }
        _ => bail!("usage: kalpana-bench provision [N] | transfer [REPS] | presign [N] | list [RECORDS [REQUESTS]] | stores [RECORDS [REQUESTS]] | small [N] | inventory [VOLUMES [PAGES]] | snapshot [MIB] | all"),
    }
}
