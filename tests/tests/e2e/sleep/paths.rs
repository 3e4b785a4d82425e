//! The other ways to a sleeping bucket: Traefik (its route and its catch-all), presigned URLs,
//! the API's object routes; requests that arrive while it goes to sleep; the bounded queue.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kalpana_e2e::{get_bytes, object_path, pattern, sign_s3, Daemon, DaemonOptions};
use serde_json::json;

use super::{create, sleep, view, Bucket};

const BASE: &str = "sleepy.test";

#[tokio::test(flavor = "multi_thread")]
async fn traefik_presigned_urls_and_the_api_wake_a_sleeping_bucket() -> anyhow::Result<()> {
    let (traefik, d) =
        kalpana_e2e::routed_daemon(BASE, &[("KALPANA_TRAEFIK_ENTRYPOINTS", "web")]).await?;
    let (alice, _) = d.new_user("alice").await?;
    let b = create(&alice, json!({ "name": "routed" })).await?;
    let host = format!("routed.{BASE}");
    let origin = format!("http://{host}:{}", traefik.port);
    assert_eq!(b.endpoint, origin);
    let local: SocketAddr = ([127, 0, 0, 1], traefik.port).into();
    let http = reqwest::Client::builder()
        .resolve(&host, local)
        .timeout(Duration::from_secs(30))
        .build()?;
    let signed_get = |url: String| {
        let (http, access, secret) = (http.clone(), b.access.clone(), b.secret.clone());
        async move {
            let mut req = http.get(&url);
            for (k, v) in sign_s3("GET", &url, &access, &secret)? {
                req = req.header(k, v);
            }
            let resp = req.send().await?;
            anyhow::Ok((resp.status().as_u16(), resp.bytes().await?.to_vec()))
        }
    };
    let data = pattern(150_000, 9);
    // Until Traefik has the new container's route, its catch-all already passes requests on.
    let (status, body) = api_put(&alice, &b, "routed.bin", &data).await?;
    assert_eq!(status, 201, "{body}");
    let url = format!("{origin}/routed/routed.bin");

    // Through Traefik: the route of a stopped container is gone, its catch-all hands the request
    // to the daemon, which holds it, wakes the bucket and passes it on. One try each.
    for round in 0..2 {
        sleep(&alice, &b).await?;
        let (status, body) = signed_get(url.clone()).await?;
        assert_eq!(
            status,
            200,
            "round {round}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(body, data, "round {round}");
    }

    // A presigned URL (it points at the routed endpoint): the first GET is served.
    let (status, down) = alice
        .send(
            "POST",
            &format!("/api/buckets/{}/presigned-download", b.id),
            Some(json!({ "key": "routed.bin" })),
        )
        .await?;
    assert_eq!(status, 200, "{down}");
    sleep(&alice, &b).await?;
    assert_eq!(
        view(&alice, &b.id).await?["activity"]["state"],
        "asleep",
        "making a presigned URL wakes nothing"
    );
    let resp = http.get(down["url"].as_str().expect("url")).send().await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await?.to_vec(), data);

    // The API's object routes: a listing and a download wake it and are answered.
    sleep(&alice, &b).await?;
    let (status, page) = alice
        .send("GET", &format!("/api/buckets/{}/objects", b.id), None)
        .await?;
    assert_eq!(status, 200, "{page}");
    assert!(page.to_string().contains("routed.bin"), "{page}");
    sleep(&alice, &b).await?;
    let resp = alice
        .request(reqwest::Method::GET, &object_path(&b.id, "routed.bin"))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await?.to_vec(), data);
    Ok(())
}

