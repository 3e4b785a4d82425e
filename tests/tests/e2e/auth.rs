//! Authentication, tenant isolation, teams, events, health.

use std::time::Duration;

use futures::StreamExt;
use kalpana_e2e::Daemon;
use serde_json::json;

#[tokio::test]
async fn tokens_teams_and_isolation() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (status, body) = d.anonymous().send("GET", "/api/buckets", None).await?;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = d
        .api("kb_not-a-token")
        .send("GET", "/api/buckets", None)
        .await?;
    assert_eq!(status, 401);

    let (alice, alice_id) = d.new_user("alice").await?;
    let (bob, bob_id) = d.new_user("bob").await?;
    // Only an admin creates users.
    let (status, _) = alice
        .send("POST", "/api/users", Some(json!({ "name": "eve" })))
        .await?;
    assert_eq!(status, 403);

    let (status, private) = alice.create_bucket(json!({ "name": "private" })).await?;
    assert_eq!(status, 201, "{private}");
    let pid = private["id"].as_str().expect("id").to_string();
    for (method, path) in [
        ("GET", format!("/api/buckets/{pid}")),
        ("PATCH", format!("/api/buckets/{pid}")),
        ("POST", format!("/api/buckets/{pid}/stop")),
        ("POST", format!("/api/buckets/{pid}/start")),
        ("DELETE", format!("/api/buckets/{pid}")),
        ("GET", "/api/buckets/does-not-exist".to_string()),
    ] {
        let body = (method == "PATCH").then(|| json!({ "description": "x" }));
        let (status, resp) = bob.send(method, &path, body).await?;
        assert_eq!(status, 404, "{method} {path}: {resp}");
        assert_eq!(resp["error"]["code"], "not_found");
    }
    let (_, list) = bob.send("GET", "/api/buckets", None).await?;
    assert_eq!(list["buckets"].as_array().map(Vec::len), Some(0));
    // The bucket is untouched by Bob's attempts.
    let (_, still) = alice
        .send("GET", &format!("/api/buckets/{pid}"), None)
        .await?;
    assert_eq!(still["status"], "RUNNING");

    // A team shares its buckets with its members, and only while they are members.
    let (status, team) = alice
        .send("POST", "/api/teams", Some(json!({ "name": "ops" })))
        .await?;
    assert_eq!(status, 201, "{team}");
    let tid = team["id"].as_str().expect("id").to_string();
    let (status, _) = bob
        .send(
            "POST",
            &format!("/api/teams/{tid}/members"),
            Some(json!({ "userId": bob_id })),
        )
        .await?;
    assert_eq!(status, 404, "a non-member cannot see the team");
    let (status, _) = alice
        .send(
            "POST",
            &format!("/api/teams/{tid}/members"),
            Some(json!({ "userId": bob_id })),
        )
        .await?;
    assert_eq!(status, 200);
    let (status, shared) = alice
        .create_bucket(json!({ "name": "shared", "teamId": tid }))
        .await?;
    assert_eq!(status, 201, "{shared}");
    let sid = shared["id"].as_str().expect("id").to_string();
    let (status, seen) = bob
        .send("GET", &format!("/api/buckets/{sid}"), None)
        .await?;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["userId"], alice_id.as_str());
    let (_, list) = bob
        .send("GET", &format!("/api/buckets?teamId={tid}"), None)
        .await?;
    assert_eq!(list["buckets"].as_array().map(Vec::len), Some(1));
    let (status, _) = bob
        .send(
            "POST",
            "/api/buckets",
            Some(json!({ "name": "x-team", "teamId": "nope" })),
        )
        .await?;
    assert_eq!(status, 404);
    let (status, _) = alice
        .send(
            "DELETE",
            &format!("/api/teams/{tid}/members/{bob_id}"),
            None,
        )
        .await?;
    assert_eq!(status, 200);
    let (status, _) = bob
        .send("GET", &format!("/api/buckets/{sid}"), None)
        .await?;
    assert_eq!(status, 404, "a removed member loses access at once");
    Ok(())
}

