//! Snapshots of format 1 (plain zstd, taken before archives were sealed): a sealed snapshot is
//! turned into one as an older daemon would have left it (its archive opened with the master key
//! and stored plain as `<snapshotId>.tar.zst`, its record rewritten in the store to format 1
//! while the daemon is down). At the next start the daemon replaces what such an archive gave
//! away: every scoped key's secret (the old one refused, a `bucket.credentials` event, the key
//! says why), and the engine's internal certificates (the container replaced). The holder gets a
//! working secret from the rotate route; the plain snapshot still restores exactly; later
//! restarts do not rotate again.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kalpana_e2e::{docker_inspect, noise, object_path, s3_client, Api, Daemon};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{contents, id, snapshot, until};

/// Why the daemon replaced a key's secret after finding a plain archive.
const REASON: &str = "snapshot archives taken before archives were sealed";
/// The daemon's log line when it replaced them.
const REPLACED_LINE: &str = "secrets given away by plain snapshot archives replaced";

/// The engine's node certificate of bucket `bid`, from inside its container.
fn node_pem(bid: &str) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("docker")
        .args([
            "cp",
            &format!("kalpana-bucket-{bid}:/data/.kalpana-tls/node.pem"),
            "-",
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "docker cp node.pem: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut archive = tar::Archive::new(&out.stdout[..]);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path()?.ends_with("node.pem") {
            let mut pem = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut pem)?;
            anyhow::ensure!(
                pem.starts_with(b"-----BEGIN"),
                "node.pem is not PEM: {}",
                String::from_utf8_lossy(&pem)
            );
            return Ok(pem);
        }
    }
    anyhow::bail!("docker cp of node.pem held no node.pem")
}

fn generation(bid: &str) -> String {
    docker_inspect(
        &format!("kalpana-bucket-{bid}"),
        "{{index .Config.Labels \"kalpana.generation\"}}",
    )
    .unwrap_or_default()
}

