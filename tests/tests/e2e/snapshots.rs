//! Snapshots: a bucket holding objects of several sizes (one incompressible and over the
//! multipart threshold) is archived into another bucket, sealed (format 2): the stored bytes
//! match the recorded size and SHA-256, start with `KALPSNAP` and its header, and show nothing
//! to whoever reads the target bucket (no zstd, no tar, no key secret, no root secret, no engine
//! identity list), also when a read-only key of the target downloads them over plain S3; opened
//! with the daemon's master key they are a zstd tar of the engine's data. The container runs
//! again afterwards; other users see nothing; a bucket made `fromSnapshot` needs the right to
//! manage the source (a team viewer or member is refused, a team admin is not) and has none of
//! the engine identities the daemon did not make; deleting a snapshot removes its archive.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kalpana_e2e::{get_bytes, noise, object_path, s3_client, Api, Daemon};
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

/// Runs `script` in `weed shell` inside bucket `bucket_id`'s container; its standard output.
pub(crate) fn weed_shell(bucket_id: &str, script: &str) -> anyhow::Result<String> {
    use std::io::Write;
    let mut child = Command::new("docker")
        .args([
            "exec",
            "-i",
            &format!("kalpana-bucket-{bucket_id}"),
            "weed",
            "shell",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "weed shell in {bucket_id}: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The engine's identities of a bucket: (name, access keys), read with `s3.configure`.
pub(crate) fn engine_identities(bucket_id: &str) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let out = weed_shell(bucket_id, "s3.configure\n")?;
    let (Some(a), Some(b)) = (out.find('{'), out.rfind('}')) else {
        anyhow::bail!("s3.configure printed no configuration: {out:?}");
    };
    let config: Value = serde_json::from_str(&out[a..=b])?;
    Ok(config["identities"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|i| {
            let keys = i["credentials"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|c| c["accessKey"].as_str().map(String::from))
                .collect();
            (i["name"].as_str().unwrap_or_default().to_string(), keys)
        })
        .collect())
}

/// An archive's bytes opened with the daemon's master key (`<data dir>/master.key`).
pub(crate) async fn open_sealed(d: &Daemon, archive: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let hex_key = std::fs::read_to_string(d.data_dir.join("master.key"))?;
    let scratch = tempfile::tempdir()?;
    let master = kalpana_domain::secrets::MasterKey::load(Some(hex_key.trim()), scratch.path())?;
    // In pieces of an odd size, as a download arrives.
    let pieces: Vec<std::io::Result<bytes::Bytes>> = archive
        .chunks(100_003)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let stream: kalpana_domain::snapshots::sealed::ByteStream =
        Box::pin(futures::stream::iter(pieces));
    let mut opened = kalpana_domain::snapshots::sealed::open(master, stream);
    let mut out = Vec::new();
    while let Some(chunk) = opened.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Whether `needle` occurs in `haystack`.
fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// What nobody who reads the target bucket may learn from sealed archive bytes.
fn assert_sealed(what: &str, archive: &[u8], secrets: &[(&str, &str)], bucket: &str, snap: &str) {
    assert!(archive.starts_with(b"KALPSNAP"), "{what}: no KALPSNAP");
    assert_eq!(archive[8], 2, "{what}: format byte");
    let len = u32::from_be_bytes([archive[9], archive[10], archive[11], archive[12]]) as usize;
    let header: Value = serde_json::from_slice(&archive[13..13 + len]).expect("the header is JSON");
    for field in [
        "sealedKey",
        "masterKeyId",
        "chunk",
        "noncePrefix",
        "bucketId",
        "snapshotId",
    ] {
        assert!(
            !header[field].is_null(),
            "{what}: header without {field}: {header}"
        );
    }
    assert_eq!(header["bucketId"], bucket, "{what}: {header}");
    assert_eq!(header["snapshotId"], snap, "{what}: {header}");
    assert!(!archive.starts_with(&ZSTD_MAGIC), "{what}: starts as zstd");
    let mut sink = Vec::new();
    assert!(
        zstd::stream::read::Decoder::new(archive)
            .and_then(|mut z| z.read_to_end(&mut sink))
            .is_err(),
        "{what}: zstd decodes it"
    );
    assert!(!holds(archive, b"ustar"), "{what}: a tar header shows");
    for (name, secret) in secrets {
        assert!(
            !holds(archive, secret.as_bytes()),
            "{what}: {name} in clear"
        );
    }
    assert!(
        !holds(archive, b"identities"),
        "{what}: \"identities\" in clear"
    );
}

#[tokio::test]
async fn a_snapshot_streams_the_paused_volume_to_another_bucket_sealed_with_its_sha256(
) -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (bob, _) = d.new_user("bob").await?;
    let (carol, carol_id) = d.new_user("carol").await?;
    let (dave, dave_id) = d.new_user("dave").await?;
    let (erin, erin_id) = d.new_user("erin").await?;
    let (status, team) = alice
        .send("POST", "/api/teams", Some(json!({ "name": "crew" })))
        .await?;
    assert_eq!(status, 201, "{team}");
    let tid = team["id"].as_str().expect("id").to_string();
    for (user, role) in [
        (&carol_id, "viewer"),
        (&dave_id, "member"),
        (&erin_id, "admin"),
    ] {
        let (status, body) = alice
            .send(
                "POST",
                &format!("/api/teams/{tid}/members"),
                Some(json!({ "userId": user, "role": role })),
            )
            .await?;
        assert_eq!(status, 200, "{role}: {body}");
    }
    let (status, src) = alice
        .create_bucket(json!({ "name": "source", "teamId": tid }))
        .await?;
    assert_eq!(status, 201, "{src}");
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
    // A read-write key of the source, made before the snapshot: its secret is in the engine's
    // data the archive holds.
    let (status, rw) = alice
        .send(
            "POST",
            &format!("/api/buckets/{sid_bucket}/keys"),
            Some(json!({ "name": "writer", "access": "read-write" })),
        )
        .await?;
    assert_eq!(status, 201, "{rw}");
    let rw_secret = rw["secretKey"].as_str().expect("secret").to_string();
    let root_secret = src["secretKey"].as_str().expect("secret").to_string();
    // An identity the daemon did not make, put in the engine by hand.
    let intruder_secret = format!("{:x<40}", "IntruderSecretKey");
    assert_eq!(intruder_secret.len(), 40);
    weed_shell(
        &sid_bucket,
        &format!(
            "s3.configure -user=intruder -access_key=AKINTRUDER0000000001 -secret_key={intruder_secret} -actions=Read:source,List:source -apply\n"
        ),
    )?;
    let src_endpoint = src["endpoint"].as_str().expect("endpoint").to_string();
    let intruder = s3_client(&src_endpoint, "AKINTRUDER0000000001", &intruder_secret);
    let started = Instant::now();
    while intruder
        .list_objects_v2()
        .bucket("source")
        .send()
        .await
        .is_err()
    {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(15),
            "the injected identity never worked on the source"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        engine_identities(&sid_bucket)?
            .iter()
            .any(|(name, _)| name == "intruder"),
        "the injected identity is listed in the source's engine"
    );
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

    let started = Instant::now();
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
    let key = format!("snapshots/{sid_bucket}/{snap}.tar.zst.sealed");
    assert_eq!(s["target"]["key"], key.as_str(), "{s}");
    let done = until_finished(&alice, &format!("{path}/{snap}")).await?;
    let took = started.elapsed();
    assert_eq!(done["status"], "DONE", "{done}");
    assert_eq!(done["format"], 2, "{done}");
    assert_eq!(done["target"]["key"], key.as_str(), "{done}");
    let size = done["sizeBytes"].as_u64().expect("size");
    assert!(size > 12 << 20, "incompressible data stays big: {done}");
    assert_eq!(done["bytesDone"].as_u64(), Some(size));
    // The bucket says how old its latest snapshot is: what a restore would lose.
    let (_, v) = alice
        .send("GET", &format!("/api/buckets/{sid_bucket}"), None)
        .await?;
    assert_eq!(v["latestSnapshotAt"], done["finishedAt"], "{v}");
    assert!(
        v["latestSnapshotAgeSecs"].as_u64().is_some_and(|s| s < 120),
        "{v}"
    );
    println!(
        "sealed snapshot of ~12.3 MB: {size} bytes in {} ms, container paused {} ms",
        took.as_millis(),
        done["pausedMillis"]
    );

    // The archive counts in the target's usage at once.
    let (_, stats) = alice
        .send("GET", &format!("/api/buckets/{vault_id}/stats"), None)
        .await?;
    assert_eq!(stats["objectCount"], 1, "{stats}");
    assert_eq!(
        stats["totalSizeBytes"].as_u64(),
        Some(size),
        "the archive, once, is the target's usage: {stats}"
    );

    // The container runs (not paused) and serves.
    let state =
        kalpana_e2e::docker_inspect(&format!("kalpana-bucket-{sid_bucket}"), "{{.State.Status}}")?;
    assert_eq!(state.trim(), "running");
    let (status, _) = alice
        .send("GET", &object_path(&sid_bucket, "small.txt"), None)
        .await?;
    assert_eq!(status, 200);

    // A read-only key of the target, for reading the archive over plain S3 below.
    let (status, ro) = alice
        .send(
            "POST",
            &format!("/api/buckets/{vault_id}/keys"),
            Some(json!({ "name": "auditor", "access": "read" })),
        )
        .await?;
    assert_eq!(status, 201, "{ro}");

    // The stored bytes: their size and SHA-256 as recorded (of the sealed bytes); sealed. (The
    // connection is not kept: what follows takes seconds without the daemon, and the daemon
    // closes connections idle for 10 s, which a request sent at that moment would meet.)
    let (http, base, token) = alice.raw();
    let archive = http
        .get(format!("{base}{}", object_path(&vault_id, &key)))
        .bearer_auth(token.unwrap_or_default())
        .header(reqwest::header::CONNECTION, "close")
        .send()
        .await?
        .bytes()
        .await?
        .to_vec();
    assert_eq!(archive.len() as u64, size);
    assert_eq!(
        hex::encode(Sha256::digest(&archive)),
        done["sha256"].as_str().unwrap_or_default()
    );
    let secrets = [
        ("the read-write key's secret", rw_secret.as_str()),
        ("the root secret", root_secret.as_str()),
        ("the injected identity's secret", intruder_secret.as_str()),
    ];
    assert_sealed("through the API", &archive, &secrets, &sid_bucket, &snap);

    // A read-only key of the target downloads the same bytes over plain S3: no more to learn.
    let vault_s3 = s3_client(
        vault["endpoint"].as_str().expect("endpoint"),
        ro["accessKey"].as_str().expect("access"),
        ro["secretKey"].as_str().expect("secret"),
    );
    let started = Instant::now();
    let by_s3 = loop {
        match get_bytes(&vault_s3, "vault", &key).await {
            Ok(b) => break b,
            Err(e) => {
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(15),
                    "the read-only key never read the archive: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert!(by_s3 == archive, "plain S3 got other bytes");
    assert_sealed("over plain S3", &by_s3, &secrets, &sid_bucket, &snap);

    // Opened with the master key: a zstd tar of the engine's data, as before sealing.
    let started = Instant::now();
    let opened = open_sealed(&d, archive).await?;
    println!(
        "opened with the master key: {} sealed bytes to {} zstd bytes in {} ms",
        size,
        opened.len(),
        started.elapsed().as_millis()
    );
    assert!(opened.starts_with(&ZSTD_MAGIC), "opened bytes are not zstd");
    let mut tar_bytes = Vec::new();
    zstd::stream::read::Decoder::new(&opened[..])?.read_to_end(&mut tar_bytes)?;
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
    // The control: opened, the engine's identities and the key's secret are there in clear, so
    // their absence from the stored bytes means something.
    assert!(
        holds(&tar_bytes, rw_secret.as_bytes()) && holds(&tar_bytes, b"identities"),
        "the opened tar does not hold the engine's identities"
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

    // A bucket from the snapshot needs the right to manage the source: someone who cannot see
    // it gets 404, a team viewer or member 403 (nothing made), a team admin 201.
    let from = json!({ "bucketId": sid_bucket, "snapshotId": snap });
    for (who, api, want) in [
        ("an outsider", &bob, 404),
        ("a team viewer", &carol, 403),
        ("a team member", &dave, 403),
    ] {
        let (status, e) = api
            .create_bucket(json!({ "name": "mine-now", "fromSnapshot": from }))
            .await?;
        assert_eq!(status, want, "{who}: {e}");
    }
    for (who, api) in [("viewer", &carol), ("member", &dave), ("bob", &bob)] {
        let (_, list) = api.send("GET", "/api/buckets", None).await?;
        let mine: Vec<&Value> = list["buckets"]
            .as_array()
            .map(|v| v.iter().filter(|b| b["name"] == "mine-now").collect())
            .unwrap_or_default();
        assert!(mine.is_empty(), "{who} got a bucket: {list}");
    }
    let started = Instant::now();
    let (status, copy) = erin
        .create_bucket(json!({ "name": "copied", "fromSnapshot": from }))
        .await?;
    assert_eq!(status, 201, "a team admin: {copy}");
    assert_eq!(copy["status"], "RUNNING", "{copy}");
    println!(
        "bucket made from the sealed snapshot by a team admin in {} ms",
        started.elapsed().as_millis()
    );
    let copy_id = copy["id"].as_str().expect("id").to_string();
    let resp = erin
        .request(reqwest::Method::GET, &object_path(&copy_id, "small.txt"))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(&resp.bytes().await?[..], b"hello, snapshot");

    // The identity injected before the snapshot came with the data and was removed.
    let copy_endpoint = copy["endpoint"].as_str().expect("endpoint");
    let intruder = s3_client(copy_endpoint, "AKINTRUDER0000000001", &intruder_secret);
    for bucket in ["copied", "source"] {
        let listed = intruder.list_objects_v2().bucket(bucket).send().await;
        assert!(
            listed.is_err(),
            "the intruder lists {bucket} in the copy: {listed:?}"
        );
        let got = intruder
            .get_object()
            .bucket(bucket)
            .key("small.txt")
            .send()
            .await;
        assert!(got.is_err(), "the intruder reads {bucket} in the copy");
        let e = format!(
            "{:?}",
            got.err().map(aws_sdk_s3::error::DisplayErrorContext)
        );
        assert!(
            e.contains("InvalidAccessKeyId"),
            "refused, but not as an unknown access key: {e}"
        );
    }
    let identities = engine_identities(&copy_id)?;
    assert!(
        !identities
            .iter()
            .any(|(name, keys)| name == "intruder"
                || keys.iter().any(|k| k == "AKINTRUDER0000000001")),
        "the injected identity is in the copy's engine: {identities:?}"
    );

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
    let (_, v) = alice
        .send("GET", &format!("/api/buckets/{sid_bucket}"), None)
        .await?;
    assert!(
        v["latestSnapshotAt"].is_null() && v["latestSnapshotAgeSecs"].is_null(),
        "its only snapshot is gone: {v}"
    );
    let (_, list) = alice.send("GET", &path, None).await?;
    assert_eq!(
        list["snapshots"].as_array().map(Vec::len),
        Some(0),
        "{list}"
    );
    Ok(())
}