#[tokio::test]
async fn list_filters_and_paging() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    // A bucket's workspaceId names a workspace the caller sees (issue 19).
    let mut ws = Vec::new();
    for name in ["w1", "w2"] {
        let (status, w) = alice
            .send("POST", "/api/workspaces", Some(json!({ "name": name })))
            .await?;
        assert_eq!(status, 201, "{w}");
        ws.push(w["id"].as_str().expect("id").to_string());
    }
    for (name, w) in [("ws-a-1", &ws[0]), ("ws-a-2", &ws[0]), ("ws-b-1", &ws[1])] {
        let (status, b) = alice
            .create_bucket(json!({ "name": name, "workspaceId": w }))
            .await?;
        assert_eq!(status, 201, "{b}");
    }
    let (_, w1) = alice
        .send("GET", &format!("/api/buckets?workspaceId={}", ws[0]), None)
        .await?;
    assert_eq!(w1["buckets"].as_array().map(Vec::len), Some(2));
    let (_, page1) = alice.send("GET", "/api/buckets?limit=2", None).await?;
    assert_eq!(page1["buckets"].as_array().map(Vec::len), Some(2));
    let cursor = page1["nextCursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let (_, page2) = alice
        .send(
            "GET",
            &format!("/api/buckets?limit=2&cursor={cursor}"),
            None,
        )
        .await?;
    assert_eq!(page2["buckets"].as_array().map(Vec::len), Some(1));
    assert!(page2["nextCursor"].is_null());
    let (_, running) = alice
        .send("GET", "/api/buckets?status=running", None)
        .await?;
    assert_eq!(running["buckets"].as_array().map(Vec::len), Some(3));
    let (_, stopped) = alice
        .send("GET", "/api/buckets?status=STOPPED", None)
        .await?;
    assert_eq!(stopped["buckets"].as_array().map(Vec::len), Some(0));
    for bad in ["?limit=0", "?limit=1001", "?status=SLEEPING", "?bogus=1"] {
        let (status, body) = alice
            .send("GET", &format!("/api/buckets{bad}"), None)
            .await?;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    Ok(())
}

#[tokio::test]
async fn events_stream_status_changes_of_own_buckets_only() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (bob, _) = d.new_user("bob").await?;
    let (http, base, token) = alice.raw();
    let resp = http
        .get(format!("{base}/api/events"))
        .bearer_auth(token.unwrap_or_default())
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    let (bhttp, bbase, btoken) = bob.raw();
    let bob_resp = bhttp
        .get(format!("{bbase}/api/events"))
        .bearer_auth(btoken.unwrap_or_default())
        .send()
        .await?;
    let (status, b) = alice.create_bucket(json!({ "name": "evented" })).await?;
    assert_eq!(status, 201, "{b}");
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !text.contains("\"status\":\"RUNNING\"") {
        let chunk = tokio::time::timeout_at(deadline, body.next()).await?;
        match chunk {
            Some(c) => text.push_str(&String::from_utf8_lossy(&c?)),
            None => break,
        }
    }
    assert!(text.contains("event: bucket.status"), "{text}");
    assert!(text.contains("\"status\":\"CREATING\""), "{text}");
    assert!(text.contains("\"status\":\"RUNNING\""), "{text}");
    assert!(!text.contains("secret"), "{text}");
    // Bob's stream carries nothing of Alice's bucket.
    let mut bob_body = bob_resp.bytes_stream();
    let bob_text = match tokio::time::timeout(Duration::from_millis(500), bob_body.next()).await {
        Ok(Some(c)) => String::from_utf8_lossy(&c?).to_string(),
        _ => String::new(),
    };
    assert!(!bob_text.contains("evented"), "{bob_text}");
    Ok(())
}

#[tokio::test]
async fn health_and_readiness() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (status, body) = d.anonymous().send("GET", "/healthz", None).await?;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = d.anonymous().send("GET", "/readyz", None).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["docker"], "ok");
    assert_eq!(body["store"], "ok");
    let (status, body) = d.anonymous().send("GET", "/api/nothing-here", None).await?;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    Ok(())
}
