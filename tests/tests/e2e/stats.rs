//! Stats are true: presigned uploads are counted within seconds of landing, a recount can be
//! asked for, and settings changed directly over S3 are put back.

use std::time::{Duration, Instant};

use kalpana_e2e::{s3_client, Daemon, DaemonOptions};
use serde_json::json;

#[tokio::test]
async fn presigned_uploads_show_in_stats_within_seconds_and_a_recount_sees_direct_writes(
) -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "counted" })).await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let (status, up) = alice
        .send(
            "POST",
            &format!("/api/buckets/{id}/presigned-upload"),
            Some(json!({ "key": "via-url.bin" })),
        )
        .await?;
    assert_eq!(status, 200, "{up}");
    let resp = reqwest::Client::new()
        .put(up["url"].as_str().expect("url"))
        .body(vec![7u8; 12_345])
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let landed = Instant::now();
    loop {
        let (_, s) = alice
            .send("GET", &format!("/api/buckets/{id}/stats"), None)
            .await?;
        if s["objectCount"] == 1 && s["totalSizeBytes"] == 12_345 {
            break;
        }
        anyhow::ensure!(
            landed.elapsed() < Duration::from_secs(10),
            "a presigned upload not counted 10 s after it landed: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "presigned upload counted {:?} after it landed",
        landed.elapsed()
    );

    // Written with the bucket's keys, outside the daemon: counted by a recount on demand.
    let s3 = s3_client(
        b["endpoint"].as_str().expect("endpoint"),
        b["accessKey"].as_str().expect("access"),
        b["secretKey"].as_str().expect("secret"),
    );
    s3.put_object()
        .bucket("counted")
        .key("direct.bin")
        .body(vec![1u8; 1_000].into())
        .send()
        .await?;
    let (status, s) = alice
        .send("POST", &format!("/api/buckets/{id}/stats/sync"), None)
        .await?;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["objectCount"], 2, "{s}");
    assert_eq!(s["totalSizeBytes"], 13_345, "{s}");
    assert!(s["lastSyncedAt"].is_string());
    let (mallory, _) = d.new_user("mallory").await?;
    let (status, _) = mallory
        .send("POST", &format!("/api/buckets/{id}/stats/sync"), None)
        .await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test]
async fn settings_changed_directly_over_s3_are_put_back() -> anyhow::Result<()> {
    let d = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_STATS_SYNC_SECS".into(), "1".into())],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "settled" })).await?;
    assert_eq!(status, 201, "{b}");
    let s3 = s3_client(
        b["endpoint"].as_str().expect("endpoint"),
        b["accessKey"].as_str().expect("access"),
        b["secretKey"].as_str().expect("secret"),
    );
    s3.put_bucket_versioning()
        .bucket("settled")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await?;
    s3.put_bucket_policy()
        .bucket("settled")
        .policy(kalpana_s3_ops::settings::public_read_policy("settled"))
        .send()
        .await?;
    let started = Instant::now();
    loop {
        let versioning = s3.get_bucket_versioning().bucket("settled").send().await?;
        let policy = s3.get_bucket_policy().bucket("settled").send().await;
        let enabled =
            versioning.status() == Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled);
        if !enabled && policy.is_err() {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(15),
            "settings not put back (versioning on: {enabled}, policy: {})",
            policy.is_ok()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        d.log()
            .contains("settings changed directly over S3 were put back"),
        "no log line for the correction"
    );
    Ok(())
}

#[tokio::test]
async fn direct_writes_show_in_stats_within_ten_seconds_and_api_writes_at_once(
) -> anyhow::Result<()> {
    // Default settings: no recount interval set by the test.
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "tallied" })).await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let (http, base, token) = alice.raw();
    let put = |key: &str, size: usize| {
        http.put(format!("{base}/api/buckets/{id}/objects/{key}"))
            .bearer_auth(token.unwrap_or_default())
            .body(vec![1u8; size])
            .send()
    };
    // Through the API: a new key, the same key replaced by a larger object, a second key.
    for (key, size) in [("a.bin", 1_000), ("a.bin", 3_000), ("b.bin", 500)] {
        let resp = put(key, size).await?;
        assert_eq!(resp.status(), 201, "{}", resp.text().await?);
        let (_, s) = alice
            .send("GET", &format!("/api/buckets/{id}/stats"), None)
            .await?;
        println!("after {key} ({size} B): {s}");
    }
    let (_, s) = alice
        .send("GET", &format!("/api/buckets/{id}/stats"), None)
        .await?;
    assert_eq!(
        s["objectCount"], 2,
        "read at once after the API writes: {s}"
    );
    assert_eq!(s["totalSizeBytes"], 3_500, "{s}");
    let (_, v) = alice
        .send("GET", &format!("/api/buckets/{id}"), None)
        .await?;
    assert_eq!(v["objectCount"], 2, "the bucket view agrees: {v}");

    let s3 = s3_client(
        b["endpoint"].as_str().expect("endpoint"),
        b["accessKey"].as_str().expect("access"),
        b["secretKey"].as_str().expect("secret"),
    );
    s3.put_object()
        .bucket("tallied")
        .key("direct.bin")
        .body(vec![2u8; 7_000].into())
        .send()
        .await?;
    let landed = Instant::now();
    loop {
        let (_, s) = alice
            .send("GET", &format!("/api/buckets/{id}/stats"), None)
            .await?;
        if s["objectCount"] == 3 && s["totalSizeBytes"] == 10_500 {
            break;
        }
        anyhow::ensure!(
            landed.elapsed() < Duration::from_secs(10),
            "a direct S3 write not counted 10 s after it landed: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "direct S3 write counted {:?} after it landed",
        landed.elapsed()
    );
    Ok(())
}
