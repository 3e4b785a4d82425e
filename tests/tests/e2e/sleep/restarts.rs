//! A daemon restart keeps sleeping buckets asleep and wakeable; a daemon killed while a bucket
//! goes to sleep or wakes comes back to a bucket that serves. Also run on MongoDB.

use std::time::Duration;

use kalpana_e2e::{get_bytes, pattern, Api, Daemon};
use serde_json::json;

use super::{create, sleep, view, wait_state, Bucket};

#[tokio::test(flavor = "multi_thread")]
async fn sleeping_buckets_survive_restarts_and_kills_while_sleeping_or_waking() -> anyhow::Result<()>
{
    let mut d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let token = alice.raw().2.expect("token").to_string();
    let b = create(&alice, json!({ "name": "dormant" })).await?;
    let data = pattern(120_000, 6);
    b.put("k", &data).await?;

    // A clean restart: still asleep, its container stopped, and the first request wakes it.
    sleep(&alice, &b).await?;
    d.kill();
    d.spawn().await?;
    let alice = d.api(&token);
    let v = view(&alice, &b.id).await?;
    assert_eq!(v["activity"]["state"], "asleep", "{v}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !b.running()?,
        "reconcile after the restart leaves it asleep"
    );
    assert_eq!(get_bytes(&b.s3(), &b.name, "k").await?, data);
    assert_eq!(view(&alice, &b.id).await?["activity"]["state"], "awake");

    // Killed after the container stopped, before the record says asleep: the bucket comes
    // back serving (reconcile brings the container back, or the first request wakes it).
    let id = b.id.clone();
    let (alice, _) = d
        .crash_at(&token, "sleep.stopped", move |api| async move {
            api.send("POST", &format!("/api/buckets/{id}/sleep"), None)
                .await
                .map(|_| ())
        })
        .await?;
    served_after_a_crash(&alice, &b, &data, "sleep.stopped").await?;

    // Killed after the container started for a wake, before the record says awake: reconcile
    // records it awake (its container runs) and it serves.
    sleep(&alice, &b).await?;
    let waker = clone_of(&b);
    d.crash_at(&token, "wake.started", move |_| async move {
        // The direct port is the daemon's: this request dies with it.
        let _ = get_bytes(&waker.s3(), &waker.name, "k").await;
    })
    .await?;
    let alice = d.api(&token);
    let v = wait_state(&alice, &b.id, "awake", Duration::from_secs(30)).await?;
    assert_eq!(v["status"], "RUNNING", "{v}");
    served_after_a_crash(&alice, &b, &data, "wake.started").await?;

    // And it can go to sleep and wake again as if nothing happened.
    sleep(&alice, &b).await?;
    assert_eq!(get_bytes(&b.s3(), &b.name, "k").await?, data);
    Ok(())
}

fn clone_of(b: &Bucket) -> Bucket {
    Bucket {
        id: b.id.clone(),
        name: b.name.clone(),
        endpoint: b.endpoint.clone(),
        access: b.access.clone(),
        secret: b.secret.clone(),
    }
}

/// After a crash: RUNNING, not restarting, and the data served on the first try.
async fn served_after_a_crash(
    api: &Api,
    b: &Bucket,
    data: &[u8],
    point: &str,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    loop {
        let v = view(api, &b.id).await?;
        if v["status"] == "RUNNING" && v["phase"].is_null() {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "{point}: never settled: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(get_bytes(&b.s3(), &b.name, "k").await?, data, "{point}");
    Ok(())
}
