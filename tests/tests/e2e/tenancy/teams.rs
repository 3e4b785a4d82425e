//! Team roles decide what a member may do, and a demoted admin loses what they made and saw but
//! still reads.

use std::time::{Duration, Instant};

use kalpana_e2e::{object_path, s3_client, Api, Daemon};
use serde_json::{json, Value};

use crate::keys::{engine_identities, list_refused_within, lists};

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

/// A team of `owner` with `members` (user id, role); its id.
pub(super) async fn team_with(owner: &Api, members: &[(&str, &str)]) -> anyhow::Result<String> {
    let (status, team) = owner
        .send("POST", "/api/teams", Some(json!({ "name": "crew" })))
        .await?;
    assert_eq!(status, 201, "{team}");
    let tid = team["id"].as_str().expect("id").to_string();
    for (user, role) in members {
        let (status, body) = owner
            .send(
                "POST",
                &format!("/api/teams/{tid}/members"),
                Some(json!({ "userId": user, "role": role })),
            )
            .await?;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["rotated"],
            json!([]),
            "adding a member rotates nothing: {body}"
        );
    }
    Ok(tid)
}

/// `POST /api/buckets/{id}/keys` by `api`; the key (with its secret).
pub(super) async fn make_key(
    api: &Api,
    id: &str,
    name: &str,
    access: &str,
) -> anyhow::Result<Value> {
    let (status, k) = api
        .send(
            "POST",
            &format!("/api/buckets/{id}/keys"),
            Some(json!({ "name": name, "access": access })),
        )
        .await?;
    assert_eq!(status, 201, "{k}");
    Ok(k)
}

pub(super) fn client_of(
    endpoint: &str,
    access_key: &Value,
    secret_key: &Value,
) -> aws_sdk_s3::Client {
    s3_client(
        endpoint,
        access_key.as_str().expect("accessKey"),
        secret_key.as_str().expect("secretKey"),
    )
}

/// The engine's identities as the daemon's key list says they should be: `kb-<keyId>` → its one
/// access key.
pub(super) async fn known_identities(
    api: &Api,
    id: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, Vec<String>>> {
    let (status, list) = api
        .send("GET", &format!("/api/buckets/{id}/keys"), None)
        .await?;
    assert_eq!(status, 200, "{list}");
    Ok(list["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            (
                format!("kb-{}", k["id"].as_str().expect("id")),
                vec![k["accessKey"].as_str().expect("accessKey").to_string()],
            )
        })
        .collect())
}

/// The team part of a member removal or demotion answer: the team's fields beside `rotated`,
/// `notRotated` and `revokedKeys`.
/// The answer of a removal names the team under `team` (as it always did); that of a role
/// change carries the team's fields themselves (as `POST …/members` always answered), both beside
/// rotated, notRotated and revokedKeys.
pub(super) fn assert_team_answer(answer: &Value, tid: &str) {
    let team = if answer.get("team").is_some() {
        &answer["team"]
    } else {
        answer
    };
    assert_eq!(
        (&team["id"], &team["name"]),
        (&json!(tid), &json!("crew")),
        "the answer carries the team beside rotated, notRotated and revokedKeys: {}",
        redact(answer)
    );
    for field in ["rotated", "notRotated", "revokedKeys"] {
        assert!(answer[field].is_array(), "{field}: {}", redact(answer));
    }
}

