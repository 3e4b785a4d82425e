//! Load under failure: `cargo run --release -p kalpana-e2e --bin kalpana-load -- [BUCKETS
//! [CLIENTS [SECONDS [KILL_EVERY_SECS]]]]` (defaults 50, 10, 60, 10).
//!
//! Creates BUCKETS buckets concurrently through a real daemon, then runs CLIENTS clients that
//! put and read back objects through the REST API for SECONDS while one random bucket container
//! is killed (`docker kill`) every KILL_EVERY_SECS. Prints requests done, answers by status,
//! p50/p99 latency, and then reads back every acknowledged write: a write is lost when its key
//! is missing or its bytes differ. Exits non-zero when one is lost.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kalpana_e2e::{object_path, pattern, percentile, port_base, Api, Daemon, DaemonOptions};
use serde_json::json;

/// What the clients saw.
#[derive(Default)]
struct Tally {
    by_status: BTreeMap<String, u64>,
    latencies_ms: Vec<f64>,
    /// (bucket id, key, seed, length) of every write the daemon acknowledged with 201.
    acked: Vec<(String, String, u8, usize)>,
}

fn arg(n: usize, default: u64) -> Result<u64> {
    match std::env::args().nth(n) {
        Some(a) => a.parse().with_context(|| format!("argument {n}: {a:?}")),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let buckets = arg(1, 50)? as usize;
    let clients = arg(2, 10)? as usize;
    let seconds = arg(3, 60)?;
    let kill_every = arg(4, 10)?;
    let base = port_base();
    let d = Daemon::start_with(DaemonOptions {
        port_range: Some(format!("{base}-{}", base + 399)),
        env: vec![("KALPANA_READY_TIMEOUT_SECS".into(), "180".into())],

        ..Default::default()
    })
    .await?;
    let (user, _) = d.new_user("load").await?;

    // Every bucket at once.
    let started = Instant::now();
    let creates = (0..buckets).map(|i| {
        let user = user.clone();
        tokio::spawn(async move {
            user.create_bucket(json!({ "name": format!("load-{i:03}") }))
                .await
        })
    });
    let mut ids = Vec::new();
    let mut create_failures = 0;
    for c in futures::future::join_all(creates).await {
        match c? {
            Ok((201, b)) if b["status"] == "RUNNING" => {
                ids.push(b["id"].as_str().context("id")?.to_string())
            }
            Ok((status, b)) => {
                create_failures += 1;
                eprintln!("create: {status} {b}");
            }
            Err(e) => {
                create_failures += 1;
                eprintln!("create: {e}");
            }
        }
    }
    println!(
        "created {} buckets concurrently in {:.1} s ({create_failures} failed)",
        ids.len(),
        started.elapsed().as_secs_f64()
    );
    if ids.is_empty() {
        bail!("no bucket came up");
    }

    let tally = Arc::new(Mutex::new(Tally::default()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for c in 0..clients {
        let user = user.clone();
        let ids = ids.clone();
        let tally = tally.clone();
        workers.push(tokio::spawn(client(c, user, ids, tally, deadline)));
    }
    let killer = {
        let ids = ids.clone();
        tokio::spawn(async move {
            let mut kills = Vec::new();
            let mut n = 0usize;
            loop {
                tokio::time::sleep(Duration::from_secs(kill_every)).await;
                if Instant::now() >= deadline {
                    return kills;
                }
                // Spread over the buckets without a random generator.
                n = (n * 7 + 13) % ids.len();
                let name = format!("kalpana-bucket-{}", ids[n]);
                let ok = tokio::process::Command::new("docker")
                    .args(["kill", &name])
                    .stdout(std::process::Stdio::null())
                    .status()
                    .await
                    .is_ok_and(|s| s.success());
                kills.push((name, ok));
            }
        })
    };
    for w in workers {
        w.await?;
    }
    let kills = killer.await?;

    let mut t = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    let total: u64 = t.by_status.values().sum();
    println!(
        "{clients} clients for {seconds} s on {} buckets, {} containers killed ({} kills failed): {total} requests, {:.0}/s",
        ids.len(),
        kills.len(),
        kills.iter().filter(|(_, ok)| !ok).count(),
        total as f64 / seconds as f64
    );
    for (status, n) in &t.by_status {
        println!("  {status}: {n}");
    }
    println!(
        "  latency p50 {:.1} ms, p99 {:.1} ms",
        percentile(&mut t.latencies_ms, 50.0),
        percentile(&mut t.latencies_ms, 99.0)
    );

    // Every bucket back up, then every acknowledged write read back.
    let settle = Instant::now();
    for id in &ids {
        loop {
            let (_, b) = user
                .send("GET", &format!("/api/buckets/{id}"), None)
                .await?;
            if b["status"] == "RUNNING"
                && !b["statusMessage"]
                    .as_str()
                    .is_some_and(|m| m.ends_with("restarting it"))
            {
                break;
            }
            if settle.elapsed() > Duration::from_secs(120) {
                bail!("bucket {id} not back after 120 s: {b}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mut lost = 0;
    for (id, key, seed, len) in &t.acked {
        let resp = user
            .request(reqwest::Method::GET, &object_path(id, key))
            .send()
            .await?;
        let ok = resp.status() == 200 && resp.bytes().await?.as_ref() == pattern(*len, *seed);
        if !ok {
            lost += 1;
            eprintln!("lost: {id} {key}");
        }
    }
    println!(
        "acknowledged writes: {}, read back identical: {}, lost: {lost}",
        t.acked.len(),
        t.acked.len() - lost
    );
    if lost > 0 {
        bail!("{lost} acknowledged writes lost");
    }
    Ok(())
}

/// One client: alternately writes a new object and reads back one it wrote, until `deadline`.
async fn client(
    c: usize,
    user: Api,
    ids: Vec<String>,
    tally: Arc<Mutex<Tally>>,
    deadline: Instant,
) {
    let mut mine: Vec<(String, String, u8, usize)> = Vec::new();
    let mut n = 0usize;
    while Instant::now() < deadline {
        n += 1;
        let write = mine.is_empty() || n % 2 == 1;
        let started = Instant::now();
        let (status, acked) = if write {
            let id = &ids[(c * 31 + n * 17) % ids.len()];
            let key = format!("c{c}/o{n}");
            let seed = (n % 251) as u8;
            let len = 1024 + (n * 997) % (256 << 10);
            match user.put_object(id, &key, pattern(len, seed), None).await {
                Ok((201, _)) => ("201".to_string(), Some((id.clone(), key, seed, len))),
                Ok((status, body)) => (
                    format!("{status} {}", body["error"]["code"].as_str().unwrap_or("")),
                    None,
                ),
                Err(e) => (classify(&e), None),
            }
        } else {
            let (id, key, seed, len) = &mine[n % mine.len()];
            let resp = user
                .request(reqwest::Method::GET, &object_path(id, key))
                .send()
                .await;
            match resp {
                Ok(r) => {
                    let status = r.status().as_u16();
                    match r.bytes().await {
                        Ok(b) if status == 200 && b.as_ref() != pattern(*len, *seed) => {
                            ("200 with wrong bytes".to_string(), None)
                        }
                        Ok(b) if status != 200 => {
                            let code = serde_json::from_slice::<serde_json::Value>(&b)
                                .ok()
                                .and_then(|v| v["error"]["code"].as_str().map(String::from))
                                .unwrap_or_default();
                            (format!("{status} {code}"), None)
                        }
                        Ok(_) => ("200".to_string(), None),
                        Err(e) => (classify(&e.into()), None),
                    }
                }
                Err(e) => (classify(&e.into()), None),
            }
        };
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
        *t.by_status.entry(status).or_default() += 1;
        t.latencies_ms.push(ms);
        if let Some(a) = acked {
            t.acked.push(a.clone());
            mine.push(a);
        }
    }
}

fn classify(e: &anyhow::Error) -> String {
    format!("transport error ({})", e.root_cause())
        .chars()
        .take(80)
        .collect()
}
