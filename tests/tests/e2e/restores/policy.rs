//! Snapshot policies: refused when they make no sense or target someone else's bucket, then
//! snapshots taken on schedule, pruned to `keep` with their archives, stopped by `null`.

use std::time::{Duration, Instant};

use kalpana_e2e::{Daemon, DaemonOptions};
use serde_json::json;

use super::id;

#[tokio::test]
async fn a_snapshot_policy_takes_snapshots_on_schedule_and_prunes_to_keep() -> anyhow::Result<()> {
    let d = Daemon::start_with(DaemonOptions {
        env: vec![
            ("KALPANA_SNAPSHOT_TICK_SECS".into(), "1".into()),
            ("KALPANA_SNAPSHOT_MIN_EVERY_SECS".into(), "1".into()),
        ],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let (bob, _) = d.new_user("bob").await?;
    let (_, vault) = alice.create_bucket(json!({ "name": "vault" })).await?;
    let (_, bobs) = bob.create_bucket(json!({ "name": "bobs" })).await?;
    let vault_id = id(&vault);
    for (policy, want) in [
        (
            json!({ "everyHours": 1, "keep": 0, "targetBucketId": vault_id }),
            400,
        ),
        (
            json!({ "everyHours": 0, "keep": 2, "targetBucketId": vault_id }),
            400,
        ),
        (json!({ "everyHours": 1, "keep": 2 }), 400),
        (
            json!({ "everyHours": 1, "keep": 2, "targetBucketId": id(&bobs) }),
            404,
        ),
    ] {
        let (status, e) = alice
            .send(
                "POST",
                "/api/buckets",
                Some(json!({ "name": "refused", "snapshotPolicy": policy })),
            )
            .await?;
        assert_eq!(status, want, "{policy}: {e}");
    }
    let (_, list) = alice.send("GET", "/api/buckets", None).await?;
    assert_eq!(
        list["buckets"].as_array().map(Vec::len),
        Some(1),
        "nothing left of refusals"
    );

    // Every 2.9 s, keep 2.
    let policy = json!({ "everyHours": 0.0008, "keep": 2, "targetBucketId": vault_id });
    let (status, b) = alice
        .create_bucket(json!({ "name": "scheduled", "snapshotPolicy": policy }))
        .await?;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["snapshotPolicy"]["keep"], 2);
    let bid = id(&b);
    alice.put_object(&bid, "x.txt", b"x".to_vec(), None).await?;
    let path = format!("/api/buckets/{bid}/snapshots");
    let mut seen = std::collections::BTreeSet::new();
    let started = Instant::now();
    while seen.len() < 5 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(90),
            "only {} scheduled snapshots in 90 s",
            seen.len()
        );
        let (_, list) = alice.send("GET", &path, None).await?;
        let snaps = list["snapshots"].as_array().cloned().unwrap_or_default();
        for s in &snaps {
            assert_eq!(s["scheduled"], true, "{s}");
            seen.insert(id(s));
        }
        let done = snaps.iter().filter(|s| s["status"] == "DONE").count();
        assert!(
            done <= 3,
            "pruned to keep (2, and one just finished): {list}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Stopped: no more after the policy is cleared; the kept ones and their archives remain.
    let (status, b) = alice
        .send(
            "PATCH",
            &format!("/api/buckets/{bid}"),
            Some(json!({ "snapshotPolicy": null })),
        )
        .await?;
    assert_eq!(status, 200, "{b}");
    assert!(b["snapshotPolicy"].is_null(), "{b}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, list) = alice.send("GET", &path, None).await?;
    let snaps = list["snapshots"].as_array().cloned().unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, again) = alice.send("GET", &path, None).await?;
    assert_eq!(
        list, again,
        "a snapshot was taken after the policy was cleared"
    );
    let done = snaps.iter().filter(|s| s["status"] == "DONE").count();
    assert!((1..=3).contains(&done), "{list}");
    let (_, objects) = alice
        .send(
            "GET",
            &format!("/api/buckets/{vault_id}/objects?prefix=snapshots/&limit=1000"),
            None,
        )
        .await?;
    assert_eq!(
        objects["objects"].as_array().map(Vec::len),
        Some(done),
        "pruned snapshots' archives are deleted: {objects}"
    );
    println!("{} scheduled snapshots taken, {done} kept", seen.len());
    Ok(())
}
