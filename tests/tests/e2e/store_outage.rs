//! The daemon on a real MongoDB wire server (SecantusDB): an outage is 503 and nothing lost, the
//! daemon recovers by itself when the server is back, and two daemons never act on one store.

use std::time::{Duration, Instant};

use kalpana_e2e::mongo::MongoServer;
use kalpana_e2e::{Daemon, DaemonOptions};
use serde_json::json;

fn on_store(uri: String, extra: &[(&str, &str)]) -> DaemonOptions {
    let mut env = vec![("KALPANA_STORE".to_string(), uri)];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    DaemonOptions {
        env,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_store_outage_is_503_loses_nothing_and_heals_by_itself() -> anyhow::Result<()> {
    let mut server = MongoServer::start().await?;
    let mut d = Daemon::start_with(on_store(
        server.uri("outage"),
        &[("KALPANA_RESYNC_SECS", "1")],
    ))
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "durable" })).await?;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["status"], "RUNNING", "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let (status, _) = alice
        .send(
            "PATCH",
            &format!("/api/buckets/{id}"),
            Some(json!({ "description": "acknowledged before the outage" })),
        )
        .await?;
    assert_eq!(status, 200);
    let (_, before) = alice
        .send("GET", &format!("/api/buckets/{id}"), None)
        .await?;
    assert_eq!(
        before["description"], "acknowledged before the outage",
        "{before}"
    );

    server.kill();
    let anon = d.anonymous();
    let started = Instant::now();
    let readiness = loop {
        let (status, body) = anon.send("GET", "/readyz", None).await?;
        if status == 503 {
            break body;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(15),
            "/readyz still {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        readiness["store"]
            .as_str()
            .is_some_and(|s| s.contains("MongoDB")),
        "{readiness}"
    );
    assert_eq!(readiness["docker"], "ok", "{readiness}");
    for (method, path, body) in [
        (
            "POST",
            "/api/buckets".to_string(),
            Some(json!({ "name": "during" })),
        ),
        ("GET", format!("/api/buckets/{id}"), None),
        (
            "PATCH",
            format!("/api/buckets/{id}"),
            Some(json!({ "description": "lost?" })),
        ),
    ] {
        let (status, answer) = alice.send(method, &path, body).await?;
        assert_eq!(status, 503, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "unavailable", "{answer}");
    }
    assert!(d.pid().is_some(), "the daemon is still running");
    assert!(!d.log().contains("panicked"), "the daemon panicked");

    server.restart().await?;
    let back = Instant::now();
    loop {
        let (status, _) = anon.send("GET", "/readyz", None).await?;
        if status == 200 {
            break;
        }
        anyhow::ensure!(
            back.elapsed() < Duration::from_secs(5),
            "not ready 5 s after the store came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "store outage: ready again {:?} after the server came back",
        back.elapsed()
    );
    let (status, got) = alice
        .send("GET", &format!("/api/buckets/{id}"), None)
        .await?;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["description"], "acknowledged before the outage");
    assert_eq!(got["status"], "RUNNING");
    let (_, list) = alice.send("GET", "/api/buckets", None).await?;
    assert_eq!(list["buckets"].as_array().map(Vec::len), Some(1), "{list}");
    let (status, _) = alice
        .put_object(&id, "after.txt", b"after the outage".to_vec(), None)
        .await?;
    assert_eq!(status, 201);
    d.kill();
    Ok(())
}

#[tokio::test]
async fn a_second_daemon_on_the_same_store_waits_for_the_lease() -> anyhow::Result<()> {
    let server = MongoServer::start().await?;
    let lease = [("KALPANA_LEASE_SECS", "3")];
    let mut first = Daemon::start_with(on_store(server.uri("shared"), &lease)).await?;
    let refused = Daemon::start_with(on_store(server.uri("shared"), &lease)).await;
    let err = match refused {
        Ok(_) => anyhow::bail!("a second daemon started on a store another daemon holds"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("another daemon"), "{err}");
    assert!(err.contains(&first.instance), "names the holder: {err}");

    // The holder dies without a word: the lease runs out and the next daemon takes over.
    first.kill();
    let killed = Instant::now();
    let second = loop {
        match Daemon::start_with(on_store(server.uri("shared"), &lease)).await {
            Ok(d) => break d,
            Err(e) => {
                anyhow::ensure!(
                    killed.elapsed() < Duration::from_secs(15),
                    "no takeover 15 s after the holder died: {e:#}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    println!(
        "store lease: taken over {:?} after the holder was killed",
        killed.elapsed()
    );
    let (status, _) = second.admin().send("GET", "/api/me", None).await?;
    assert_eq!(status, 200);
    Ok(())
}
