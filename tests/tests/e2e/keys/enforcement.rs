//! A scoped key is enforced by the engine, revoked and expired keys stop working within seconds,
//! and keys survive stop/start, rotation and a removed container.

use std::time::{Duration, Instant};

use kalpana_e2e::{s3_client, Daemon, DaemonOptions};
use serde_json::{json, Value};

use super::{allowed, key_client};

/// Whether `s3` may GET `key`. A connection the engine reset (its container was just replaced
/// or restarted, the client's pooled connection with it) is tried again for up to 10 s.
async fn can_get(s3: &aws_sdk_s3::Client, key: &str) -> bool {
    let started = Instant::now();
    loop {
        match s3.get_object().bucket("scoped").key(key).send().await {
            Err(aws_sdk_s3::error::SdkError::DispatchFailure(e))
                if started.elapsed() < Duration::from_secs(10) =>
            {
                println!("{key}: connection failed ({e:?}); trying again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            r => return allowed(key, r).await,
        }
    }
}

/// Waits until `key` is refused to `s3`; the time it took.
async fn refused_within(s3: &aws_sdk_s3::Client, key: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    while can_get(s3, key).await {
        assert!(
            started.elapsed() < limit,
            "still allowed {limit:?} after revocation"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn keys_are_enforced_by_the_engine_revoked_in_seconds_and_survive_replacement(
) -> anyhow::Result<()> {
    let mut d = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_STATS_SYNC_SECS".into(), "1".into())],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let (mallory, _) = d.new_user("mallory").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "scoped" })).await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let endpoint = b["endpoint"].as_str().expect("endpoint").to_string();
    let root = s3_client(
        &endpoint,
        b["accessKey"].as_str().expect("access"),
        b["secretKey"].as_str().expect("secret"),
    );
    for key in ["pub/a.txt", "priv/b.txt"] {
        root.put_object()
            .bucket("scoped")
            .key(key)
            .body(key.as_bytes().to_vec().into())
            .send()
            .await?;
    }
    let make = |body: Value| {
        let alice = alice.clone();
        let id = id.clone();
        async move {
            alice
                .send("POST", &format!("/api/buckets/{id}/keys"), Some(body))
                .await
        }
    };

    // How to connect, without the secret.
    let (status, c) = alice
        .send("GET", &format!("/api/buckets/{id}/connection"), None)
        .await?;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["endpoint"], endpoint.as_str());
    assert_eq!(c["bucket"], "scoped");
    assert_eq!(c["env"]["AWS_ACCESS_KEY_ID"], b["accessKey"]);
    assert_eq!(c["env"]["S3_BUCKET"], "scoped");
    assert!(c["internalEndpoint"]
        .as_str()
        .is_some_and(|e| e.ends_with(":8333")));
    println!("connection: {}", serde_json::to_string_pretty(&c)?);
    assert!(c["snippets"]["s3cfg"]
        .as_str()
        .is_some_and(|s| s.contains("host_base = 127.0.0.1")));
    for client in ["awsCli", "rclone", "boto3", "s3cmd", "rustSdk"] {
        assert!(
            c["snippets"][client]
                .as_str()
                .is_some_and(|s| s.contains("scoped")),
            "{client}: {c}"
        );
    }
    assert!(
        !c.to_string()
            .contains(b["secretKey"].as_str().expect("secret")),
        "the connection answer carries the secret"
    );
    let (status, _) = mallory
        .send("GET", &format!("/api/buckets/{id}/connection"), None)
        .await?;
    assert_eq!(status, 404);

    // A read key on a prefix.
    let (status, reader) =
        make(json!({ "name": "reader", "access": "read", "prefix": "pub/" })).await?;
    assert_eq!(status, 201, "{reader}");
    let r = key_client(&endpoint, &reader);
    assert!(can_get(&r, "pub/a.txt").await);
    assert!(!can_get(&r, "priv/b.txt").await, "read outside the prefix");
    assert!(
        !allowed(
            "put",
            r.put_object()
                .bucket("scoped")
                .key("pub/c.txt")
                .body(b"c".to_vec().into())
                .send()
                .await
        )
        .await,
        "a read key wrote"
    );
    assert!(
        !allowed(
            "delete",
            r.delete_object()
                .bucket("scoped")
                .key("pub/a.txt")
                .send()
                .await
        )
        .await,
        "a read key deleted"
    );
    assert!(
        allowed(
            "list pub/",
            r.list_objects_v2()
                .bucket("scoped")
                .prefix("pub/")
                .send()
                .await
        )
        .await
    );
    assert!(
        !allowed(
            "list all",
            r.list_objects_v2().bucket("scoped").send().await
        )
        .await,
        "a prefix key listed the whole bucket"
    );

    // A write key: writes, does not read.
    let (status, writer) = make(json!({ "name": "writer", "access": "write" })).await?;
    assert_eq!(status, 201, "{writer}");
    let w = key_client(&endpoint, &writer);
    assert!(
        allowed(
            "put",
            w.put_object()
                .bucket("scoped")
                .key("up/x.txt")
                .body(b"x".to_vec().into())
                .send()
                .await
        )
        .await
    );
    assert!(!can_get(&w, "up/x.txt").await, "a write key read");

    // A read-write key on a prefix writes only there.
    let (status, scoped) =
        make(json!({ "name": "scoped-rw", "access": "read-write", "prefix": "pub/" })).await?;
    assert_eq!(status, 201, "{scoped}");
    let p = key_client(&endpoint, &scoped);
    let put = |key: &'static str| {
        let p = p.clone();
        async move {
            allowed(
                key,
                p.put_object()
                    .bucket("scoped")
                    .key(key)
                    .body(b"p".to_vec().into())
                    .send()
                    .await,
            )
            .await
        }
    };
    assert!(put("pub/mine.txt").await);
    assert!(
        !put("priv/theirs.txt").await,
        "a prefix key wrote outside it"
    );
    let (status, _) = alice
        .send(
            "DELETE",
            &format!(
                "/api/buckets/{id}/keys/{}",
                scoped["id"].as_str().expect("id")
            ),
            None,
        )
        .await?;
    assert_eq!(status, 204);

    // Time from creation to the first accepted request, and from revoke to the first refusal.
    let (mut ready, mut refused) = (Vec::new(), Vec::new());
    for i in 0..10 {
        let started = Instant::now();
        let (status, k) = make(json!({ "name": format!("timed-{i}"), "access": "read" })).await?;
        assert_eq!(status, 201, "{k}");
        let c = key_client(&endpoint, &k);
        while !can_get(&c, "pub/a.txt").await {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "a new key never worked"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ready.push(started.elapsed());
        let started = Instant::now();
        let (status, _) = alice
            .send(
                "DELETE",
                &format!("/api/buckets/{id}/keys/{}", k["id"].as_str().expect("id")),
                None,
            )
            .await?;
        assert_eq!(status, 204);
        refused_within(&c, "pub/a.txt", Duration::from_secs(5)).await;
        refused.push(started.elapsed());
    }
    ready.sort();
    refused.sort();
    println!(
        "key timing over 10: create→first accepted request median {:?} (max {:?}); revoke→first refusal median {:?} (max {:?})",
        ready[5], ready[9], refused[5], refused[9]
    );

    // Bad requests, another tenant, no secrets in the list.
    for bad in [
        json!({ "name": "", "access": "read" }),
        json!({ "name": "x", "access": "admin" }),
        json!({ "name": "x", "access": "read", "prefix": "/abs" }),
        json!({ "name": "x", "access": "read", "expiresIn": 0 }),
    ] {
        let (status, e) = make(bad.clone()).await?;
        assert_eq!(status / 100, 4, "{bad}: {e}");
        assert_ne!(status, 404, "{bad}: {e}");
    }
    let (status, _) = mallory
        .send(
            "POST",
            &format!("/api/buckets/{id}/keys"),
            Some(json!({ "name": "x", "access": "read" })),
        )
        .await?;
    assert_eq!(status, 404);
    let (status, _) = mallory
        .send("GET", &format!("/api/buckets/{id}/keys"), None)
        .await?;
    assert_eq!(status, 404);
    let (status, list) = alice
        .send("GET", &format!("/api/buckets/{id}/keys"), None)
        .await?;
    assert_eq!(status, 200);
    assert_eq!(list["keys"].as_array().map(Vec::len), Some(2), "{list}");
    assert!(!list.to_string().contains("secretKey"), "{list}");

    // Survives stop/start, root rotation and a container removed by hand.
    for (what, path) in [("stop", "stop"), ("start", "start")] {
        let (status, v) = alice
            .send("POST", &format!("/api/buckets/{id}/{path}"), None)
            .await?;
        assert_eq!(status, 200, "{what}: {v}");
    }
    assert!(can_get(&r, "pub/a.txt").await, "after stop/start");
    let (status, rotated) = alice
        .send(
            "POST",
            &format!("/api/buckets/{id}/credentials/rotate"),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{rotated}");
    assert!(can_get(&r, "pub/a.txt").await, "after root rotation");
    let container = format!("kalpana-bucket-{id}");
    std::process::Command::new("docker")
        .args(["rm", "-f", &container])
        .output()?;
    let started = Instant::now();
    loop {
        if kalpana_e2e::docker_inspect(&container, "{{.State.Running}}").is_ok_and(|s| s == "true")
            && can_get(&r, "pub/a.txt").await
        {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "key never worked again"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "key works again {:?} after the container was removed",
        started.elapsed()
    );

    // Revoked: refused within 5 s.
    let (status, _) = alice
        .send(
            "DELETE",
            &format!(
                "/api/buckets/{id}/keys/{}",
                reader["id"].as_str().expect("id")
            ),
            None,
        )
        .await?;
    assert_eq!(status, 204);
    let took = refused_within(&r, "pub/a.txt", Duration::from_secs(5)).await;
    println!("revoked key refused after {took:?}");

    // Expired: refused within 5 s of its expiry.
    let (status, short) =
        make(json!({ "name": "short", "access": "read", "expiresIn": 2 })).await?;
    assert_eq!(status, 201, "{short}");
    let s = key_client(&endpoint, &short);
    assert!(can_get(&s, "pub/a.txt").await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let took = refused_within(&s, "pub/a.txt", Duration::from_secs(5)).await;
    println!("expired key refused {took:?} after its expiry");
    let (_, list) = alice
        .send("GET", &format!("/api/buckets/{id}/keys"), None)
        .await?;
    assert_eq!(list["keys"].as_array().map(Vec::len), Some(1), "{list}");

    // A daemon restart keeps the keys (the writer still writes).
    d.kill();
    d.spawn().await?;
    assert!(
        allowed(
            "put after restart",
            w.put_object()
                .bucket("scoped")
                .key("up/y.txt")
                .body(b"y".to_vec().into())
                .send()
                .await
        )
        .await
    );

    let log = d.log();
    for k in [&reader, &writer, &short] {
        let secret = k["secretKey"].as_str().expect("secret");
        assert!(!log.contains(secret), "a key's secret is in the daemon log");
    }
    Ok(())
}
