//! A member removed from a team keeps nothing: not their keys, not an identity the daemon did not
//! make, not the root secret of a bucket they made.

use std::time::{Duration, Instant};

use kalpana_e2e::{s3_client, Daemon};
use serde_json::{json, Value};

use super::teams::{
    assert_team_answer, client_of, known_identities, make_key, plain, redact, team_with,
    watch_lists,
};
use crate::keys::{
    engine_identities, iam_refused, inject_access_key, inject_identity, list_allowed_within,
    list_refused_within, lists,
};

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

    let bob_stream = events(&bob).await?;
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

    // Nor its events: the stream he had open carries nothing of it once he is out, while a
    // member's carries the stop.
    let mut bob_events = bob_stream.bytes_stream();
    let mut alice_events = events(&alice).await?.bytes_stream();
    let (status, e) = alice
        .send("POST", &format!("/api/buckets/{id}/stop"), None)
        .await?;
    assert_eq!(status, 200, "{e}");
    let alice_saw = read_for(&mut alice_events, Duration::from_secs(10), "STOPPED").await;
    assert!(alice_saw.contains(&id), "a member's stream: {alice_saw}");
    let bob_saw = read_for(&mut bob_events, Duration::from_secs(2), "STOPPED").await;
    assert!(
        !bob_saw.contains("STOPPED"),
        "the removed creator's stream: {bob_saw}"
    );

    // Last: the shape of the answer, once everything it did was checked.
    assert_team_answer(&removed, &tid);
    Ok(())
}

/// The event stream of `api`'s user, open.
async fn events(api: &kalpana_e2e::Api) -> anyhow::Result<reqwest::Response> {
    let (http, base, token) = api.raw();
    let resp = http
        .get(format!("{base}/api/events"))
        .bearer_auth(token.unwrap_or_default())
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 200, "events: {}", resp.status());
    Ok(resp)
}

/// What `stream` carries within `within`, or until it holds `until`.
async fn read_for(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    within: Duration,
    until: &str,
) -> String {
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + within;
    let mut text = String::new();
    while !text.contains(until) {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(c))) => text.push_str(&String::from_utf8_lossy(&c)),
            _ => break,
        }
    }
    text
}
