//! Quotas hold under concurrency, for presigned uploads, and for bytes the engine holds that
//! listings do not show (multipart parts in progress); a bucket filled over its quota directly
//! over S3 says so and takes no more API uploads.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kalpana_e2e::{object_path, pattern, s3_client, Api, Daemon, DaemonOptions};
use serde_json::{json, Value};

/// Polls the bucket until `done` holds for its JSON.
async fn wait_bucket(api: &Api, id: &str, done: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        let (_, b) = api.send("GET", &format!("/api/buckets/{id}"), None).await?;
        if done(&b) {
            return Ok(b);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "bucket never reached the expected state: {b}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn twenty_parallel_uploads_never_store_more_than_the_quota() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    // 0.00001 GB = 10,000 bytes.
    let (status, b) = alice
        .create_bucket(json!({ "name": "tight", "maxSizeGB": 0.00001 }))
        .await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let statuses: Vec<u16> = futures::stream::iter(0..20u8)
        .map(|i| {
            let alice = alice.clone();
            let id = id.clone();
            async move {
                alice
                    .put_object(&id, &format!("part-{i}"), pattern(9_000, i), None)
                    .await
                    .map(|(s, _)| s)
            }
        })
        .buffer_unordered(20)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let stored = statuses.iter().filter(|s| **s == 201).count();
    assert_eq!(stored, 1, "statuses: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 413),
        "{statuses:?}"
    );
    let s3 = s3_client(
        b["endpoint"].as_str().expect("endpoint"),
        b["accessKey"].as_str().expect("access"),
        b["secretKey"].as_str().expect("secret"),
    );
    let listed = s3.list_objects_v2().bucket("tight").send().await?;
    let total: i64 = listed.contents().iter().filter_map(|o| o.size()).sum();
    assert!(
        total <= 10_000,
        "{total} bytes stored under a 10,000-byte quota"
    );
    assert_eq!(total, 9_000);
    Ok(())
}

#[tokio::test]
async fn presigned_uploads_are_bounded_and_engine_bytes_are_all_counted() -> anyhow::Result<()> {
    let d = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_STATS_SYNC_SECS".into(), "1".into())],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    // 0.02 GB = 20,000,000 bytes.
    let (status, b) = alice
        .create_bucket(json!({ "name": "presign-capped", "maxSizeGB": 0.02 }))
        .await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let presign = format!("/api/buckets/{id}/presigned-upload");

    // A quota bucket's URL must say how much it will store, and no more than is left.
    let (status, body) = alice
        .send("POST", &presign, Some(json!({ "key": "big" })))
        .await?;
    assert_eq!(status, 400, "{body}");
    let (status, body) = alice
        .send(
            "POST",
            &presign,
            Some(json!({ "key": "big", "contentLength": 25_000_000 })),
        )
        .await?;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    let (status, up) = alice
        .send(
            "POST",
            &presign,
            Some(json!({ "key": "small", "contentLength": 5_000 })),
        )
        .await?;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["headers"]["content-length"], "5000", "{up}");
    let url = up["url"].as_str().expect("url").to_string();
    let http = reqwest::Client::new();
    // More bytes than signed: the engine refuses them.
    let resp = http.put(&url).body(pattern(6_000, 1)).send().await?;
    assert_eq!(resp.status(), 403, "6,000 bytes through a 5,000-byte URL");
    let resp = http.put(&url).body(pattern(5_000, 1)).send().await?;
    assert_eq!(resp.status(), 200);
    // Promised bytes count until the URL expires: 19,995,000 are left, not more.
    let (status, body) = alice
        .send(
            "POST",
            &presign,
            Some(json!({ "key": "rest", "contentLength": 19_995_001 })),
        )
        .await?;
    assert_eq!(status, 413, "{body}");
    // Keys the engine keeps for itself are refused.
    let (status, body) = alice
        .put_object(&id, ".uploads/hidden", b"x".to_vec(), None)
        .await?;
    assert_eq!(status, 400, "{body}");

    // The parts of an unfinished multipart upload take space: the recount sees them.
    let s3 = s3_client(
        b["endpoint"].as_str().expect("endpoint"),
        b["accessKey"].as_str().expect("access"),
        b["secretKey"].as_str().expect("secret"),
    );
    let mp = s3
        .create_multipart_upload()
        .bucket("presign-capped")
        .key("unfinished")
        .send()
        .await?;
    s3.upload_part()
        .bucket("presign-capped")
        .key("unfinished")
        .upload_id(mp.upload_id().expect("upload id"))
        .part_number(1)
        .body(pattern(6_000_000, 2).into())
        .send()
        .await?;
    let counted = wait_bucket(&alice, &id, |b| b["totalSizeBytes"] == 6_005_000).await?;
    assert_eq!(counted["objectCount"], 1, "{counted}");
    assert_eq!(counted["overQuota"], false);

    // Filled over the quota directly over S3: the bucket shows it, the API refuses uploads,
    // an event says so; deleting brings it back under.
    s3.put_object()
        .bucket("presign-capped")
        .key("direct")
        .body(pattern(15_000_000, 3).into())
        .send()
        .await?;
    let over = wait_bucket(&alice, &id, |b| b["overQuota"] == true).await?;
    assert!(over["totalSizeBytes"].as_u64() > Some(20_000_000), "{over}");
    let (status, body) = alice
        .put_object(&id, "one-more", b"x".to_vec(), None)
        .await?;
    assert_eq!(status, 413, "{body}");
    let (status, _) = alice
        .request(reqwest::Method::DELETE, &object_path(&id, "direct"))
        .send()
        .await
        .map(|r| (r.status(), ()))?;
    assert_eq!(status, 204);
    wait_bucket(&alice, &id, |b| b["overQuota"] == false).await?;
    assert!(
        d.log().contains("over its quota"),
        "the over-quota change is logged"
    );
    Ok(())
}
