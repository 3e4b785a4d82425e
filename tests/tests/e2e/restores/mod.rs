//! Restores and buckets made from snapshots: the data becomes exactly the snapshot's (later
//! writes gone, later deletes back, a multipart object whole), keys revoked since stay revoked,
//! a bucket made `fromSnapshot` holds the same objects under new credentials and none of the
//! source's keys, a changed archive is refused with the bucket untouched, a daemon killed in
//! the middle of a snapshot or a restore sets things right, and policies take and prune
//! snapshots on their own.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
mod crashes;
mod legacy;
mod policy;

use kalpana_e2e::{docker_exists, noise, object_path, s3_client, Api, Daemon, DaemonOptions};
use serde_json::{json, Value};

/// Polls `path` until `done(answer)` holds, for at most two minutes.
pub(super) async fn until(
    api: &Api,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        let (status, v) = api.send("GET", path, None).await?;
        if status == 200 && done(&v) {
            return Ok(v);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "{path} never got there: {status} {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(super) fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

pub(super) async fn snapshot(api: &Api, bucket: &str, target: &str) -> anyhow::Result<String> {
    let (status, s) = api
        .send(
            "POST",
            &format!("/api/buckets/{bucket}/snapshots"),
            Some(json!({ "targetBucketId": target })),
        )
        .await?;
    anyhow::ensure!(status == 202, "{status} {s}");
    let sid = id(&s);
    let done = until(
        api,
        &format!("/api/buckets/{bucket}/snapshots/{sid}"),
        |s| s["status"] == "DONE" || s["status"] == "FAILED",
    )
    .await?;
    anyhow::ensure!(done["status"] == "DONE", "{done}");
    Ok(sid)
}

async fn restore(api: &Api, bucket: &str, sid: &str) -> anyhow::Result<Value> {
    let path = format!("/api/buckets/{bucket}/snapshots/{sid}");
    let (status, s) = api.send("POST", &format!("{path}/restore"), None).await?;
    anyhow::ensure!(status == 202, "{status} {s}");
    until(api, &path, |s| {
        matches!(s["restore"]["status"].as_str(), Some("DONE" | "FAILED"))
    })
    .await
}

/// Every object of a bucket with its bytes, through the API.
pub(super) async fn contents(api: &Api, bucket: &str) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let (status, list) = api
        .send(
            "GET",
            &format!("/api/buckets/{bucket}/objects?limit=1000"),
            None,
        )
        .await?;
    anyhow::ensure!(status == 200, "{status} {list}");
    let mut out = BTreeMap::new();
    for o in list["objects"].as_array().cloned().unwrap_or_default() {
        let key = o["key"].as_str().expect("key").to_string();
        let (http, base, token) = api.raw();
        let resp = http
            .get(format!("{base}{}", object_path(bucket, &key)))
            .bearer_auth(token.unwrap_or_default())
            .send()
            .await?;
        anyhow::ensure!(resp.status() == 200, "GET {key}: {}", resp.status());
        out.insert(key, resp.bytes().await?.to_vec());
    }
    Ok(out)
}

/// Uploads `parts` as one multipart object with the bucket's own credentials.
async fn put_multipart(b: &Value, key: &str, parts: &[Vec<u8>]) -> anyhow::Result<()> {
    let s3 = s3_client(
        b["endpoint"].as_str().expect("endpoint"),
        b["accessKey"].as_str().expect("access"),
        b["secretKey"].as_str().expect("secret"),
    );
    let name = b["name"].as_str().expect("name");
    let up = s3
        .create_multipart_upload()
        .bucket(name)
        .key(key)
        .send()
        .await?;
    let upload_id = up.upload_id().expect("upload id");
    let mut done = Vec::new();
    for (n, part) in parts.iter().enumerate() {
        let n = n as i32 + 1;
        let p = s3
            .upload_part()
            .bucket(name)
            .key(key)
            .upload_id(upload_id)
            .part_number(n)
            .body(ByteStream::from(part.clone()))
            .send()
            .await?;
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .set_e_tag(p.e_tag().map(String::from))
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket(name)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

/// Whether `key` of bucket `bucket` can be read with these credentials.
async fn can_read(endpoint: &str, access: &str, secret: &str, bucket: &str, key: &str) -> bool {
    s3_client(endpoint, access, secret)
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .is_ok()
}

#[tokio::test]
async fn a_restore_makes_the_data_exactly_the_snapshots_and_from_snapshot_copies_it(
) -> anyhow::Result<()> {
    let d = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_STATS_SYNC_SECS".into(), "1".into())],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let (bob, _) = d.new_user("bob").await?;
    let (_, src) = alice.create_bucket(json!({ "name": "precious" })).await?;
    let (_, vault) = alice.create_bucket(json!({ "name": "vault" })).await?;
    let (bid, vault_id) = (id(&src), id(&vault));
    let endpoint = src["endpoint"].as_str().expect("endpoint").to_string();
    for (key, body) in [
        ("small.txt", b"as it was".to_vec()),
        ("docs/mid.bin", noise(300_000, 1)),
        ("big.bin", noise(12 << 20, 2)),
    ] {
        let (status, _) = alice.put_object(&bid, key, body, None).await?;
        assert_eq!(status, 201, "{key}");
    }
    put_multipart(&src, "parts.bin", &[noise(5 << 20, 3), noise(1 << 20, 4)]).await?;
    let key = |name: &str, access: &str| {
        let alice = alice.clone();
        let path = format!("/api/buckets/{bid}/keys");
        let body = json!({ "name": name, "access": access });
        async move { alice.send("POST", &path, Some(body)).await }
    };
    let (_, kept) = key("kept", "read").await?;
    let (_, dropped) = key("dropped", "read").await?;
    let at_snapshot = contents(&alice, &bid).await?;
    assert_eq!(at_snapshot.len(), 4);
    let sid = snapshot(&alice, &bid, &vault_id).await?;

    // After the snapshot: a write, an overwrite, a delete; a key revoked, one made.
    alice
        .put_object(&bid, "later.txt", b"written later".to_vec(), None)
        .await?;
    alice
        .put_object(&bid, "small.txt", b"overwritten".to_vec(), None)
        .await?;
    let (status, _) = alice
        .send("DELETE", &object_path(&bid, "docs/mid.bin"), None)
        .await?;
    assert_eq!(status, 204);
    let (status, _) = alice
        .send(
            "DELETE",
            &format!("/api/buckets/{bid}/keys/{}", id(&dropped)),
            None,
        )
        .await?;
    assert_eq!(status, 204);
    let (_, newer) = key("newer", "read").await?;
    let (status, rotated) = alice
        .send(
            "POST",
            &format!("/api/buckets/{bid}/keys/{}/rotate", id(&kept)),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{rotated}");

    // Refused: someone else (404).
    let restore_path = format!("/api/buckets/{bid}/snapshots/{sid}/restore");
    let (status, _) = bob.send("POST", &restore_path, None).await?;
    assert_eq!(status, 404);

    let started = Instant::now();
    let done = restore(&alice, &bid, &sid).await?;
    assert_eq!(done["restore"]["status"], "DONE", "{done}");
    assert_eq!(
        done["restore"]["bytesDone"].as_u64(),
        done["sizeBytes"].as_u64(),
        "{done}"
    );
    println!(
        "restore of {} archive bytes: {} ms, bucket out of service {} ms",
        done["sizeBytes"],
        started.elapsed().as_millis(),
        done["restore"]["downtimeMillis"]
    );
    assert_eq!(
        contents(&alice, &bid).await?,
        at_snapshot,
        "every object as at the snapshot, the later one gone"
    );
    let (_, b) = alice
        .send("GET", &format!("/api/buckets/{bid}"), None)
        .await?;
    assert_eq!(b["status"], "RUNNING", "{b}");
    until(&alice, &format!("/api/buckets/{bid}/stats"), |s| {
        s["objectCount"] == 4
    })
    .await?;
    assert!(!docker_exists(
        "volume",
        &format!("kalpana-bucket-{bid}-staging")
    ));
    // The engine's keys are the record's: the one made after the snapshot and the one rotated
    // since work with their current secrets, the rotated one's old secret and the one revoked
    // since stay refused.
    let secret = |k: &Value| k["secretKey"].as_str().expect("secret").to_string();
    let access = |k: &Value| k["accessKey"].as_str().expect("access").to_string();
    for (what, k) in [("made since", &newer), ("rotated since", &rotated)] {
        assert!(
            can_read(&endpoint, &access(k), &secret(k), "precious", "small.txt").await,
            "the key {what} does not read after the restore"
        );
    }
    assert!(
        !can_read(
            &endpoint,
            &access(&kept),
            &secret(&kept),
            "precious",
            "small.txt"
        )
        .await,
        "the rotated key's old secret came back with the snapshot"
    );
    assert!(
        !can_read(
            &endpoint,
            &access(&dropped),
            &secret(&dropped),
            "precious",
            "small.txt"
        )
        .await,
        "a key revoked after the snapshot came back with it"
    );

    // A new bucket from the snapshot: same objects, new credentials, none of the source's keys.
    let from = json!({ "bucketId": bid, "snapshotId": sid });
    let (status, _) = bob
        .create_bucket(json!({ "name": "stolen", "fromSnapshot": from }))
        .await?;
    assert_eq!(status, 404, "someone else's snapshot");
    let (status, copy) = alice
        .create_bucket(json!({ "name": "copy", "fromSnapshot": from }))
        .await?;
    assert_eq!(status, 201, "{copy}");
    assert_eq!(copy["status"], "RUNNING", "{copy}");
    let copy_id = id(&copy);
    assert_eq!(contents(&alice, &copy_id).await?, at_snapshot);
    let copy_endpoint = copy["endpoint"].as_str().expect("endpoint");
    assert_ne!(copy["accessKey"], src["accessKey"]);
    assert!(
        can_read(
            copy_endpoint,
            copy["accessKey"].as_str().expect("access"),
            copy["secretKey"].as_str().expect("secret"),
            "copy",
            "small.txt"
        )
        .await
    );
    for (who, a, s) in [
        (
            "the source's root key",
            src["accessKey"].as_str().expect("a").to_string(),
            src["secretKey"].as_str().expect("s").to_string(),
        ),
        ("the source's scoped key", access(&kept), secret(&kept)),
    ] {
        for bucket in ["copy", "precious"] {
            assert!(
                !can_read(copy_endpoint, &a, &s, bucket, "small.txt").await,
                "{who} reads {bucket} in the copy"
            );
        }
    }

    // A changed archive (same size) is refused and the bucket keeps its data.
    alice
        .put_object(&bid, "after.txt", b"still here".to_vec(), None)
        .await?;
    let archive_key = done["target"]["key"].as_str().expect("key").to_string();
    let (http, base, token) = alice.raw();
    let mut archive = http
        .get(format!("{base}{}", object_path(&vault_id, &archive_key)))
        .bearer_auth(token.unwrap_or_default())
        .send()
        .await?
        .bytes()
        .await?
        .to_vec();
    let middle = archive.len() / 2;
    archive[middle] ^= 0xff;
    let (status, _) = alice
        .put_object(&vault_id, &archive_key, archive, None)
        .await?;
    assert_eq!(status, 201);
    let failed = restore(&alice, &bid, &sid).await?;
    assert_eq!(failed["restore"]["status"], "FAILED", "{failed}");
    let message = failed["restore"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("SHA-256") && message.contains("not touched"),
        "{message}"
    );
    let now = contents(&alice, &bid).await?;
    assert_eq!(
        now.get("after.txt").map(Vec::as_slice),
        Some(&b"still here"[..])
    );
    assert_eq!(now.len(), 5);
    assert!(!docker_exists(
        "volume",
        &format!("kalpana-bucket-{bid}-staging")
    ));

    // A missing archive is a 422 at once.
    alice
        .send("DELETE", &object_path(&vault_id, &archive_key), None)
        .await?;
    let (status, e) = alice.send("POST", &restore_path, None).await?;
    assert_eq!(status, 422, "{e}");
    Ok(())
}
