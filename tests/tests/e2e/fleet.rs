//! Fleet monitoring: with a sample period of one second, `/api/fleet` lists every running bucket
//! with memory in use and network counters that grow when traffic goes through the bucket; the
//! host is described; only admins see it, owners see their bucket's series in its stats.

use std::time::{Duration, Instant};

use kalpana_e2e::{Api, Daemon, DaemonOptions};
use serde_json::{json, Value};

/// The fleet view, once `ok` holds for it (polled for up to 30 s).
async fn fleet_until(
    admin: &Api,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        let (status, fleet) = admin.send("GET", "/api/fleet", None).await?;
        anyhow::ensure!(status == 200, "{status} {fleet}");
        if ok(&fleet) {
            return Ok(fleet);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "{what} never happened: {fleet}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn latest<'a>(fleet: &'a Value, id: &str) -> &'a Value {
    fleet["buckets"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["bucketId"] == id))
        .map(|b| &b["latest"])
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn the_fleet_is_sampled_for_admins_and_each_owner_sees_their_bucket_series(
) -> anyhow::Result<()> {
    let d = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_FLEET_SAMPLE_SECS".into(), "1".into())],
        ..Default::default()
    })
    .await?;
    let admin = d.admin();
    let (alice, _) = d.new_user("alice").await?;
    let (bob, _) = d.new_user("bob").await?;
    let (status, a) = alice.create_bucket(json!({ "name": "watched" })).await?;
    assert_eq!(status, 201, "{a}");
    let (status, b) = bob.create_bucket(json!({ "name": "also" })).await?;
    assert_eq!(status, 201, "{b}");
    let (aid, bid) = (
        a["id"].as_str().expect("id").to_string(),
        b["id"].as_str().expect("id").to_string(),
    );

    // A few periods: both buckets with memory in use, and the host described.
    let fleet = fleet_until(&admin, "two sampled buckets", |f| {
        [&aid, &bid].iter().all(|id| {
            latest(f, id)["memoryBytes"].as_u64().unwrap_or(0) > 0
                && latest(f, id)["cpuPercent"].is_number()
        })
    })
    .await?;
    let host = &fleet["nodes"][0];
    assert!(host["cpus"].as_u64().unwrap_or(0) > 0, "{host}");
    assert!(host["memoryBytes"].as_u64().unwrap_or(0) > 0, "{host}");
    assert!(
        host["containersRunning"].as_u64().unwrap_or(0) >= 2,
        "{host}"
    );
    assert!(
        fleet["totals"]["buckets"].as_u64().unwrap_or(0) >= 2,
        "{fleet}"
    );
    assert!(
        latest(&fleet, &aid)["memoryLimitBytes"]
            .as_u64()
            .unwrap_or(0)
            >= 256 << 20,
        "the container's limit: {fleet}"
    );

    // Traffic through the bucket shows in its network counters.
    let before = latest(&fleet, &aid)["rxBytes"].as_u64().unwrap_or(0);
    let body = kalpana_e2e::pattern(3_000_000, 7);
    let (status, _) = alice.put_object(&aid, "big.bin", body, None).await?;
    assert_eq!(status, 201);
    let fleet = fleet_until(&admin, "the upload in rxBytes", |f| {
        latest(f, &aid)["rxBytes"].as_u64().unwrap_or(0) >= before + 3_000_000
    })
    .await?;
    println!(
        "rx {} → {} bytes; rate {} B/s",
        before,
        latest(&fleet, &aid)["rxBytes"],
        latest(&fleet, &aid)["rxBytesPerSec"]
    );

    // Admins only.
    for path in ["/api/fleet", "/api/fleet/metrics"] {
        let (status, e) = alice.send("GET", path, None).await?;
        assert_eq!(status, 403, "{path}: {e}");
    }
    let (status, series) = admin
        .send(
            "GET",
            &format!("/api/fleet/metrics?bucketId={aid}&since=1h&step=2s"),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{series}");
    let points = series["series"][0]["points"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(points.len() >= 2, "{series}");
    let times: Vec<i64> = points.iter().filter_map(|p| p["atMs"].as_i64()).collect();
    assert!(
        times.windows(2).all(|w| w[1] - w[0] >= 1000),
        "one point per step: {times:?}"
    );
    let (status, e) = admin
        .send("GET", "/api/fleet/metrics?since=soon", None)
        .await?;
    assert_eq!(status, 400, "{e}");

    // The owner sees their bucket's series; someone else gets 404.
    let (status, stats) = alice
        .send("GET", &format!("/api/buckets/{aid}/stats?history=1h"), None)
        .await?;
    assert_eq!(status, 200, "{stats}");
    assert!(
        stats["history"].as_array().map_or(0, Vec::len) >= 2,
        "{stats}"
    );
    let (status, _) = bob
        .send("GET", &format!("/api/buckets/{aid}/stats?history=1h"), None)
        .await?;
    assert_eq!(status, 404);
    let (status, _) = alice
        .send(
            "GET",
            &format!("/api/buckets/{aid}/stats?history=forever"),
            None,
        )
        .await?;
    assert_eq!(status, 400);
    Ok(())
}
