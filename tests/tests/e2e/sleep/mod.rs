//! Sleep and wake: a sleeping bucket's container is stopped, and the first request by any path
//! (direct port, Traefik, the API, a presigned URL) is held while it starts and then served by
//! the engine. Every S3 client here has retries off: one refused connection, 502 or 503 fails.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use kalpana_e2e::{docker_inspect, get_bytes, pattern, s3_client_no_retries, Api, Daemon};
use serde_json::{json, Value};

mod paths;
mod restarts;

/// A bucket as the test knows it.
struct Bucket {
    id: String,
    name: String,
    endpoint: String,
    access: String,
    secret: String,
}

impl Bucket {
    fn of(b: &Value) -> Self {
        Bucket {
            id: b["id"].as_str().expect("id").to_string(),
            name: b["name"].as_str().expect("name").to_string(),
            endpoint: b["endpoint"].as_str().expect("endpoint").to_string(),
            access: b["accessKey"].as_str().expect("accessKey").to_string(),
            secret: b["secretKey"].as_str().unwrap_or_default().to_string(),
        }
    }

    /// A new client (so a new connection) with retries off.
    fn s3(&self) -> aws_sdk_s3::Client {
        s3_client_no_retries(&self.endpoint, &self.access, &self.secret)
    }

    fn container(&self) -> String {
        format!("kalpana-bucket-{}", self.id)
    }

    fn running(&self) -> anyhow::Result<bool> {
        Ok(docker_inspect(&self.container(), "{{.State.Running}}")? == "true")
    }

    async fn put(&self, key: &str, body: &[u8]) -> anyhow::Result<()> {
        self.s3()
            .put_object()
            .bucket(&self.name)
            .key(key)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await?;
        Ok(())
    }
}

async fn create(api: &Api, body: Value) -> anyhow::Result<Bucket> {
    let (status, b) = api.create_bucket(body).await?;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["status"], "RUNNING", "{b}");
    Ok(Bucket::of(&b))
}

async fn view(api: &Api, id: &str) -> anyhow::Result<Value> {
    let (status, b) = api.send("GET", &format!("/api/buckets/{id}"), None).await?;
    assert_eq!(status, 200, "{b}");
    Ok(b)
}

/// Puts the bucket to sleep by hand and checks it is: the view says so and Docker agrees.
async fn sleep(api: &Api, b: &Bucket) -> anyhow::Result<()> {
    let (status, v) = api
        .send("POST", &format!("/api/buckets/{}/sleep", b.id), None)
        .await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["activity"]["state"], "asleep", "{v}");
    assert_eq!(
        v["status"], "RUNNING",
        "a sleeping bucket stays RUNNING: {v}"
    );
    assert!(
        !b.running()?,
        "the container of a sleeping bucket is stopped"
    );
    Ok(())
}