async fn api_put(
    api: &kalpana_e2e::Api,
    b: &Bucket,
    key: &str,
    data: &[u8],
) -> anyhow::Result<(u16, serde_json::Value)> {
    api.put_object(&b.id, key, data.to_vec(), None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_that_arrive_while_a_bucket_goes_to_sleep_are_served() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let b = create(&alice, json!({ "name": "restless" })).await?;
    let data = pattern(50_000, 2);
    b.put("k", &data).await?;
    // Four clients, two on kept-alive connections and two on a new connection each time, each
    // pausing 200–600 ms between requests: the bucket can go to sleep between them, and some
    // arrive while its container stops or starts.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for (n, fresh) in [false, true, false, true].into_iter().enumerate() {
        let (stop, ok, failed, errors) = (stop.clone(), ok.clone(), failed.clone(), errors.clone());
        let (endpoint, access, secret, name) = (
            b.endpoint.clone(),
            b.access.clone(),
            b.secret.clone(),
            b.name.clone(),
        );
        let data = data.clone();
        clients.push(tokio::spawn(async move {
            let kept = kalpana_e2e::s3_client_no_retries(&endpoint, &access, &secret);
            while !stop.load(Ordering::SeqCst) {
                let s3 = if fresh {
                    kalpana_e2e::s3_client_no_retries(&endpoint, &access, &secret)
                } else {
                    kept.clone()
                };
                match get_bytes(&s3, &name, "k").await {
                    Ok(got) if got == data => ok.fetch_add(1, Ordering::SeqCst),
                    Ok(_) => failed.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        errors
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(format!("{e:?}"));
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
                let pause = 200 + (n as u64 * 97 + ok.load(Ordering::SeqCst) as u64 * 131) % 400;
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }));
    }
    // Put it to sleep again and again while they run: each sleep is refused (in use) or
    // happens, and every request meanwhile is held and served.
    let held_before = super::metric(&d, "kalpana_requests_held_total{outcome=\"served\"}").await?;
    let mut slept = 0;
    for _ in 0..8 {
        let (status, v) = alice
            .send("POST", &format!("/api/buckets/{}/sleep", b.id), None)
            .await?;
        match status {
            200 => slept += 1,
            409 => {}
            other => panic!("sleep answered {other}: {v}"),
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await?;
    }
    let errors = errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(failed.load(Ordering::SeqCst), 0, "errors: {errors:?}");
    assert!(ok.load(Ordering::SeqCst) > 20, "the clients ran");
    assert!(
        slept >= 1,
        "the bucket went to sleep under traffic at least once"
    );
    let held = super::metric(&d, "kalpana_requests_held_total{outcome=\"served\"}").await?;
    assert!(
        held > held_before,
        "requests were held while it slept and then served"
    );
    println!(
        "{slept} sleeps under traffic, {} requests served, {} of them held",
        ok.load(Ordering::SeqCst),
        held - held_before
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wake_queue_is_bounded_and_says_when_to_come_back() -> anyhow::Result<()> {
    let d = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_WAKE_QUEUE".into(), "4".into())],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let b = create(&alice, json!({ "name": "queued" })).await?;
    b.put("k", b"v").await?;
    sleep(&alice, &b).await?;
    let http = reqwest::Client::new();
    let url = format!("{}/{}/k", b.endpoint, b.name);
    let calls = (0..16).map(|_| {
        let (http, url, access, secret) = (
            http.clone(),
            url.clone(),
            b.access.clone(),
            b.secret.clone(),
        );
        tokio::spawn(async move {
            let mut req = http.get(&url);
            for (k, v) in sign_s3("GET", &url, &access, &secret)? {
                req = req.header(k, v);
            }
            let resp = req.send().await?;
            let retry = resp.headers().get("retry-after").is_some();
            anyhow::Ok((resp.status().as_u16(), retry, resp.text().await?))
        })
    });
    let (mut served, mut refused) = (0, 0);
    for r in futures::future::join_all(calls).await {
        let (status, retry, body) = r??;
        match status {
            200 => served += 1,
            503 => {
                assert!(retry, "a refused request says when to come back");
                assert!(body.contains("holds 4 requests"), "{body}");
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!(served >= 4, "the queue's requests are served ({served})");
    assert!(refused >= 1, "beyond the queue: 503 ({served} served)");
    Ok(())
}
