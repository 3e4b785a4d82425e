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
    // Daemons on one store share its master key (another key is refused before the lease).
    let key = "ab".repeat(32);
    let lease = [
        ("KALPANA_LEASE_SECS", "3"),
        ("KALPANA_MASTER_KEY", key.as_str()),
    ];
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

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_answers_503_then_takes_over_and_reads_what_the_active_one_sealed(
) -> anyhow::Result<()> {
    let server = MongoServer::start().await?;
    let uri = server.uri("standby");
    let key = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let shared = [
        ("KALPANA_LEASE_SECS", "3"),
        ("KALPANA_MASTER_KEY", key.as_str()),
    ];
    // The active daemon dies in the middle of a stop (container stopped, the record not yet
    // settled): the standby must finish it.
    let mut first = Daemon::start_with(on_store(
        uri.clone(),
        &[
            shared[0],
            shared[1],
            ("KALPANA_FAULT_POINT", "stop.stopped"),
        ],
    ))
    .await?;

    // Another master key on the same store is refused, naming both fingerprints.
    let refused = Daemon::start_with(on_store(
        uri.clone(),
        &[("KALPANA_LEASE_SECS", "3"), ("KALPANA_STANDBY", "true")],
    ))
    .await;
    let err = match refused {
        Ok(_) => anyhow::bail!("a daemon with another master key started on the store"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("KALPANA_MASTER_KEY"), "{err}");
    assert!(err.contains("fingerprint"), "{err}");

    // The standby listens, says so, and answers the API 503 with Retry-After.
    let standby = Daemon::start_with(on_store(
        uri.clone(),
        &[shared[0], shared[1], ("KALPANA_STANDBY", "true")],
    ))
    .await?;
    let (alice, _) = first.new_user("alice").await?;
    let token = alice.raw().2.expect("token").to_string();
    let on_standby = standby.api(&token);
    let resp = on_standby
        .request(reqwest::Method::GET, "/api/buckets")
        .send()
        .await?;
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );
    let body: serde_json::Value = resp.json().await?;
    assert_eq!(body["error"]["code"], "standby", "{body}");
    let health: serde_json::Value = reqwest::get(format!("{}/healthz", standby.url))
        .await?
        .json()
        .await?;
    assert_eq!(health["status"], "standby", "{health}");

    // Work done on the active daemon: a bucket (its credentials sealed with the shared key).
    let (status, b) = alice
        .create_bucket(json!({ "name": "handed-over" }))
        .await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let (status, _) = alice
        .put_object(&id, "k.txt", b"written before the takeover".to_vec(), None)
        .await?;
    assert_eq!(status, 201);

    let (status, half) = alice
        .create_bucket(json!({ "name": "half-stopped" }))
        .await?;
    assert_eq!(status, 201, "{half}");
    let half = half["id"].as_str().expect("id").to_string();

    // The active daemon dies in a stop: the standby takes over on the same socket; a client
    // polling it sees 503s, then answers, and never a refused connection.
    let stopping = alice.clone();
    let path = format!("/api/buckets/{half}/stop");
    let call = tokio::spawn(async move { stopping.send("POST", &path, None).await });
    let status = first.wait_exit(Duration::from_secs(60)).await?;
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "killed at the fault point: {status}"
        );
    }
    let _ = call.await?;
    let killed = Instant::now();
    let mut seen = Vec::new();
    loop {
        match on_standby
            .request(reqwest::Method::GET, &format!("/api/buckets/{id}"))
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => break,
            Ok(r) => seen.push(r.status().as_u16()),
            Err(e) => anyhow::bail!("the standby refused a connection during the takeover: {e}"),
        }
        anyhow::ensure!(
            killed.elapsed() < Duration::from_secs(30),
            "no takeover 30 s after the active daemon died"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = killed.elapsed();
    seen.dedup();
    println!("standby took over {took:?} after the active daemon was killed (lease 3 s); answers meanwhile: {seen:?}");
    assert!(seen.iter().all(|s| *s == 503), "{seen:?}");
    let resp = on_standby
        .request(
            reqwest::Method::GET,
            &format!("/api/buckets/{id}/objects/k.txt"),
        )
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(&resp.bytes().await?[..], b"written before the takeover");

    // The stop the active daemon died in is finished by the one that took over.
    loop {
        let (status, v) = on_standby
            .send("GET", &format!("/api/buckets/{half}"), None)
            .await?;
        assert_eq!(status, 200, "{v}");
        if v["status"] == "STOPPED" && v["phase"].is_null() {
            break;
        }
        anyhow::ensure!(
            killed.elapsed() < Duration::from_secs(60),
            "the interrupted stop was never finished: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test]
async fn an_outage_longer_than_the_lease_stops_every_change_until_the_lease_is_held_again(
) -> anyhow::Result<()> {
    let mut server = MongoServer::start().await?;
    let mut d = Daemon::start_with(on_store(
        server.uri("long-outage"),
        &[("KALPANA_LEASE_SECS", "2")],
    ))
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "kept" })).await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    server.kill();
    // No renewal for a whole lease: another daemon could hold it now, so this one changes nothing.
    let started = Instant::now();
    while !d.log().contains("no change is made until it is held again") {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "the daemon never stopped its changes after its lease could have run out"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "changes stopped {:?} after the store went away (lease 2 s)",
        started.elapsed()
    );
    server.restart().await?;
    let back = Instant::now();
    while !d.log().contains("store lease held again: changes resume") {
        anyhow::ensure!(
            back.elapsed() < Duration::from_secs(10),
            "the daemon never took its lease again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, got) = alice
        .send(
            "PATCH",
            &format!("/api/buckets/{id}"),
            Some(json!({ "description": "after the long outage" })),
        )
        .await?;
    assert_eq!(status, 200, "changes resume once the lease is held: {got}");
    assert!(d.pid().is_some(), "the daemon is still running");
    d.kill();
    Ok(())
}
