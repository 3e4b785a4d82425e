//! Between tenants: per-owner limits, team roles and what a removed member keeps, keys stored
//! exactly as given, private files, and a daemon that half-open connections cannot starve.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use kalpana_e2e::{enc, object_path, s3_client, Api, Daemon, DaemonOptions};
use serde_json::{json, Value};

use crate::keys::{
    engine_identities, iam_refused, inject_access_key, inject_identity, list_allowed_within,
    list_refused_within, lists,
};

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

/// A team of `owner` with `members` (user id, role); its id.
async fn team_with(owner: &Api, members: &[(&str, &str)]) -> anyhow::Result<String> {
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
async fn make_key(api: &Api, id: &str, name: &str, access: &str) -> anyhow::Result<Value> {
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

fn client_of(endpoint: &str, access_key: &Value, secret_key: &Value) -> aws_sdk_s3::Client {
    s3_client(
        endpoint,
        access_key.as_str().expect("accessKey"),
        secret_key.as_str().expect("secretKey"),
    )
}

/// The engine's identities as the daemon's key list says they should be: `kb-<keyId>` → its one
/// access key.
async fn known_identities(
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
fn assert_team_answer(answer: &Value, tid: &str) {
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
async fn watch_lists(
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
fn plain(line: &str) -> String {
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
fn redact(answer: &Value) -> String {
    let mut v = answer.clone();
    for r in v["rotated"].as_array_mut().into_iter().flatten() {
        r["secretKey"] = json!("…");
    }
    v.to_string()
}

#[tokio::test]
async fn a_removed_admin_loses_their_keys_and_every_identity_the_daemon_did_not_make(
) -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (dave, dave_id) = d.new_user("dave").await?;
    let tid = team_with(&alice, &[(&dave_id, "admin")]).await?;
    let (status, b) = alice
        .create_bucket(json!({ "name": "vault", "teamId": tid }))
        .await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let endpoint = b["endpoint"].as_str().expect("endpoint").to_string();
    let root = client_of(&endpoint, &b["accessKey"], &b["secretKey"]);
    root.put_object()
        .bucket("vault")
        .key("doc.txt")
        .body(b"v1".to_vec().into())
        .send()
        .await?;

    // Dave (a team admin) makes a key; alice (the owner) another.
    let dk = make_key(&dave, &id, "dave-rw", "read-write").await?;
    assert_eq!(dk["createdBy"], dave_id.as_str(), "{dk}");
    let dave_s3 = client_of(&endpoint, &dk["accessKey"], &dk["secretKey"]);
    assert!(lists(&dave_s3, "vault").await, "dave's key lists");
    let ak = make_key(&alice, &id, "alice-ro", "read").await?;
    let alice_s3 = client_of(&endpoint, &ak["accessKey"], &ak["secretKey"]);
    assert!(lists(&alice_s3, "vault").await, "alice's key lists");

    // What the daemon did not make: an intruder user, and a key minted on alice's key's user.
    let intruder_sk = inject_identity(&id, "vault", "intruder", "AKINTRUDER0000000001")?;
    let intruder = s3_client(&endpoint, "AKINTRUDER0000000001", &intruder_sk);
    let took = list_allowed_within("intruder", &intruder, "vault", Duration::from_secs(5)).await;
    println!("injected intruder identity listed {took:?} after weed shell made it");
    let alice_user = format!("kb-{}", ak["id"].as_str().expect("id"));
    let minted_sk = inject_access_key(&id, &alice_user, "AKMINTED000000000001")?;
    let minted = s3_client(&endpoint, "AKMINTED000000000001", &minted_sk);
    let took = list_allowed_within("minted", &minted, "vault", Duration::from_secs(5)).await;
    println!("access key minted on {alice_user} listed {took:?} after weed shell made it");
    println!("engine identities before: {:?}", engine_identities(&id)?);

    // The root key cannot make IAM users on the S3 port.
    iam_refused(
        "root key",
        &endpoint,
        "/vault?list-type=2",
        &[
            "Action=CreateUser&UserName=x&Version=2010-05-08".to_string(),
            "Action=CreateAccessKey&UserName=intruder&Version=2010-05-08".to_string(),
        ],
        b["accessKey"].as_str().expect("access"),
        b["secretKey"].as_str().expect("secret"),
    )
    .await?;

    // Dave is removed. Meanwhile his key and the intruder are tried every 100 ms, to see when
    // each was first refused (the removal rotates the root secret: the container is replaced).
    let started = Instant::now();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchers: Vec<_> = [
        ("dave's key", dave_s3.clone()),
        ("the intruder", intruder.clone()),
    ]
    .into_iter()
    .map(|(who, s3)| tokio::spawn(watch_lists(who, s3, "vault", started, done.clone())))
    .collect();
    let (status, removed) = alice
        .send(
            "DELETE",
            &format!("/api/teams/{tid}/members/{dave_id}"),
            None,
        )
        .await?;
    let answered = Instant::now();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in watchers {
        let (who, last, seen) = w.await?;
        println!(
            "{who} during the removal (answered after {:?}): last listed {last:?} after it was asked; answers: {seen:?}",
            answered - started
        );
    }
    assert_eq!(status, 200, "{}", redact(&removed));
    println!(
        "removal answered in {:?}: {}",
        answered - started,
        redact(&removed)
    );
    let revoked: Vec<&str> = removed["revokedKeys"]
        .as_array()
        .expect("revokedKeys")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        revoked,
        [format!(
            "vault/dave-rw ({})",
            dk["accessKey"].as_str().expect("accessKey")
        )],
        "{}",
        redact(&removed)
    );
    let rotated = removed["rotated"].as_array().expect("rotated");
    assert_eq!(rotated.len(), 1, "{}", redact(&removed));
    assert_eq!(rotated[0]["bucketId"], id.as_str());
    assert_eq!(rotated[0]["name"], "vault");
    assert_eq!(removed["notRotated"], json!([]), "{}", redact(&removed));
    for (who, s3) in [
        ("dave's key", &dave_s3),
        ("the intruder", &intruder),
        ("the key minted on alice's key's user", &minted),
        ("the old root secret", &root),
    ] {
        let took = list_refused_within(who, s3, "vault", answered, Duration::from_secs(5)).await;
        println!(
            "{who} refused {took:?} after the removal answered ({:?} after it was asked)",
            answered - started + took
        );
    }
    for line in d.log().lines().filter(|l| {
        l.contains("credentials of the team's buckets")
            || l.contains("scoped key revoked")
            || l.contains("did not make")
            || l.contains("replacing the container")
    }) {
        println!("daemon: {}", plain(line));
    }
    // Alice's key (made by someone else) and the new root secret keep working.
    assert!(lists(&alice_s3, "vault").await, "alice's key was ended");
    let new_root = client_of(&endpoint, &b["accessKey"], &rotated[0]["secretKey"]);
    assert!(lists(&new_root, "vault").await, "the new root secret");
    let (status, _) = dave
        .send("GET", &format!("/api/buckets/{id}"), None)
        .await?;
    assert_eq!(status, 404);
    // The engine holds only the keys the daemon knows.
    let engine = engine_identities(&id)?;
    let known = known_identities(&alice, &id).await?;
    println!("engine identities after: {engine:?}");
    assert_eq!(known.len(), 1, "{known:?}");
    assert_eq!(
        engine, known,
        "the engine holds identities the daemon does not know"
    );
    // Last: the shape of the answer, once everything it did was checked.
    assert_team_answer(&removed, &tid);
    Ok(())
}

#[tokio::test]
async fn a_removed_member_loses_the_root_secret_of_the_bucket_they_made() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (bob, bob_id) = d.new_user("bob").await?;
    let tid = team_with(&alice, &[(&bob_id, "member")]).await?;
    // Bob (a member) makes a team bucket: he holds its root secret.
    let (status, b) = bob
        .create_bucket(json!({ "name": "bobs", "teamId": tid }))
        .await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let endpoint = b["endpoint"].as_str().expect("endpoint").to_string();
    let bob_root = client_of(&endpoint, &b["accessKey"], &b["secretKey"]);
    assert!(lists(&bob_root, "bobs").await);
    // A member does not manage keys, even on the bucket he made.
    let (status, e) = bob
        .send(
            "POST",
            &format!("/api/buckets/{id}/keys"),
            Some(json!({ "name": "mine", "access": "read" })),
        )
        .await?;
    assert_eq!(status, 403, "{e}");
    // What he could have made with the root secret on an older version: an IAM user.
    let intruder_sk = inject_identity(&id, "bobs", "intruder", "AKINTRUDER0000000001")?;
    let intruder = s3_client(&endpoint, "AKINTRUDER0000000001", &intruder_sk);
    let took = list_allowed_within("intruder", &intruder, "bobs", Duration::from_secs(5)).await;
    println!("injected intruder identity listed {took:?} after weed shell made it");

    let started = Instant::now();
    let (status, removed) = alice
        .send(
            "DELETE",
            &format!("/api/teams/{tid}/members/{bob_id}"),
            None,
        )
        .await?;
    let answered = Instant::now();
    assert_eq!(status, 200, "{}", redact(&removed));
    println!(
        "removal answered in {:?}: {}",
        answered - started,
        redact(&removed)
    );
    let rotated = removed["rotated"].as_array().expect("rotated");
    assert_eq!(rotated.len(), 1, "{}", redact(&removed));
    assert_eq!(rotated[0]["bucketId"], id.as_str());
    assert_eq!(removed["notRotated"], json!([]), "{}", redact(&removed));
    assert_eq!(removed["revokedKeys"], json!([]), "{}", redact(&removed));
    for (who, s3) in [
        ("bob's root secret", &bob_root),
        ("the intruder", &intruder),
    ] {
        let took = list_refused_within(who, s3, "bobs", answered, Duration::from_secs(5)).await;
        println!("{who} refused {took:?} after the removal answered");
    }
    let engine = engine_identities(&id)?;
    println!("engine identities after: {engine:?}");
    assert!(
        engine.is_empty(),
        "the engine keeps identities nobody made through the daemon: {engine:?}"
    );
    let new_root = client_of(&endpoint, &b["accessKey"], &rotated[0]["secretKey"]);
    assert!(lists(&new_root, "bobs").await, "the new root secret");
    // Last: the shape of the answer, once everything it did was checked.
    assert_team_answer(&removed, &tid);
    Ok(())
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
