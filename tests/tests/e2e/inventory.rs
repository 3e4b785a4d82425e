//! The cloud inventory against stand-ins of Vultr, DigitalOcean and Linode (the real APIs are
//! out of reach here; the stand-ins answer as their documentation says, see
//! `kalpana_e2e::cloud`): a refused token stores nothing; every page is synced, field by field
//! as the seeds map it, through a 429; a second sync of the same answer writes nothing; what the
//! provider drops is removed; a failing or garbage answer keeps the last good inventory; another
//! user sees none of it; the token appears in no answer and no log line.

use std::time::{Duration, Instant};

use kalpana_e2e::cloud::{Cloud, StandIn};
use kalpana_e2e::{Api, Daemon, DaemonOptions};
use serde_json::{json, Value};

const TOKEN: &str = "tok-secret-7f3a9c2e51d84b06";

/// Waits for the dock's background first sync and answers the dock.
async fn first_sync(api: &Api, id: &str) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        let (_, d) = api.send("GET", &format!("/api/docks/{id}"), None).await?;
        if !d["lastSyncedAt"].is_null() {
            return Ok(d);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the first sync never ended: {d}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every page of a listing, following `nextCursor`.
async fn all_pages(api: &Api, path: &str, field: &str, limit: usize) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let (status, page) = api.send("GET", &url, None).await?;
        anyhow::ensure!(status == 200, "{url}: {status} {page}");
        out.extend(page[field].as_array().cloned().unwrap_or_default());
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok(out),
        }
    }
}

