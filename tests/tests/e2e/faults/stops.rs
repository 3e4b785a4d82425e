//! Stopping the daemon: SIGTERM mid-download and mid-provisioning, SIGKILL during store writes.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_a_download_and_exits_0() -> anyhow::Result<()> {
    let mut d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "slow" })).await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let data = pattern(48 << 20, 5);
    let (status, put) = alice.put_object(&id, "big", data.clone(), None).await?;
    assert_eq!(status, 201, "{put}");

    // An event stream must not hold the shutdown up.
    let events = alice
        .request(reqwest::Method::GET, "/api/events")
        .send()
        .await?;
    assert_eq!(events.status(), 200);
    let resp = alice
        .request(reqwest::Method::GET, &object_path(&id, "big"))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut got = Vec::with_capacity(data.len());
    while got.len() < 1 << 20 {
        got.extend_from_slice(&body.next().await.expect("first bytes")?);
    }
    d.signal("TERM")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No new connections once it is shutting down.
    let url = d.url.clone();
    let refused = reqwest::Client::new()
        .get(format!("{url}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(refused.is_err(), "a new request was accepted: {refused:?}");
    // The download in progress completes, slowly, with every byte.
    while let Some(chunk) = body.next().await {
        got.extend_from_slice(&chunk?);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(got.len(), data.len());
    assert!(got == data, "downloaded bytes differ");
    drop(events);
    let status = d.wait_exit(Duration::from_secs(20)).await?;
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(d.log().contains("shut down"));

    // The store was left whole: the bucket is there after a restart.
    let token = alice.raw().2.expect("token").to_string();
    d.spawn().await?;
    let alice = d.api(&token);
    let b = converged(&alice, &id).await?.expect("kept");
    assert_eq!(b["status"], "RUNNING");
    Ok(())
}

/// A clean stop while buckets are being provisioned: that work ends, or stops where the next
/// start picks it up, before the store lease is released. The store refuses (and logs) any
/// write after the release, so a task or request left running would show here.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_provisioning_writes_nothing_after_the_lease_is_released() -> anyhow::Result<()>
{
    let mut d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let mut ids = Vec::new();
    for i in 0..4 {
        // No `?wait=true`: the answer comes at once, provisioning goes on in the background.
        let body = json!({ "name": format!("stopping-{i}") });
        let (status, b) = alice.send("POST", "/api/buckets", Some(body)).await?;
        assert_eq!(status, 201, "{b}");
        assert_eq!(b["status"], "CREATING", "{b}");
        ids.push(b["id"].as_str().expect("id").to_string());
    }
    d.signal("TERM")?;
    let status = d.wait_exit(Duration::from_secs(60)).await?;
    assert_eq!(status.code(), Some(0), "{status}");
    let log = d.log();
    let released = log
        .find("store lease released")
        .expect("the lease release is logged");
    assert!(
        !log.contains("store write after the daemon closed the store for its stop"),
        "something wrote the store after it was closed for the stop:\n{}",
        &log[released..]
    );
    let after: Vec<&str> = log[released..].lines().skip(1).collect();
    assert!(
        after.iter().all(|l| l.contains("shut down")),
        "work went on after the lease was released: {after:#?}"
    );

    // What the stop cut short, the next start finishes.
    let token = alice.raw().2.expect("token").to_string();
    d.spawn().await?;
    let alice = d.api(&token);
    for id in &ids {
        let b = converged(&alice, id).await?.expect("kept");
        assert_eq!(b["status"], "RUNNING", "{b}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_store_survives_sigkill_during_writes() -> anyhow::Result<()> {
    let mut d = Daemon::start().await?;
    let admin = d.admin();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let admin = admin.clone();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let body = json!({ "name": format!("u{w}-{i}") });
                match admin.send("POST", "/api/users", Some(body)).await {
                    Ok((201, u)) => acked
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(u["token"].as_str().unwrap_or_default().to_string()),
                    _ => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    d.kill();
    for w in writers {
        w.await?;
    }
    let tokens = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        tokens.len() > 50,
        "only {} writes before the kill",
        tokens.len()
    );
    d.spawn().await?;
    let mut missing = 0;
    for t in &tokens {
        let (status, _) = d.api(t).send("GET", "/api/me", None).await?;
        if status != 200 {
            missing += 1;
        }
    }
    println!(
        "{} acknowledged user writes before SIGKILL, {missing} missing after restart",
        tokens.len()
    );
    assert_eq!(missing, 0);
    Ok(())
}
