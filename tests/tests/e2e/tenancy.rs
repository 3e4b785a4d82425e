//! Between tenants: per-owner limits, team roles and what a removed member keeps, keys stored
//! exactly as given, private files, and a daemon that half-open connections cannot starve.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use kalpana_e2e::{enc, object_path, s3_client, Daemon, DaemonOptions};
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
async fn team_roles_decide_and_a_removed_member_keeps_nothing() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (bob, bob_id) = d.new_user("bob").await?;
    let (carol, carol_id) = d.new_user("carol").await?;
    let (dave, dave_id) = d.new_user("dave").await?;
    let (status, team) = alice
        .send("POST", "/api/teams", Some(json!({ "name": "crew" })))
        .await?;
    assert_eq!(status, 201, "{team}");
    let tid = team["id"].as_str().expect("id").to_string();
    let members = format!("/api/teams/{tid}/members");
    for (user, role) in [
        (&bob_id, "member"),
        (&carol_id, "viewer"),
        (&dave_id, "admin"),
    ] {
        let (status, body) = alice
            .send(
                "POST",
                &members,
                Some(json!({ "userId": user, "role": role })),
            )
            .await?;
        assert_eq!(status, 200, "{body}");
    }
    // Only the owner names admins; a team admin manages the rest.
    let (status, _) = dave
        .send(
            "POST",
            &members,
            Some(json!({ "userId": carol_id, "role": "admin" })),
        )
        .await?;
    assert_eq!(status, 403);

    // Bob (a member) makes a team bucket: he holds its root secret and a presigned URL.
    let (status, b) = bob
        .create_bucket(json!({ "name": "shared", "teamId": tid }))
        .await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let obj = object_path(&id, "doc.txt");
    let (status, _) = bob.put_object(&id, "doc.txt", b"v1".to_vec(), None).await?;
    assert_eq!(status, 201);
    let (status, _) = carol
        .put_object(&id, "doc.txt", b"v2".to_vec(), None)
        .await?;
    assert_eq!(status, 403, "a viewer writes nothing");
    let resp = carol.request(reqwest::Method::GET, &obj).send().await?;
    assert_eq!(resp.status(), 200, "a viewer reads");
    for (who, api) in [("member", &bob), ("viewer", &carol)] {
        for (method, path, body) in [
            ("DELETE", format!("/api/buckets/{id}"), None),
            (
                "POST",
                format!("/api/buckets/{id}/credentials/rotate"),
                None,
            ),
            (
                "PATCH",
                format!("/api/buckets/{id}"),
                Some(json!({ "description": "x" })),
            ),
            ("POST", format!("/api/buckets/{id}/stop"), None),
        ] {
            let (status, answer) = api.send(method, &path, body).await?;
            assert_eq!(status, 403, "{who} {method} {path}: {answer}");
        }
    }
    let (status, body) = dave
        .send(
            "PATCH",
            &format!("/api/buckets/{id}"),
            Some(json!({ "description": "ours" })),
        )
        .await?;
    assert_eq!(status, 200, "a team admin manages: {body}");
    // A team bucket's presigned URLs live an hour at most.
    let (status, body) = bob
        .send(
            "POST",
            &format!("/api/buckets/{id}/presigned-download"),
            Some(json!({ "key": "doc.txt", "expiresIn": 7200 })),
        )
        .await?;
    assert_eq!(status, 400, "{body}");
    let (status, share) = bob
        .send(
            "POST",
            &format!("/api/buckets/{id}/presigned-download"),
            Some(json!({ "key": "doc.txt" })),
        )
        .await?;
    assert_eq!(status, 200, "{share}");
    let share = share["url"].as_str().expect("url").to_string();
    assert_eq!(reqwest::get(&share).await?.status(), 200);
    let bob_s3 = s3_client(
        b["endpoint"].as_str().expect("endpoint"),
        b["accessKey"].as_str().expect("access"),
        b["secretKey"].as_str().expect("secret"),
    );
    assert!(bob_s3
        .list_objects_v2()
        .bucket("shared")
        .send()
        .await
        .is_ok());

    // Bob leaves: the root secret is rotated, shown once to the remover.
    let (status, removed) = dave
        .send("DELETE", &format!("{members}/{bob_id}"), None)
        .await?;
    assert_eq!(status, 200, "{removed}");
    let rotated = removed["rotated"].as_array().expect("rotated");
    assert_eq!(rotated.len(), 1, "{removed}");
    assert_eq!(rotated[0]["bucketId"], id.as_str());
    let new_secret = rotated[0]["secretKey"]
        .as_str()
        .expect("secret")
        .to_string();
    assert_ne!(new_secret, b["secretKey"].as_str().expect("old"));
    // Everything bob had is refused: the API, his copy of the secret, his presigned URL.
    let (status, _) = bob.send("GET", &format!("/api/buckets/{id}"), None).await?;
    assert_eq!(status, 404);
    let (_, listed) = bob.send("GET", "/api/buckets", None).await?;
    assert_eq!(listed["buckets"], json!([]), "{listed}");
    let err = bob_s3
        .list_objects_v2()
        .bucket("shared")
        .send()
        .await
        .expect_err("the old secret is refused by the engine");
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(403),
        "{err:?}"
    );
    assert_eq!(
        reqwest::get(&share).await?.status(),
        403,
        "old presigned URL"
    );
    // The team keeps working with the new secret.
    let s3 = s3_client(
        b["endpoint"].as_str().expect("endpoint"),
        b["accessKey"].as_str().expect("access"),
        &new_secret,
    );
    assert_eq!(
        kalpana_e2e::get_bytes(&s3, "shared", "doc.txt").await?,
        b"v1"
    );
    let resp = alice.request(reqwest::Method::GET, &obj).send().await?;
    assert_eq!(resp.status(), 200);
    // Only an owner or admin removes members; the owner cannot be removed.
    let (status, _) = carol
        .send("DELETE", &format!("{members}/{dave_id}"), None)
        .await?;
    assert_eq!(status, 403);
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
