//! Workspaces: a bucket's `workspaceId` names a workspace its creator can see; another tenant's
//! workspace is a 404; deleting one is refused while buckets are linked; v1 records, whose
//! `workspaceId` was any string, get workspaces at start-up.

use kalpana_domain::model::{new_id, now, BucketRecord, BucketStatus, User};
use kalpana_e2e::{Daemon, DaemonOptions};
use serde_json::json;

#[tokio::test]
async fn buckets_link_only_to_visible_workspaces_and_a_linked_workspace_stays() -> anyhow::Result<()>
{
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (bob, _) = d.new_user("bob").await?;
    let (status, w) = alice
        .send(
            "POST",
            "/api/workspaces",
            Some(json!({ "name": "dev box" })),
        )
        .await?;
    assert_eq!(status, 201, "{w}");
    let wid = w["id"].as_str().expect("id").to_string();
    let (status, bw) = bob
        .send("POST", "/api/workspaces", Some(json!({ "name": "bob's" })))
        .await?;
    assert_eq!(status, 201, "{bw}");
    let (status, e) = alice
        .send("POST", "/api/workspaces", Some(json!({ "name": "" })))
        .await?;
    assert_eq!(status, 400, "{e}");
    let (status, e) = alice
        .send(
            "POST",
            "/api/workspaces",
            Some(json!({ "name": "x", "teamId": "nope" })),
        )
        .await?;
    assert_eq!(status, 404, "{e}");

    // Another tenant sees none of it.
    let (_, list) = bob.send("GET", "/api/workspaces", None).await?;
    assert_eq!(
        list["workspaces"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
    for (method, path) in [
        ("GET", format!("/api/workspaces/{wid}/buckets")),
        ("DELETE", format!("/api/workspaces/{wid}")),
    ] {
        let (status, _) = bob.send(method, &path, None).await?;
        assert_eq!(status, 404, "{method} {path} as another user");
    }

    // A bucket links to a workspace its creator sees, never to another's or a made-up one.
    for bad in [bw["id"].as_str().expect("id"), "made-up"] {
        let (status, e) = alice
            .create_bucket(json!({ "name": "linked", "workspaceId": bad }))
            .await?;
        assert_eq!(status, 404, "{e}");
    }
    let (_, none) = alice.send("GET", "/api/buckets", None).await?;
    assert_eq!(
        none["buckets"].as_array().map(Vec::len),
        Some(0),
        "nothing stored: {none}"
    );
    let (status, b) = alice
        .create_bucket(json!({ "name": "linked", "workspaceId": wid }))
        .await?;
    assert_eq!(status, 201, "{b}");
    let (status, linked) = alice
        .send("GET", &format!("/api/workspaces/{wid}/buckets"), None)
        .await?;
    assert_eq!(status, 200, "{linked}");
    assert_eq!(linked["buckets"][0]["id"], b["id"], "{linked}");
    assert!(linked.to_string().find("secretKey").is_none());

    // Deleting a workspace with a linked bucket is refused, naming it; then allowed.
    let (status, e) = alice
        .send("DELETE", &format!("/api/workspaces/{wid}"), None)
        .await?;
    assert_eq!(status, 409, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("linked")),
        "{e}"
    );
    assert_eq!(
        alice
            .delete_bucket(b["id"].as_str().expect("id"), true)
            .await?,
        204
    );
    let (status, _) = alice
        .send("DELETE", &format!("/api/workspaces/{wid}"), None)
        .await?;
    assert_eq!(status, 204);
    let (_, list) = alice.send("GET", "/api/workspaces", None).await?;
    assert_eq!(
        list["workspaces"].as_array().map(Vec::len),
        Some(0),
        "{list}"
    );
    Ok(())
}

#[tokio::test]
async fn v1_workspace_strings_become_workspaces_at_start() -> anyhow::Result<()> {
    let instance = kalpana_e2e::new_instance();
    let data_dir = std::env::temp_dir().join(format!("kalpana-{instance}"));
    std::fs::create_dir_all(&data_dir)?;
    let tokens = [
        format!("kb_{}", uuid::Uuid::new_v4().simple()),
        format!("kb_{}", uuid::Uuid::new_v4().simple()),
    ];
    let mut ids = Vec::new();
    {
        let store = kalpana_domain::store::open(None, &data_dir).await?;
        for (i, token) in tokens.iter().enumerate() {
            let user = format!("v1-user-{i}");
            store
                .put_user(&User {
                    id: user.clone(),
                    name: user.clone(),
                    admin: false,
                    token_hash: kalpana_domain::secrets::hash_token(token),
                    created_at: now(),
                })
                .await?;
            // Both owners named the same free-form workspace in v1.
            let b = BucketRecord {
                workspace_id: Some("legacy-ws".into()),
                status: BucketStatus::Stopped,
                provisioned: true,
                host: "127.0.0.1".into(),
                access_key: "AK".into(),
                secret_key_enc: "sealed".into(),
                region: "us-east-1".into(),
                ..BucketRecord::new(
                    new_id(),
                    format!("legacy-{i}"),
                    user,
                    kalpana_manager_core::EngineKind::Seaweedfs,
                )
            };
            ids.push(b.id.clone());
            store.insert_bucket(&b).await?;
        }
    }
    let d = Daemon::start_in(DaemonOptions::default(), instance, data_dir).await?;
    let first = d.api(&tokens[0]);
    let second = d.api(&tokens[1]);
    let (_, w1) = first.send("GET", "/api/workspaces", None).await?;
    assert_eq!(w1["workspaces"][0]["id"], "legacy-ws", "{w1}");
    assert_eq!(w1["workspaces"][0]["name"], "legacy-ws");
    let (_, w2) = second.send("GET", "/api/workspaces", None).await?;
    let second_ws = w2["workspaces"][0]["id"].as_str().expect("id").to_string();
    assert_ne!(
        second_ws, "legacy-ws",
        "another owner's string gets its own workspace"
    );
    assert_eq!(w2["workspaces"][0]["name"], "legacy-ws");
    let (_, b2) = second
        .send("GET", &format!("/api/buckets/{}", ids[1]), None)
        .await?;
    assert_eq!(b2["workspaceId"], second_ws.as_str(), "{b2}");
    let (_, linked) = first
        .send("GET", "/api/workspaces/legacy-ws/buckets", None)
        .await?;
    assert_eq!(
        linked["buckets"].as_array().map(Vec::len),
        Some(1),
        "{linked}"
    );
    Ok(())
}
