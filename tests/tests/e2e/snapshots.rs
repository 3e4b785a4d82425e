//! Snapshots: a bucket holding objects of several sizes (one incompressible and over the
//! multipart threshold) is archived into another bucket; the archive's bytes match the recorded
//! size and SHA-256, decompress to a tar of the engine's data, and the container runs again
//! afterwards; other users see nothing; deleting a snapshot removes its archive.

use std::io::Read;
use std::time::{Duration, Instant};

use kalpana_e2e::{noise, object_path, Api, Daemon};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

async fn until_finished(api: &Api, path: &str) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        let (status, s) = api.send("GET", path, None).await?;
        anyhow::ensure!(status == 200, "{status} {s}");
        if s["status"] == "DONE" || s["status"] == "FAILED" {
            return Ok(s);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the snapshot never finished: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_snapshot_streams_the_paused_volume_to_another_bucket_with_its_sha256(
) -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (bob, _) = d.new_user("bob").await?;
    let (_, src) = alice.create_bucket(json!({ "name": "source" })).await?;
    let (_, vault) = alice.create_bucket(json!({ "name": "vault" })).await?;
    let (_, bobs) = bob.create_bucket(json!({ "name": "bobs" })).await?;
    let (sid_bucket, vault_id, bob_id) = (
        src["id"].as_str().expect("id").to_string(),
        vault["id"].as_str().expect("id").to_string(),
        bobs["id"].as_str().expect("id").to_string(),
    );
    for (key, body) in [
        ("small.txt", b"hello, snapshot".to_vec()),
        ("docs/mid.bin", noise(300_000, 1)),
        ("big.bin", noise(12 << 20, 2)),
    ] {
        let (status, _) = alice.put_object(&sid_bucket, key, body, None).await?;
        assert_eq!(status, 201, "{key}");
    }
    let path = format!("/api/buckets/{sid_bucket}/snapshots");

    // Refused: no target, the bucket itself, someone else's bucket, someone else asking.
    for (who, body, want) in [
        (&alice, json!({}), 400),
        (&alice, json!({ "targetBucketId": sid_bucket }), 400),
        (&alice, json!({ "targetBucketId": bob_id }), 404),
        (&bob, json!({ "targetBucketId": bob_id }), 404),
    ] {
        let (status, e) = who.send("POST", &path, Some(body.clone())).await?;
        assert_eq!(status, want, "{body}: {e}");
    }

    let (status, s) = alice
        .send(
            "POST",
            &path,
            Some(json!({ "targetBucketId": vault_id, "note": "before the migration" })),
        )
        .await?;
    assert_eq!(status, 202, "{s}");
    assert_eq!(s["status"], "PENDING");
    let snap = s["id"].as_str().expect("id").to_string();
    let key = format!("snapshots/{sid_bucket}/{snap}.tar.zst");
    assert_eq!(s["target"]["key"], key.as_str());
    let done = until_finished(&alice, &format!("{path}/{snap}")).await?;
    assert_eq!(done["status"], "DONE", "{done}");
    let size = done["sizeBytes"].as_u64().expect("size");
    assert!(size > 12 << 20, "incompressible data stays big: {done}");
    assert_eq!(done["bytesDone"].as_u64(), Some(size));
    println!(
        "snapshot of ~12.3 MB: {size} bytes, container paused {} ms",
        done["pausedMillis"]
    );

    // The archive counts in the target's usage at once.
    let (_, stats) = alice
        .send("GET", &format!("/api/buckets/{vault_id}/stats"), None)
        .await?;
    assert_eq!(stats["objectCount"], 1, "{stats}");
    assert_eq!(stats["totalSizeBytes"].as_u64(), Some(size), "{stats}");

    // The container runs (not paused) and serves.
    let state =
        kalpana_e2e::docker_inspect(&format!("kalpana-bucket-{sid_bucket}"), "{{.State.Status}}")?;
    assert_eq!(state.trim(), "running");
    let (status, _) = alice
        .send("GET", &object_path(&sid_bucket, "small.txt"), None)
        .await?;
    assert_eq!(status, 200);

    // The archive: its size and SHA-256 as recorded; a zstd tar of the engine's data.
    let (http, base, token) = alice.raw();
    let archive = http
        .get(format!("{base}{}", object_path(&vault_id, &key)))
        .bearer_auth(token.unwrap_or_default())
        .send()
        .await?
        .bytes()
        .await?;
    assert_eq!(archive.len() as u64, size);
    assert_eq!(
        hex::encode(Sha256::digest(&archive)),
        done["sha256"].as_str().unwrap_or_default()
    );
    let mut tar_bytes = Vec::new();
    zstd::stream::read::Decoder::new(&archive[..])?.read_to_end(&mut tar_bytes)?;
    let mut files = 0u64;
    let mut bytes = 0u64;
    for entry in tar::Archive::new(&tar_bytes[..]).entries()? {
        let entry = entry?;
        if entry.header().entry_type().is_file() {
            files += 1;
            bytes += entry.header().size()?;
        }
    }
    assert!(
        files > 0 && bytes >= 12 << 20,
        "{files} files, {bytes} bytes"
    );

    // Only those who see the bucket see its snapshots.
    let (_, list) = alice.send("GET", &path, None).await?;
    assert_eq!(
        list["snapshots"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
    for p in [path.clone(), format!("{path}/{snap}")] {
        let (status, _) = bob.send("GET", &p, None).await?;
        assert_eq!(status, 404, "{p}");
    }
    let (status, _) = bob.send("DELETE", &format!("{path}/{snap}"), None).await?;
    assert_eq!(status, 404);

    // Deleted: the record and the archive.
    let (status, _) = alice
        .send("DELETE", &format!("{path}/{snap}"), None)
        .await?;
    assert_eq!(status, 204);
    let (status, _) = alice
        .send("GET", &object_path(&vault_id, &key), None)
        .await?;
    assert_eq!(status, 404, "the archive is gone");
    let (_, stats) = alice
        .send("GET", &format!("/api/buckets/{vault_id}/stats"), None)
        .await?;
    assert_eq!(stats["objectCount"], 0, "{stats}");
    let (_, list) = alice.send("GET", &path, None).await?;
    assert_eq!(
        list["snapshots"].as_array().map(Vec::len),
        Some(0),
        "{list}"
    );
    Ok(())
}
