//! Tenant isolation on every route that takes an id, and secrets kept out of the log.

use kalpana_e2e::{object_path, Daemon};
use serde_json::json;

#[tokio::test]
async fn another_user_gets_404_on_every_route_and_no_secret_reaches_the_log() -> anyhow::Result<()>
{
    let d = Daemon::start().await?;
    let (alice, alice_id) = d.new_user("alice").await?;
    let (mallory, _) = d.new_user("mallory").await?;
    let (_, carol_id) = d.new_user("carol").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "private" })).await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let (status, _) = alice
        .put_object(&id, "a/secret.txt", b"alice only".to_vec(), None)
        .await?;
    assert_eq!(status, 201);
    let (_, team) = alice
        .send("POST", "/api/teams", Some(json!({ "name": "alices" })))
        .await?;
    let team_id = team["id"].as_str().expect("team id").to_string();
    let (_, domain) = alice
        .send(
            "POST",
            "/api/domains",
            Some(json!({ "name": "alice.example" })),
        )
        .await?;
    let domain_id = domain["id"].as_str().expect("domain id").to_string();

    let obj = object_path(&id, "a/secret.txt");
    let routes: Vec<(&str, String, Option<serde_json::Value>)> = vec![
        ("GET", format!("/api/buckets/{id}"), None),
        (
            "PATCH",
            format!("/api/buckets/{id}"),
            Some(json!({ "description": "x" })),
        ),
        ("POST", format!("/api/buckets/{id}/start"), None),
        ("POST", format!("/api/buckets/{id}/stop"), None),
        (
            "POST",
            format!("/api/buckets/{id}/credentials/rotate"),
            None,
        ),
        ("GET", format!("/api/buckets/{id}/objects"), None),
        ("GET", obj.clone(), None),
        ("HEAD", obj.clone(), None),
        ("PUT", obj.clone(), None),
        ("DELETE", obj.clone(), None),
        ("GET", format!("{obj}/metadata"), None),
        (
            "POST",
            format!("/api/buckets/{id}/presigned-upload"),
            Some(json!({ "key": "k" })),
        ),
        (
            "POST",
            format!("/api/buckets/{id}/presigned-download"),
            Some(json!({ "key": "k" })),
        ),
        ("GET", format!("/api/buckets/{id}/stats"), None),
        (
            "POST",
            format!("/api/buckets/{id}/domain"),
            Some(json!({ "domainId": domain_id })),
        ),
        ("DELETE", format!("/api/buckets/{id}/domain"), None),
        (
            "POST",
            format!("/api/teams/{team_id}/members"),
            Some(json!({ "userId": carol_id })),
        ),
        (
            "DELETE",
            format!("/api/teams/{team_id}/members/{alice_id}"),
            None,
        ),
        ("DELETE", format!("/api/buckets/{id}"), None),
    ];
    let missing = "01a2000000000000000000000000dead";
    for (method, path, body) in &routes {
        let (status, answer) = mallory.send(method, path, body.clone()).await?;
        assert_eq!(status, 404, "{method} {path} as another user: {answer}");
        // Exactly as for an id that does not exist.
        let ghost = path.replace(&id, missing).replace(&team_id, missing);
        let (ghost_status, _) = mallory.send(method, &ghost, body.clone()).await?;
        assert_eq!(ghost_status, status, "{method} {ghost}");
    }
    // Mallory cannot link her bucket to Alice's domain either.
    let (status, mb) = mallory.create_bucket(json!({ "name": "mine" })).await?;
    assert_eq!(status, 201, "{mb}");
    let (status, _) = mallory
        .send(
            "POST",
            &format!("/api/buckets/{}/domain", mb["id"].as_str().expect("id")),
            Some(json!({ "domainId": domain_id })),
        )
        .await?;
    assert_eq!(status, 404);
    let (_, domains) = mallory.send("GET", "/api/domains", None).await?;
    assert_eq!(domains, json!([]));
    // Nothing changed for Alice.
    let resp = alice.request(reqwest::Method::GET, &obj).send().await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await?, "alice only");

    // The log never holds a token or a secret key the daemon handed out.
    let mut secrets = vec![
        d.admin_token.clone(),
        b["secretKey"].as_str().expect("secret").to_string(),
        mb["secretKey"].as_str().expect("secret").to_string(),
    ];
    for api in [&alice, &mallory] {
        secrets.extend(api.raw().2.map(String::from));
    }
    let log = d.log();
    assert!(
        log.len() > 1000,
        "the daemon logged too little to be checked"
    );
    for s in &secrets {
        assert!(
            !log.contains(s.as_str()),
            "a secret ({}…) is in the log",
            &s[..4]
        );
    }
    Ok(())
}
