//! `inventory [VOLUMES [PAGES]]`: a dock sync of VOLUMES Vultr blocks over PAGES pages from the
//! stand-in, through the daemon on the embedded store and on a MongoDB wire server, beside
//! reading the same pages straight from the stand-in; then a second sync of the same answer.
//! Prints sync times, their ratio to the baseline, and the store writes of each sync.

use std::time::Instant;

use anyhow::{bail, Result};
use kalpana_e2e::cloud::{Cloud, StandIn};
use kalpana_e2e::{Daemon, DaemonOptions};
use serde_json::{json, Value};

const TOKEN: &str = "bench-token";

/// Reads every page straight from the stand-in as the daemon would (bearer auth, JSON, cursor).
async fn baseline(stand_in: &StandIn, volumes: usize) -> Result<f64> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut url = format!("{}/v2/blocks?per_page=100", stand_in.url);
    let mut seen = 0;
    loop {
        let page: Value = http
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await?
            .json()
            .await?;
        seen += page["blocks"].as_array().map_or(0, Vec::len);
        match page["meta"]["links"]["next"].as_str() {
            Some(c) if !c.is_empty() => {
                url = format!("{}/v2/blocks?per_page=100&cursor={c}", stand_in.url)
            }
            _ => break,
        }
    }
    if seen != volumes {
        bail!("baseline read {seen} of {volumes}");
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

async fn on_store(
    stand_in: &StandIn,
    volumes: usize,
    base_ms: f64,
    store_uri: Option<String>,
) -> Result<()> {
    let store = if store_uri.is_some() {
        "mongodb"
    } else {
        "embedded"
    };
    let mut env = vec![
        (Cloud::Vultr.url_var(), stand_in.url.clone()),
        ("KALPANA_INVENTORY_SYNC_SECS".to_string(), "0".to_string()),
    ];
    if let Some(u) = store_uri {
        env.push(("KALPANA_STORE".to_string(), u));
    }
    let d = Daemon::start_with(DaemonOptions {
        env,
        ..Default::default()
    })
    .await?;
    let (api, _) = d.new_user("bench").await?;
    let (status, dock) = api
        .send(
            "POST",
            "/api/docks",
            Some(json!({ "provider": "vultr", "name": "bench", "apiToken": TOKEN })),
        )
        .await?;
    if status != 201 {
        bail!("dock: {status} {dock}");
    }
    let id = dock["id"].as_str().unwrap_or_default().to_string();
    // The first sync runs in the background from the create; wait for its figures.
    let first = loop {
        let (_, d) = api.send("GET", &format!("/api/docks/{id}"), None).await?;
        if !d["lastSyncedAt"].is_null() {
            break d;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let (_, second) = api
        .send("POST", &format!("/api/docks/{id}/sync"), None)
        .await?;
    for (what, d) in [("first", &first), ("second_unchanged", &second)] {
        let s = &d["lastSync"];
        let ms = s["millis"].as_f64().unwrap_or(f64::NAN);
        println!(
            "inventory.sync store={store} volumes={volumes} pages={} {what} ms={ms:.0} ratio_to_direct_read={:.2} store_writes={} inserted={} unchanged={} error={}",
            s["pages"], ms / base_ms, s["storeWrites"], s["inserted"], s["unchanged"], d["lastSyncError"]
        );
    }
    Ok(())
}

/// Runs the benchmark.
pub async fn run(volumes: usize, pages: usize) -> Result<()> {
    let page_size = volumes.div_ceil(pages.max(1)).max(1);
    let stand_in = StandIn::start(Cloud::Vultr, TOKEN, volumes, page_size).await?;
    let mut base = Vec::new();
    for _ in 0..3 {
        base.push(baseline(&stand_in, volumes).await?);
    }
    let base_ms = super::median(&mut base);
    println!("inventory.baseline volumes={volumes} pages={pages} direct_read_ms={base_ms:.0}");
    on_store(&stand_in, volumes, base_ms, None).await?;
    let server = kalpana_e2e::mongo::MongoServer::start().await?;
    on_store(
        &stand_in,
        volumes,
        base_ms,
        Some(server.uri("inventory_bench")),
    )
    .await
}