/// Tries `s3` listing `bucket` every 100 ms until `done` is set (connection failures while the
/// container is replaced included); who, when it last listed after `since` (none: never), and
/// what the calls answered as it changed (`time asked: answer`).
pub(super) async fn watch_lists(
    who: &'static str,
    s3: aws_sdk_s3::Client,
    bucket: &'static str,
    since: Instant,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (&'static str, Option<Duration>, Vec<String>) {
    let mut seen: Vec<String> = Vec::new();
    let mut last_listed = None;
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        let asked = since.elapsed();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            s3.list_objects_v2().bucket(bucket).send(),
        )
        .await;
        let answer = match &r {
            Err(_) => "no answer in 5 s".to_string(),
            Ok(Ok(_)) => {
                last_listed = Some(since.elapsed());
                "listed".to_string()
            }
            Ok(Err(aws_sdk_s3::error::SdkError::ServiceError(e))) => {
                format!("{}", e.raw().status().as_u16())
            }
            Ok(Err(e)) => format!("{e}"),
        };
        if !seen.last().is_some_and(|l| l.ends_with(&answer)) {
            seen.push(format!("{asked:.2?}: {answer}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (who, last_listed, seen)
}

/// A log line without its terminal colours.
pub(super) fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `answer` without its secrets, for messages.
pub(super) fn redact(answer: &Value) -> String {
    let mut v = answer.clone();
    for r in v["rotated"].as_array_mut().into_iter().flatten() {
        r["secretKey"] = json!("…");
    }
    v.to_string()
}

#[tokio::test]
async fn a_demoted_admin_loses_what_they_made_and_saw_but_still_reads() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (erin, erin_id) = d.new_user("erin").await?;
    let tid = team_with(&alice, &[(&erin_id, "admin")]).await?;
    let (status, b) = alice
        .create_bucket(json!({ "name": "plans", "teamId": tid }))
        .await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let endpoint = b["endpoint"].as_str().expect("endpoint").to_string();
    let obj = object_path(&id, "doc.txt");
    let (status, _) = alice
        .put_object(&id, "doc.txt", b"v1".to_vec(), None)
        .await?;
    assert_eq!(status, 201);
    // Erin, an admin, rotates the root secret (and so sees it) and makes a key.
    let (status, r) = erin
        .send(
            "POST",
            &format!("/api/buckets/{id}/credentials/rotate"),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{r}");
    let erin_root = client_of(&endpoint, &r["accessKey"], &r["secretKey"]);
    assert!(lists(&erin_root, "plans").await, "the root secret erin saw");
    let ek = make_key(&erin, &id, "erin-rw", "read-write").await?;
    let erin_key = client_of(&endpoint, &ek["accessKey"], &ek["secretKey"]);
    assert!(lists(&erin_key, "plans").await, "erin's key");
    let ak = make_key(&alice, &id, "alice-r", "read").await?;
    let alice_key = client_of(&endpoint, &ak["accessKey"], &ak["secretKey"]);
    assert!(lists(&alice_key, "plans").await, "alice's key");

    let started = Instant::now();
    let (status, demoted) = alice
        .send(
            "POST",
            &format!("/api/teams/{tid}/members"),
            Some(json!({ "userId": erin_id, "role": "viewer" })),
        )
        .await?;
    let answered = Instant::now();
    assert_eq!(status, 200, "{}", redact(&demoted));
    println!(
        "demotion answered in {:?}: {}",
        answered - started,
        redact(&demoted)
    );
    let rotated = demoted["rotated"].as_array().expect("rotated");
    assert_eq!(rotated.len(), 1, "{}", redact(&demoted));
    assert_eq!(rotated[0]["bucketId"], id.as_str());
    assert_eq!(demoted["notRotated"], json!([]), "{}", redact(&demoted));
    assert_eq!(
        demoted["revokedKeys"],
        json!([format!(
            "plans/erin-rw ({})",
            ek["accessKey"].as_str().expect("accessKey")
        )]),
        "{}",
        redact(&demoted)
    );
    for (who, s3) in [
        ("erin's key", &erin_key),
        ("the root secret erin saw", &erin_root),
    ] {
        let took = list_refused_within(who, s3, "plans", answered, Duration::from_secs(5)).await;
        println!("{who} refused {took:?} after the demotion answered");
    }
    assert!(lists(&alice_key, "plans").await, "alice's key was ended");
    let engine = engine_identities(&id)?;
    assert_eq!(engine, known_identities(&alice, &id).await?, "{engine:?}");

    // A viewer now: reads objects through the API, and nothing more.
    let resp = erin.request(reqwest::Method::GET, &obj).send().await?;
    assert_eq!(resp.status(), 200, "a viewer reads");
    assert_eq!(resp.bytes().await?.as_ref(), b"v1");
    let (status, _) = erin
        .put_object(&id, "doc.txt", b"v2".to_vec(), None)
        .await?;
    assert_eq!(status, 403, "a viewer writes");
    for (method, path) in [
        ("GET", format!("/api/buckets/{id}/keys")),
        ("POST", format!("/api/buckets/{id}/credentials/rotate")),
        (
            "POST",
            format!(
                "/api/buckets/{id}/keys/{}/rotate",
                ak["id"].as_str().expect("id")
            ),
        ),
    ] {
        let (status, e) = erin.send(method, &path, None).await?;
        assert_eq!(status, 403, "a viewer {method} {path}: {e}");
    }
    let (status, e) = erin
        .send(
            "POST",
            &format!("/api/buckets/{id}/keys"),
            Some(json!({ "name": "again", "access": "read" })),
        )
        .await?;
    assert_eq!(status, 403, "a viewer makes a key: {e}");
    // Last: the shape of the answer, once everything it did was checked.
    assert_team_answer(&demoted, &tid);
    Ok(())
}