fn by_resource<'a>(items: &'a [Value], prid: &str) -> &'a Value {
    items
        .iter()
        .find(|v| v["providerResourceId"] == prid)
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn docks_sync_every_page_into_the_inventory_and_only_their_owner_sees_it(
) -> anyhow::Result<()> {
    let vultr = StandIn::start(Cloud::Vultr, TOKEN, 7, 3).await?;
    let digitalocean = StandIn::start(Cloud::DigitalOcean, TOKEN, 5, 2).await?;
    let linode = StandIn::start(Cloud::Linode, TOKEN, 4, 3).await?;
    let mut env: Vec<(String, String)> = [&vultr, &digitalocean, &linode]
        .iter()
        .map(|s| (s.cloud.url_var(), s.url.clone()))
        .collect();
    env.push(("KALPANA_INVENTORY_SYNC_SECS".into(), "0".into()));
    let d = Daemon::start_with(DaemonOptions {
        env,
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let (bob, _) = d.new_user("bob").await?;

    // A refused token: 422 with the provider's words, nothing stored.
    let (status, e) = alice
        .send(
            "POST",
            "/api/docks",
            Some(json!({ "provider": "vultr", "name": "prod", "apiToken": "wrong" })),
        )
        .await?;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["error"]["code"], "provider_refused");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Invalid API token.") && m.contains("401")),
        "{e}"
    );
    let (_, docks) = alice.send("GET", "/api/docks", None).await?;
    assert_eq!(docks["docks"].as_array().map(Vec::len), Some(0), "{docks}");
    let (status, _) = alice
        .send(
            "POST",
            "/api/docks",
            Some(json!({ "provider": "aws", "name": "x", "apiToken": TOKEN })),
        )
        .await?;
    assert_eq!(status, 400, "an unknown provider");

    // The first sync waits out one 429 and reads every page.
    vultr.with(|a| a.rate_limit_once = Some(1));
    let mut ids = Vec::new();
    let mut answers = Vec::new();
    for (cloud, name) in [
        (Cloud::Vultr, "vultr prod"),
        (Cloud::DigitalOcean, "do prod"),
        (Cloud::Linode, "linode prod"),
    ] {
        let (status, dock) = alice
            .send(
                "POST",
                "/api/docks",
                Some(json!({ "provider": cloud.name(), "name": name, "apiToken": TOKEN })),
            )
            .await?;
        assert_eq!(status, 201, "{dock}");
        answers.push(dock.to_string());
        ids.push(dock["id"].as_str().expect("id").to_string());
    }
    let (vid, did, lid) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    let first = first_sync(&alice, &vid).await?;
    assert_eq!(first["lastSyncError"], Value::Null, "{first}");
    let stats = &first["lastSync"];
    assert_eq!(stats["pages"], 3, "7 blocks, 3 a page: {first}");
    assert_eq!(stats["inserted"], 7);
    assert_eq!(stats["storeWrites"], 7);
    assert_eq!(stats["rateLimited"], 1, "{first}");
    for id in [&did, &lid] {
        let dock = first_sync(&alice, id).await?;
        assert_eq!(dock["lastSyncError"], Value::Null, "{dock}");
    }

    // Field by field, as the seeds map each provider's answer.
    let volumes = all_pages(&alice, "/api/inventory/volumes", "volumes", 4).await?;
    assert_eq!(
        volumes.len(),
        12,
        "7 Vultr blocks and 5 DigitalOcean volumes over pages of 4"
    );
    let mut seen: Vec<&str> = volumes.iter().filter_map(|v| v["id"].as_str()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 12, "no duplicates across pages");
    let block = by_resource(&volumes, "blk-00003");
    let raw = Cloud::Vultr.resource(3);
    assert_eq!(block["provider"], "vultr");
    assert_eq!(block["dockId"], vid.as_str());
    assert_eq!(block["name"], "sdtest-3");
    assert_eq!(block["sizeGb"], raw["size_gb"]);
    assert_eq!(block["region"], "ewr");
    assert_eq!(block["status"], "active");
    assert_eq!(block["attachedToInstance"], "inst-3");
    assert_eq!(block["attachedToInstanceLabel"], "web-3");
    assert_eq!(block["mountId"], raw["mount_id"]);
    assert_eq!(block["blockType"], "high_perf");
    assert_eq!(block["fullApiData"], json!({ "block": raw }));
    assert!(by_resource(&volumes, "blk-00001")["attachedToInstance"].is_null());
    let raw = Cloud::DigitalOcean.resource(4);
    let volume = by_resource(&volumes, raw["id"].as_str().unwrap_or_default());
    assert_eq!(volume["provider"], "digitalocean");
    assert_eq!(volume["name"], "sd-test-do-4");
    assert_eq!(volume["sizeGb"], 10);
    assert_eq!(volume["region"], "atl1");
    assert_eq!(volume["status"], "active");
    assert_eq!(volume["attachedToInstance"], "529967708");
    assert_eq!(volume["filesystemType"], "ext4");
    assert_eq!(volume["fullApiData"], json!({ "volume": raw }));

    // Buckets: Linode's and this daemon's own, each with its source.
    let (status, own) = alice.create_bucket(json!({ "name": "mine" })).await?;
    assert_eq!(status, 201, "{own}");
    let buckets = all_pages(&alice, "/api/inventory/buckets", "buckets", 2).await?;
    assert_eq!(buckets.len(), 5, "{buckets:?}");
    let raw = Cloud::Linode.resource(2);
    let b = by_resource(&buckets, "sdtest-2");
    assert_eq!(b["source"], "cloud");
    assert_eq!(b["provider"], "linode");
    assert_eq!(b["name"], "sdtest-2");
    assert_eq!(b["region"], "us-sea");
    assert_eq!(b["cluster"], "us-sea-1");
    assert_eq!(b["hostname"], raw["hostname"]);
    assert_eq!(b["s3Endpoint"], "us-sea-1.linodeobjects.com");
    assert_eq!(b["sizeBytes"], 2000);
    assert_eq!(b["objectCount"], 2);
    assert_eq!(b["status"], "active");
    assert_eq!(b["fullApiData"], json!({ "bucket": raw }));
    let mine = buckets
        .iter()
        .find(|b| b["id"] == own["id"])
        .expect("the daemon's own bucket is listed");
    assert_eq!(mine["source"], "managed");
    assert_eq!(mine["provider"], "kalpana");

    // Filters.
    let only = all_pages(
        &alice,
        "/api/inventory/volumes?provider=vultr&region=lax",
        "volumes",
        100,
    )
    .await?;
    assert_eq!(only.len(), 4, "blocks 0, 2, 4, 6 are in lax");
    let only = all_pages(
        &alice,
        &format!("/api/inventory/volumes?dockId={did}"),
        "volumes",
        100,
    )
    .await?;
    assert_eq!(only.len(), 5);
    let (_, summary) = alice.send("GET", "/api/inventory/summary", None).await?;
    assert_eq!(summary["docks"], 3, "{summary}");
    assert_eq!(summary["volumes"], 12);
    let vultr_gb: u64 = (0..7).map(|i| 10 + i % 5).sum();
    assert_eq!(summary["volumeGb"], vultr_gb + 50, "{summary}");
    assert_eq!(summary["buckets"], 5);
    assert_eq!(
        summary["bucketBytes"], 6000,
        "0+1000+2000+3000 and an empty bucket"
    );

    // A second sync of the same answer writes nothing.
    let (status, again) = alice
        .send("POST", &format!("/api/docks/{vid}/sync"), None)
        .await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["lastSync"]["storeWrites"], 0, "{again}");
    assert_eq!(again["lastSync"]["unchanged"], 7);
    let after = all_pages(
        &alice,
        "/api/inventory/volumes?provider=vultr",
        "volumes",
        100,
    )
    .await?;
    let before: Vec<&Value> = volumes
        .iter()
        .filter(|v| v["provider"] == "vultr")
        .collect();
    assert_eq!(after.len(), 7);
    for v in &after {
        assert_eq!(
            Some(v),
            before.iter().find(|b| b["id"] == v["id"]).copied(),
            "unchanged"
        );
    }

    // The provider drops one and changes another: removed, updated, nothing else written.
    vultr.with(|a| {
        a.resources.remove(0);
        a.resources[0]["size_gb"] = json!(500);
    });
    let (_, synced) = alice
        .send("POST", &format!("/api/docks/{vid}/sync"), None)
        .await?;
    let s = &synced["lastSync"];
    assert_eq!(
        (
            s["removed"].clone(),
            s["updated"].clone(),
            s["inserted"].clone()
        ),
        (json!(1), json!(1), json!(0)),
        "{synced}"
    );
    assert_eq!(s["storeWrites"], 2);
    let after = all_pages(
        &alice,
        "/api/inventory/volumes?provider=vultr",
        "volumes",
        100,
    )
    .await?;
    assert_eq!(after.len(), 6);
    assert!(by_resource(&after, "blk-00000").is_null(), "removed");
    assert_eq!(by_resource(&after, "blk-00001")["sizeGb"], 500);
    assert_eq!(
        by_resource(&after, "blk-00001")["id"],
        by_resource(&volumes, "blk-00001")["id"],
        "an updated record keeps its id"
    );

    // A failing page, then garbage: 502 with the provider's words, the last good data kept.
    for (fault, words) in [
        ("failing", "unable to give you a response"),
        ("garbage", "not JSON"),
    ] {
        digitalocean.with(|a| {
            if fault == "failing" {
                a.failing_page = Some(1);
            } else {
                a.failing_page = None;
                a.garbage_page = Some(2);
            }
        });
        let (status, e) = alice
            .send("POST", &format!("/api/docks/{did}/sync"), None)
            .await?;
        assert_eq!(status, 502, "{fault}: {e}");
        assert_eq!(e["error"]["code"], "provider_failed");
        assert!(
            e["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(words)),
            "{e}"
        );
        let (_, dock) = alice
            .send("GET", &format!("/api/docks/{did}"), None)
            .await?;
        assert!(
            dock["lastSyncError"]
                .as_str()
                .is_some_and(|m| m.contains(words)),
            "{dock}"
        );
        assert_ne!(dock["lastSyncedAt"], dock["lastGoodSyncAt"], "{dock}");
        let kept = all_pages(
            &alice,
            &format!("/api/inventory/volumes?dockId={did}"),
            "volumes",
            100,
        )
        .await?;
        assert_eq!(kept.len(), 5, "{fault}: the last good inventory is kept");
    }

    // Another user: every dock and its inventory is a 404 or absent.
    let (_, docks) = bob.send("GET", "/api/docks", None).await?;
    assert_eq!(docks["docks"].as_array().map(Vec::len), Some(0), "{docks}");
    for (method, path) in [
        ("GET", format!("/api/docks/{vid}")),
        ("POST", format!("/api/docks/{vid}/sync")),
        ("DELETE", format!("/api/docks/{vid}")),
        ("GET", format!("/api/inventory/volumes?dockId={vid}")),
    ] {
        let (status, _) = bob.send(method, &path, None).await?;
        assert_eq!(status, 404, "{method} {path}");
    }
    let (_, v) = bob.send("GET", "/api/inventory/volumes", None).await?;
    assert_eq!(v["volumes"].as_array().map(Vec::len), Some(0), "{v}");
    let (_, b) = bob.send("GET", "/api/inventory/buckets", None).await?;
    assert_eq!(b["buckets"].as_array().map(Vec::len), Some(0), "{b}");
    let (_, s) = bob.send("GET", "/api/inventory/summary", None).await?;
    assert_eq!(
        (s["volumes"].clone(), s["buckets"].clone()),
        (json!(0), json!(0)),
        "{s}"
    );

    // The stand-ins only ever saw the right token (the wrong one once, at create).
    assert_eq!(vultr.with(|a| a.unauthorised), 1);
    assert_eq!(digitalocean.with(|a| a.unauthorised), 0);

    // Deleting a dock takes its inventory along.
    let (status, _) = alice
        .send("DELETE", &format!("/api/docks/{lid}"), None)
        .await?;
    assert_eq!(status, 204);
    let buckets = all_pages(&alice, "/api/inventory/buckets", "buckets", 100).await?;
    assert_eq!(
        buckets.len(),
        1,
        "only the daemon's own bucket is left: {buckets:?}"
    );

    // The token is in no answer and no log line.
    let (_, docks) = alice.send("GET", "/api/docks", None).await?;
    answers.push(docks.to_string());
    answers.push(
        alice
            .send("GET", "/api/inventory/summary", None)
            .await?
            .1
            .to_string(),
    );
    for text in answers.iter().chain([&d.log()]) {
        assert!(!text.contains(TOKEN), "the token leaked: {text}");
    }
    assert!(d.log().contains("dock synced"), "syncs are logged");
    Ok(())
}
