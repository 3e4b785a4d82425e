//! Between tenants: per-owner limits, team roles and what a removed member keeps, keys stored
//! exactly as given, private files, and a daemon that half-open connections cannot starve.

mod removals;
mod teams;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use kalpana_e2e::{enc, Daemon, DaemonOptions};
use serde_json::json;

#[tokio::test]
async fn one_owner_holds_at_most_the_configured_number_of_buckets() -> anyhow::Result<()> {
    let d = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_MAX_BUCKETS_PER_OWNER".into(), "2".into())],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let (bob, _) = d.new_user("bob").await?;
    for name in ["first-a", "second-a"] {
        let (status, body) = alice
            .send("POST", "/api/buckets", Some(json!({ "name": name })))
            .await?;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = alice
        .send("POST", "/api/buckets", Some(json!({ "name": "third-a" })))
        .await?;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "owner_limit");
    let (_, mine) = alice.send("GET", "/api/buckets", None).await?;
    assert_eq!(
        mine["buckets"].as_array().map(Vec::len),
        Some(2),
        "no trace: {mine}"
    );
    let (status, body) = bob
        .send("POST", "/api/buckets", Some(json!({ "name": "third-a" })))
        .await?;
    assert_eq!(status, 201, "another owner is not limited by alice: {body}");
    // Admins are exempt.
    let (status, body) = d
        .admin()
        .send("POST", "/api/buckets", Some(json!({ "name": "ops-one" })))
        .await?;
    assert_eq!(status, 201, "{body}");
    Ok(())
}

#[tokio::test]
async fn each_owner_keeps_a_share_of_the_ports() -> anyhow::Result<()> {
    // Ports 375–384 of this test process's slice are used by no other test daemon.
    let base = kalpana_e2e::port_base() + 375;
    let d = Daemon::start_with(DaemonOptions {
        port_range: Some(format!("{}-{}", base, base + 9)),
        env: vec![("KALPANA_PORT_RESERVE_PERCENT".into(), "40".into())],

        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let (bob, _) = d.new_user("bob").await?;
    // Ten ports, four kept from any one owner: alice gets six.
    for i in 0..6 {
        let (status, body) = alice
            .send(
                "POST",
                "/api/buckets",
                Some(json!({ "name": format!("p{i}-alice") })),
            )
            .await?;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = alice
        .send("POST", "/api/buckets", Some(json!({ "name": "p6-alice" })))
        .await?;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "owner_limit");
    let (status, body) = bob
        .send("POST", "/api/buckets", Some(json!({ "name": "p0-bob" })))
        .await?;
    assert_eq!(status, 201, "bob still gets a port: {body}");
    Ok(())
}

#[tokio::test]
async fn keys_are_stored_byte_for_byte_or_refused() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "keys" })).await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let long_segment = "k".repeat(256);
    for bad in [
        "a\\b",
        "x\\..\\y",
        "a//b",
        "trailing/",
        "dirkey/",
        long_segment.as_str(),
        ".uploads/x",
        " ",
    ] {
        let (status, body) = alice.put_object(&id, bad, b"12345".to_vec(), None).await?;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert_eq!(body["error"]["code"], "bad_request");
    }
    // What is accepted reads back exactly, and each key is its own object.
    let deep = vec!["d".repeat(200); 5].join("/");
    for (key, data) in [
        ("a/b", b"slash".to_vec()),
        (" spaced key ", b"space".to_vec()),
        (deep.as_str(), b"deep".to_vec()),
        ("ünï/ключ", b"utf8".to_vec()),
    ] {
        let (status, body) = alice.put_object(&id, key, data.clone(), None).await?;
        assert_eq!(status, 201, "{key:?}: {body}");
        let resp = alice
            .request(
                reqwest::Method::GET,
                &format!("/api/buckets/{id}/objects/{}", enc(key)),
            )
            .send()
            .await?;
        assert_eq!(resp.status(), 200, "{key:?}");
        assert_eq!(resp.bytes().await?.to_vec(), data, "{key:?}");
    }
    let (_, page) = alice
        .send("GET", &format!("/api/buckets/{id}/objects"), None)
        .await?;
    let keys: Vec<&str> = page["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter_map(|o| o["key"].as_str())
        .collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    Ok(())
}

#[tokio::test]
async fn the_data_dir_and_store_are_private() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let mode = |p: &std::path::Path| -> anyhow::Result<u32> {
        Ok(std::fs::metadata(p)?.permissions().mode() & 0o777)
    };
    assert_eq!(mode(&d.data_dir)?, 0o700, "data dir");
    if std::env::var_os("KALPANA_TEST_E2E_MONGODB_URI").is_none() {
        assert_eq!(mode(&d.data_dir.join("kalpana.redb"))?, 0o600, "store file");
    }
    assert_eq!(mode(&d.data_dir.join("master.key"))?, 0o600, "master key");
    Ok(())
}

#[tokio::test]
async fn five_thousand_half_open_requests_leave_healthz_answering() -> anyhow::Result<()> {
    let d = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_HEADER_TIMEOUT_SECS".into(), "3".into())],
        ..Default::default()
    })
    .await?;
    let addr: std::net::SocketAddr = d.url.trim_start_matches("http://").parse()?;
    // The attacker comes from another loopback address than the health check.
    let attacker = std::net::SocketAddr::from(([127, 0, 0, 2], 0));
    let mut held = Vec::new();
    for _ in 0..5000 {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(attacker)?;
        match socket.connect(addr).await {
            Ok(mut s) => {
                use tokio::io::AsyncWriteExt;
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
                held.push(s);
            }
            Err(_) => continue,
        }
    }
    assert!(held.len() >= 4000, "only {} connections opened", held.len());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let resp = http.get(format!("{}/healthz", d.url)).send().await?;
        assert_eq!(resp.status(), 200);
        worst = worst.max(started.elapsed());
    }
    assert!(
        worst < Duration::from_secs(1),
        "/healthz took {worst:?} under attack"
    );
    println!("healthz under 5,000 half-open connections: worst of 20 {worst:?}");
    // The half-sent requests are cut off by the header timeout: every held socket is closed.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut closed = 0;
    for s in &mut held {
        use tokio::io::AsyncReadExt;
        // Whatever the daemon answered before closing (hyper may send a 408), then EOF.
        let mut rest = Vec::new();
        if let Ok(Ok(_) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(50), s.read_to_end(&mut rest)).await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, held.len(), "half-open connections still held");
    Ok(())
}