/// The key `key_id` of bucket `bid`, as listed.
async fn key_view(api: &Api, bid: &str, key_id: &str) -> anyhow::Result<Value> {
    let (status, list) = api
        .send("GET", &format!("/api/buckets/{bid}/keys"), None)
        .await?;
    anyhow::ensure!(status == 200, "{status} {list}");
    list["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["id"] == key_id).cloned())
        .ok_or_else(|| anyhow::anyhow!("key {key_id} is not listed: {list}"))
}

/// Collects the text of `/api/events` for `api` in the background.
async fn listen(api: &Api) -> anyhow::Result<Arc<Mutex<String>>> {
    let resp = api
        .request(reqwest::Method::GET, "/api/events")
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 200, "events: {}", resp.status());
    let seen = Arc::new(Mutex::new(String::new()));
    let into = seen.clone();
    tokio::spawn(async move {
        let mut body = resp.bytes_stream();
        while let Some(Ok(chunk)) = body.next().await {
            into.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_str(&String::from_utf8_lossy(&chunk));
        }
    });
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_snapshot_found_at_start_replaces_key_secrets_and_certificates_once(
) -> anyhow::Result<()> {
    let mut d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let token = alice.raw().2.expect("token").to_string();
    let (status, src) = alice.create_bucket(json!({ "name": "legacy" })).await?;
    assert_eq!(status, 201, "{src}");
    let (_, vault) = alice.create_bucket(json!({ "name": "vault" })).await?;
    let (bid, vault_id) = (id(&src), id(&vault));
    let endpoint = src["endpoint"].as_str().expect("endpoint").to_string();
    for (key, body) in [
        ("small.txt", b"as it was".to_vec()),
        ("docs/mid.bin", noise(1 << 20, 5)),
    ] {
        let (status, _) = alice.put_object(&bid, key, body, None).await?;
        assert_eq!(status, 201, "{key}");
    }
    let (status, k) = alice
        .send(
            "POST",
            &format!("/api/buckets/{bid}/keys"),
            Some(json!({ "name": "agent", "access": "read-write" })),
        )
        .await?;
    assert_eq!(status, 201, "{k}");
    let key_id = id(&k);
    let old_access = k["accessKey"].as_str().expect("access").to_string();
    let old_secret = k["secretKey"].as_str().expect("secret").to_string();
    let at_snapshot = contents(&alice, &bid).await?;
    let sid = snapshot(&alice, &bid, &vault_id).await?;
    let snap_path = format!("/api/buckets/{bid}/snapshots/{sid}");
    let (_, s) = alice.send("GET", &snap_path, None).await?;
    assert_eq!(s["format"], 2, "{s}");

    // The sealed archive, downloaded through the API and opened with the master key, stored
    // plain beside it as a daemon before sealing would have stored it.
    let sealed_key = s["target"]["key"].as_str().expect("key").to_string();
    let resp = alice
        .request(reqwest::Method::GET, &object_path(&vault_id, &sealed_key))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let sealed = resp.bytes().await?.to_vec();
    assert!(sealed.starts_with(b"KALPSNAP"));
    let plain = crate::snapshots::open_sealed(&d, sealed).await?;
    assert!(
        plain.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        "opened, it is zstd"
    );
    let plain_key = format!("snapshots/{bid}/{sid}.tar.zst");
    let plain_sha = hex::encode(Sha256::digest(&plain));
    let plain_len = plain.len() as u64;
    let (status, put) = alice.put_object(&vault_id, &plain_key, plain, None).await?;
    assert_eq!(status, 201, "{put}");

    // Before: the key works, and the engine's certificate is what it is.
    assert!(super::can_read(&endpoint, &old_access, &old_secret, "legacy", "small.txt").await);
    let pem_before = node_pem(&bid)?;
    let gen_before = generation(&bid);

    // The daemon goes down; its record of the snapshot is made one of format 1.
    d.kill();
    {
        let store = kalpana_domain::store::open(
            kalpana_e2e::mongodb_store(&d.instance).as_deref(),
            &d.data_dir,
        )
        .await?;
        let mut rec = store
            .get_snapshot(&sid)
            .await?
            .ok_or_else(|| anyhow::anyhow!("snapshot {sid} is not in the store"))?;
        assert_eq!(rec.format, 2);
        rec.format = 1;
        rec.target.key = plain_key.clone();
        rec.size_bytes = Some(plain_len);
        rec.bytes_done = plain_len;
        rec.sha256 = Some(plain_sha.clone());
        store.put_snapshot(&rec).await?;
    }
    let replaced_before = d.log().matches(REPLACED_LINE).count();
    assert_eq!(replaced_before, 0, "replaced before any plain archive");
    let started = Instant::now();
    d.spawn().await?;
    let alice = d.api(&token);
    let events = listen(&alice).await?;
    let (_, s) = alice.send("GET", &snap_path, None).await?;
    assert_eq!(s["format"], 1, "{s}");
    assert_eq!(s["target"]["key"], plain_key.as_str(), "{s}");

    // Within 30 s: the key's secret replaced, saying why; the old one refused.
    let rotated = loop {
        let k = key_view(&alice, &bid, &key_id).await;
        if let Ok(k) = &k {
            if k["rotated"]["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with(REASON))
            {
                break k.clone();
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the key was not rotated in 30 s: {k:?}\nlog:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rotated_after = started.elapsed();
    assert!(rotated["rotated"]["at"].is_string(), "{rotated}");
    assert_ne!(rotated["accessKey"], old_access.as_str(), "{rotated}");
    assert!(rotated.get("secretKey").is_none(), "{rotated}");
    // The certificates: a new container (generation bumped) with a new node certificate.
    let pem_after = loop {
        let gen = generation(&bid);
        if gen != gen_before && !gen.is_empty() {
            if let Ok(pem) = node_pem(&bid) {
                if pem != pem_before {
                    break pem;
                }
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the container was not replaced with new certificates in 30 s (generation {gen_before} → {gen})\nlog:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let renewed_after = started.elapsed();
    assert_ne!(pem_after, pem_before);
    until(&alice, &format!("/api/buckets/{bid}"), |b| {
        b["status"] == "RUNNING"
    })
    .await?;
    assert!(
        !super::can_read(&endpoint, &old_access, &old_secret, "legacy", "small.txt").await,
        "the key's old secret still reads"
    );
    let generation_now = generation(&bid);
    println!(
        "plain snapshot found at start: key secret replaced {} ms after the spawn, container replaced (generation {gen_before} → {generation_now}) with a new node certificate {} ms after",
        rotated_after.as_millis(),
        renewed_after.as_millis()
    );
    // Told: a bucket.credentials event (or, when it went out before the stream was open, the
    // daemon's log line).
    let started_event = Instant::now();
    let event_seen = loop {
        let text = events.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if text.contains("event: bucket.credentials") && text.contains(&bid) {
            break true;
        }
        if started_event.elapsed() > Duration::from_secs(3) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let logged = d.log().matches(REPLACED_LINE).count();
    assert!(
        event_seen || logged == 1,
        "no bucket.credentials event and {logged} log lines"
    );
    assert_eq!(logged, 1, "replaced once");
    println!(
        "bucket.credentials event {}; logged {logged} time(s)",
        if event_seen {
            "seen on /api/events"
        } else {
            "published before /api/events was open"
        }
    );

    // The holder gets a working secret from the rotate route.
    let (status, fresh) = alice
        .send(
            "POST",
            &format!("/api/buckets/{bid}/keys/{key_id}/rotate"),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{fresh}");
    let access = fresh["accessKey"].as_str().expect("access").to_string();
    let secret = fresh["secretKey"].as_str().expect("secret").to_string();
    assert_ne!(access, old_access);
    assert_ne!(secret, old_secret);
    let t = Instant::now();
    while !super::can_read(&endpoint, &access, &secret, "legacy", "small.txt").await {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(10),
            "the rotated key does not read"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s3 = s3_client(&endpoint, &access, &secret);
    s3.put_object()
        .bucket("legacy")
        .key("by-key.txt")
        .body(b"the rotated key writes".to_vec().into())
        .send()
        .await?;
    let k_now = key_view(&alice, &bid, &key_id).await?;
    assert_eq!(k_now["accessKey"], access.as_str(), "{k_now}");

    // A restart does not rotate again.
    let not_again = |d: &Daemon, when: &str, k_before: Value| {
        let api = d.api(&token);
        let bid = bid.clone();
        let key_id = key_id.clone();
        let gen = generation(&bid);
        let when = when.to_string();
        async move {
            // Watched for 8 s: several key refreshes (each 1–2 s) and a reconcile pass.
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let k = key_view(&api, &bid, &key_id).await?;
                assert_eq!(k["accessKey"], k_before["accessKey"], "{when}: {k}");
                assert_eq!(k["rotated"], k_before["rotated"], "{when}: {k}");
                assert_eq!(generation(&bid), gen, "{when}: the container was replaced");
            }
            anyhow::Ok(())
        }
    };
    let gen_kept = generation(&bid);
    d.kill();
    d.spawn().await?;
    not_again(&d, "after a restart", k_now.clone()).await?;
    assert_eq!(generation(&bid), gen_kept);
    assert_eq!(d.log().matches(REPLACED_LINE).count(), 1, "replaced again");
    let alice = d.api(&token);
    assert!(super::can_read(&endpoint, &access, &secret, "legacy", "small.txt").await);

    // The plain snapshot restores: the bucket's objects exactly the snapshot's.
    alice
        .put_object(&bid, "later.txt", b"written later".to_vec(), None)
        .await?;
    let started = Instant::now();
    let (status, answer) = alice
        .send("POST", &format!("{snap_path}/restore"), None)
        .await?;
    assert_eq!(
        status, 202,
        "the plain snapshot, of a bucket whose key the daemon rotated, does not restore: {answer}"
    );
    let done = until(&alice, &snap_path, |s| {
        matches!(s["restore"]["status"].as_str(), Some("DONE" | "FAILED"))
    })
    .await?;
    assert_eq!(done["restore"]["status"], "DONE", "{done}");
    assert_eq!(done["format"], 1, "{done}");
    println!(
        "restore from the plain (format 1) snapshot: {} ms, out of service {} ms",
        started.elapsed().as_millis(),
        done["restore"]["downtimeMillis"]
    );
    assert_eq!(contents(&alice, &bid).await?, at_snapshot);
    // The restored engine held the key's leaked secret: it stays refused; the current one works.
    assert!(
        !super::can_read(&endpoint, &old_access, &old_secret, "legacy", "small.txt").await,
        "the restore brought the leaked secret back"
    );
    assert!(
        super::can_read(&endpoint, &access, &secret, "legacy", "small.txt").await,
        "the key's current secret no longer reads after the restore"
    );

    // And once more after the restore: no rotation.
    let k_now = key_view(&alice, &bid, &key_id).await?;
    d.kill();
    d.spawn().await?;
    not_again(&d, "after the restore and a restart", k_now).await?;
    assert_eq!(d.log().matches(REPLACED_LINE).count(), 1, "replaced again");
    Ok(())
}
