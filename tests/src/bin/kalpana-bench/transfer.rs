//! `transfer [REPS]`: uploads and downloads through the daemon beside straight to the bucket.

use super::*;

/// A body of `size` bytes made of one shared 1 MiB chunk: no disk, no allocation per chunk.
pub(super) fn body_stream(
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

pub(super) fn human(size: u64) -> String {
    if size >= 1024 * MIB {
        format!("{}GiB", size / (1024 * MIB))
    } else {
        format!("{}MiB", size / MIB)
    }
}

/// An S3 client straight to a bucket's engine, from the create answer (endpoint, name, keys).
pub(super) fn direct_client(b: &serde_json::Value) -> Result<kalpana_s3_ops::BucketClient> {
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
pub(super) struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssSampler {
    pub(super) fn start(pid: u32) -> Self {
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

    pub(super) fn take_peak(&self) -> u64 {
        self.peak.swap(0, Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub(super) async fn transfer(reps: usize) -> Result<()> {
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