/// Waits until the view's activity says `state`.
async fn wait_state(api: &Api, id: &str, state: &str, within: Duration) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        let v = view(api, id).await?;
        if v["activity"]["state"] == state {
            return Ok(v);
        }
        if started.elapsed() > within {
            anyhow::bail!("bucket {id} never became {state} in {within:?}: {v}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A metric's value from `/metrics` (0 when absent).
async fn metric(d: &Daemon, series: &str) -> anyhow::Result<f64> {
    let text = d
        .anonymous()
        .request(reqwest::Method::GET, "/metrics")
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_direct_port_wakes_a_bucket_for_a_get_a_put_and_a_burst_of_24() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let b = create(&alice, json!({ "name": "drowsy" })).await?;
    let data = pattern(300_000, 3);
    b.put("first", &data).await?;

    // A GET on a new connection wakes it and is answered by the engine.
    sleep(&alice, &b).await?;
    let t = Instant::now();
    assert_eq!(get_bytes(&b.s3(), &b.name, "first").await?, data);
    let woke_in = t.elapsed();
    assert!(b.running()?);
    let v = view(&alice, &b.id).await?;
    assert_eq!(v["activity"]["state"], "awake", "{v}");
    let wake_ms = v["activity"]["lastWakeMillis"]
        .as_u64()
        .expect("lastWakeMillis");
    assert!(wake_ms > 0 && wake_ms as u128 <= woke_in.as_millis(), "{v}");
    assert!(v["activity"]["lastRequestAt"].is_string(), "{v}");

    // A PUT wakes it too, and the object is there after it.
    sleep(&alice, &b).await?;
    let put = pattern(200_000, 4);
    b.put("woken-by-put", &put).await?;
    assert_eq!(get_bytes(&b.s3(), &b.name, "woken-by-put").await?, put);

    // 24 first requests at once, each on its own connection: all held, all served.
    sleep(&alice, &b).await?;
    let served_before = metric(&d, "kalpana_requests_held_total{outcome=\"served\"}").await?;
    let burst = (0..24).map(|_| {
        let (s3, name) = (b.s3(), b.name.clone());
        tokio::spawn(async move { get_bytes(&s3, &name, "first").await })
    });
    for got in futures::future::join_all(burst).await {
        assert_eq!(got??, data, "every request of the burst is served");
    }
    let served = metric(&d, "kalpana_requests_held_total{outcome=\"served\"}").await?;
    assert!(served - served_before >= 24.0, "{served_before} → {served}");
    assert!(metric(&d, "kalpana_wake_duration_seconds_count").await? >= 3.0);

    // The log says what happened, a line per change.
    let log = d.log();
    assert!(log.contains("bucket fell asleep") && log.contains("bucket woke"));

    // Nobody else may put it to sleep or wake it: another tenant sees no such bucket.
    let (bob, _) = d.new_user("bob").await?;
    for action in ["sleep", "wake"] {
        let (status, e) = bob
            .send("POST", &format!("/api/buckets/{}/{action}", b.id), None)
            .await?;
        assert_eq!(status, 404, "{action} by another tenant: {e}");
    }
    assert!(b.running()?, "the refused sleep did nothing");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_buckets_fall_asleep_and_the_daemons_own_loops_do_not_wake_them() -> anyhow::Result<()>
{
    // Recounts every second and fleet samples every second: none of it is a client's.
    let d = Daemon::start_with(kalpana_e2e::DaemonOptions {
        env: vec![
            ("KALPANA_STATS_SYNC_SECS".into(), "1".into()),
            ("KALPANA_FLEET_SAMPLE_SECS".into(), "1".into()),
        ],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let b = create(&alice, json!({ "name": "idler", "sleepAfterSecs": 3 })).await?;
    let other = create(&alice, json!({ "name": "wakeful" })).await?;
    b.put("k", b"kept").await?;
    let v = wait_state(&alice, &b.id, "asleep", Duration::from_secs(20)).await?;
    assert_eq!(v["sleepAfterSecs"], 3, "{v}");
    assert!(!b.running()?);
    // The gauge is counted once a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        metric(&d, "kalpana_buckets_asleep").await?,
        1.0,
        "only the bucket set to sleep sleeps"
    );
    assert!(
        other.running()?,
        "a bucket without the setting never sleeps"
    );

    // Seconds of the daemon's own loops, the bucket list, its view and its stats: still asleep.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for path in [
        "/api/buckets".to_string(),
        format!("/api/buckets/{}", b.id),
        format!("/api/buckets/{}/stats", b.id),
    ] {
        let (status, body) = alice.send("GET", &path, None).await?;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let v = view(&alice, &b.id).await?;
    assert_eq!(v["activity"]["state"], "asleep", "{v}");
    assert!(!b.running()?, "nothing but a client woke it");

    // A snapshot archives it asleep: the archive is taken from the stopped container's volume.
    let path = format!("/api/buckets/{}/snapshots", b.id);
    let (status, snap) = alice
        .send("POST", &path, Some(json!({ "targetBucketId": other.id })))
        .await?;
    assert_eq!(status, 202, "{snap}");
    let snap_path = format!("{path}/{}", snap["id"].as_str().expect("id"));
    let started = Instant::now();
    let done = loop {
        let (_, s) = alice.send("GET", &snap_path, None).await?;
        if s["status"] == "DONE" || s["status"] == "FAILED" {
            break s;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "{s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["status"], "DONE", "{done}");
    assert!(!b.running()?, "the snapshot did not wake it");
    assert_eq!(view(&alice, &b.id).await?["activity"]["state"], "asleep");

    // PATCH sleepAfterSecs: 0 → it never sleeps again once woken; a bad value is a 400.
    let (status, e) = alice
        .send(
            "PATCH",
            &format!("/api/buckets/{}", b.id),
            Some(json!({ "sleepAfterSecs": 9_999_999_999u64 })),
        )
        .await?;
    assert_eq!(status, 400, "{e}");
    let (status, v) = alice
        .send(
            "PATCH",
            &format!("/api/buckets/{}", b.id),
            Some(json!({ "sleepAfterSecs": 0 })),
        )
        .await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["sleepAfterSecs"], 0);
    assert_eq!(
        v["activity"]["state"], "asleep",
        "a PATCH of the setting wakes nothing"
    );
    assert_eq!(get_bytes(&b.s3(), &b.name, "k").await?, b"kept");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(b.running()?, "sleepAfterSecs 0 never sleeps");
    Ok(())
}
