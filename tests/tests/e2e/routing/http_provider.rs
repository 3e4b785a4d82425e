//! Traefik fed by the daemon over its HTTP provider (`KALPANA_TRAEFIK_PROVIDER=http`, static file
//! `traefik/traefik-http.yml`, no Docker provider): the daemon's `GET /api/traefik/config` is
//! the only source of routes, so every request served by a bucket router below was routed by
//! what the daemon answered. Traefik's access log says which router served each request.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use kalpana_e2e::{
    docker_inspect, get_bytes, pattern, s3_client_to, Daemon, DaemonOptions, Traefik,
};
use serde_json::{json, Value};

const BASE: &str = "fed.test";
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A bucket as the test knows it.
struct Bucket {
    id: String,
    name: String,
    port: u64,
    endpoint: String,
    access: String,
    secret: String,
}

impl Bucket {
    fn of(b: &Value) -> Self {
        Bucket {
            id: b["id"].as_str().expect("id").to_string(),
            name: b["name"].as_str().expect("name").to_string(),
            port: b["port"].as_u64().expect("port"),
            endpoint: b["endpoint"].as_str().expect("endpoint").to_string(),
            access: b["accessKey"].as_str().expect("accessKey").to_string(),
            secret: b["secretKey"].as_str().expect("secretKey").to_string(),
        }
    }

    /// A new aws-sdk-s3 client (so new connections), retries off, connecting to Traefik with
    /// the routed host.
    fn s3(&self) -> aws_sdk_s3::Client {
        s3_client_to(&self.endpoint, &self.access, &self.secret, LOCAL)
    }

    fn router(&self) -> String {
        format!("kalpana-{}", self.id)
    }
}

/// `GET /api/traefik/config` with `authorization` as the header (none when `None`).
async fn feed(d: &Daemon, authorization: Option<&str>) -> anyhow::Result<(u16, String)> {
    let mut req = d
        .anonymous()
        .request(reqwest::Method::GET, "/api/traefik/config");
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = req.send().await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

/// Waits until Traefik (after a poll of the daemon) routes the bucket: its bucket exists for S3.
async fn wait_routed(b: &Bucket) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let got = b.s3().head_bucket().bucket(&b.name).send().await;
        if got.is_ok() {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            anyhow::bail!("{} was never routed: {got:?}", b.endpoint);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The access log entry of the latest request `method` to `host` with a status, waiting a
/// little for Traefik to write it.
async fn served(traefik: &Traefik, method: &str, host: &str) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        let found = traefik.access_log().into_iter().rev().find(|e| {
            e["RequestMethod"] == method
                && e["RequestHost"] == host
                && e["DownstreamStatus"].as_u64().is_some()
        });
        if let Some(e) = found {
            return Ok(e);
        }
        if started.elapsed() > Duration::from_secs(5) {
            anyhow::bail!(
                "no {method} to {host} in Traefik's access log:\n{:?}",
                traefik.access_log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn traefik_fed_by_the_daemon_routes_every_bucket_wakes_a_sleeper_and_sees_no_secret(
) -> anyhow::Result<()> {
    let token = format!("feed-{}", uuid::Uuid::new_v4().simple());
    let (traefik, d) =
        kalpana_e2e::routed_daemon_http(BASE, &token, &[("KALPANA_TRAEFIK_ENTRYPOINTS", "web")])
            .await?;
    let (alice, alice_token) = d.new_user("alice").await?;
    let (bob, bob_token) = d.new_user("bob").await?;
    let (status, a) = alice.create_bucket(json!({ "name": "fed" })).await?;
    assert_eq!(status, 201, "{a}");
    assert_eq!(a["status"], "RUNNING", "{a}");
    let (status, b) = bob.create_bucket(json!({ "name": "bobs" })).await?;
    assert_eq!(status, 201, "{b}");
    let (a, b) = (Bucket::of(&a), Bucket::of(&b));
    let a_host = format!("fed.{BASE}");
    let b_host = format!("bobs.{BASE}");
    assert_eq!(a.endpoint, format!("http://{a_host}:{}", traefik.port));

    // Only Traefik's token opens the feed: not none, not another, not the admin's or a user's.
    let bearer = |t: &str| format!("Bearer {t}");
    let refused = [
        ("no header", None),
        ("a wrong token", Some(bearer("feed-wrong"))),
        (
            "the token with a byte more",
            Some(bearer(&format!("{token}x"))),
        ),
        (
            "the token cut short",
            Some(bearer(&token[..token.len() - 1])),
        ),
        ("the token without Bearer", Some(token.clone())),
        ("the admin token", Some(bearer(&d.admin_token))),
        ("a user's token", Some(bearer(&alice_token))),
    ];
    for (who, authorization) in refused {
        let (status, body) = feed(&d, authorization.as_deref()).await?;
        assert_eq!(status, 401, "{who}: {body}");
        let err: Value = serde_json::from_str(&body)?;
        assert_eq!(err["error"]["code"], "unauthorized", "{who}: {body}");
        assert!(
            !body.contains(&a.id) && !body.contains(&a_host),
            "{who}: {body}"
        );
    }

    // With it: a router and a service per bucket of every user, to the daemon's listener on
    // the bucket's port (docker runtime), and the catch-all to the daemon's API.
    let (status, text) = feed(&d, Some(&bearer(&token))).await?;
    assert_eq!(status, 200, "{text}");
    let config: Value = serde_json::from_str(&text)?;
    let http = &config["http"];
    for (bucket, host) in [(&a, &a_host), (&b, &b_host)] {
        let r = &http["routers"][bucket.router()];
        assert_eq!(r["rule"], format!("Host(`{host}`)"), "{config}");
        assert_eq!(r["priority"], 1000, "{config}");
        assert_eq!(r["entryPoints"], json!(["web"]), "{config}");
        assert_eq!(r["service"], bucket.router(), "{config}");
        assert_eq!(
            http["services"][bucket.router()]["loadBalancer"]["servers"],
            json!([{ "url": format!("http://127.0.0.1:{}", bucket.port) }]),
            "{config}"
        );
    }
    let fallback = &http["routers"]["kalpana-fallback"];
    assert_eq!(fallback["priority"], 1, "{config}");
    assert_eq!(fallback["middlewares"], json!(["kalpana-fallback-prefix"]));
    assert_eq!(
        http["services"][fallback["service"].as_str().unwrap_or_default()]["loadBalancer"]
            ["servers"][0]["url"],
        d.url.as_str(),
        "{config}"
    );
    assert_eq!(
        http["routers"].as_object().map(|r| r.len()),
        Some(3),
        "{config}"
    );
    // Nothing secret: no key of either bucket, no token.
    for (what, secret) in [
        ("alice's access key", &a.access),
        ("alice's secret key", &a.secret),
        ("bob's access key", &b.access),
        ("bob's secret key", &b.secret),
        ("the admin token", &d.admin_token),
        ("alice's token", &alice_token),
        ("bob's token", &bob_token),
        ("the feed token", &token),
    ] {
        assert!(!text.contains(secret.as_str()), "{what} is in the feed");
    }

    // A real S3 client through Traefik, by the routed host: a put and a get, served by the
    // bucket's router from the feed (not the catch-all).
    wait_routed(&a).await?;
    let data = pattern(120_000, 3);
    a.s3()
        .put_object()
        .bucket(&a.name)
        .key("fed.bin")
        .body(ByteStream::from(data.clone()))
        .send()
        .await?;
    assert_eq!(get_bytes(&a.s3(), &a.name, "fed.bin").await?, data);
    let entry = served(&traefik, "GET", &a_host).await?;
    assert_eq!(
        entry["RouterName"],
        format!("{}@http", a.router()),
        "{entry}"
    );
    assert_eq!(entry["DownstreamStatus"], 200, "{entry}");
    let entry = served(&traefik, "PUT", &a_host).await?;
    assert_eq!(
        entry["RouterName"],
        format!("{}@http", a.router()),
        "{entry}"
    );

    // Bob's bucket is routed the same way, with his keys.
    wait_routed(&b).await?;
    b.s3()
        .put_object()
        .bucket(&b.name)
        .key("bob.txt")
        .body(ByteStream::from_static(b"bob's"))
        .send()
        .await?;
    assert_eq!(get_bytes(&b.s3(), &b.name, "bob.txt").await?, b"bob's");
    let entry = served(&traefik, "GET", &b_host).await?;
    assert_eq!(
        entry["RouterName"],
        format!("{}@http", b.router()),
        "{entry}"
    );
    // Alice's keys do not open bob's bucket through its route.
    let cross = s3_client_to(&b.endpoint, &a.access, &a.secret, LOCAL)
        .get_object()
        .bucket(&b.name)
        .key("bob.txt")
        .send()
        .await;
    assert!(cross.is_err(), "alice's keys read bob's object");

    // Asleep: its container is stopped, its route stays (to the daemon's listener), and one
    // GET through Traefik wakes it and is answered by the engine.
    let (status, v) = alice
        .send("POST", &format!("/api/buckets/{}/sleep", a.id), None)
        .await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["activity"]["state"], "asleep", "{v}");
    let container = format!("kalpana-bucket-{}", a.id);
    assert_eq!(docker_inspect(&container, "{{.State.Running}}")?, "false");
    let (status, text) = feed(&d, Some(&bearer(&token))).await?;
    assert_eq!(status, 200, "{text}");
    let asleep: Value = serde_json::from_str(&text)?;
    assert_eq!(
        asleep["http"]["services"][a.router()]["loadBalancer"]["servers"][0]["url"],
        format!("http://127.0.0.1:{}", a.port),
        "a sleeping bucket keeps its route to the daemon's listener: {asleep}"
    );
    let woke_at = Instant::now();
    assert_eq!(get_bytes(&a.s3(), &a.name, "fed.bin").await?, data);
    println!("woken through Traefik in {:?}", woke_at.elapsed());
    let (status, v) = alice
        .send("GET", &format!("/api/buckets/{}", a.id), None)
        .await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["activity"]["state"], "awake", "{v}");
    assert_eq!(docker_inspect(&container, "{{.State.Running}}")?, "true");
    let entry = served(&traefik, "GET", &a_host).await?;
    assert_eq!(
        entry["RouterName"],
        format!("{}@http", a.router()),
        "{entry}"
    );
    assert_eq!(entry["DownstreamStatus"], 200, "{entry}");

    // A host of no bucket goes to the daemon by the catch-all, which says so.
    let resp = reqwest::Client::builder()
        .resolve(&format!("nothing.{BASE}"), (LOCAL, traefik.port).into())
        .timeout(Duration::from_secs(10))
        .build()?
        .get(format!("http://nothing.{BASE}:{}/x", traefik.port))
        .send()
        .await?;
    assert_eq!(resp.status(), 404);
    assert!(resp.text().await?.contains("NoSuchBucket"));
    let entry = served(&traefik, "GET", &format!("nothing.{BASE}")).await?;
    assert_eq!(entry["RouterName"], "kalpana-fallback@http", "{entry}");

    assert!(
        !d.log().contains(&token),
        "the feed token is in the daemon log"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_feed_is_off_with_the_docker_provider_and_http_needs_its_token() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (status, body) = feed(&d, Some(&format!("Bearer {}", d.admin_token))).await?;
    assert_eq!(status, 404, "{body}");
    let err: Value = serde_json::from_str(&body)?;
    assert_eq!(err["error"]["code"], "not_found", "{body}");
    drop(d);

    let refused = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_TRAEFIK_PROVIDER".into(), "http".into())],
        ..Default::default()
    })
    .await;
    let Err(e) = refused else {
        anyhow::bail!("a daemon with KALPANA_TRAEFIK_PROVIDER=http and no token started");
    };
    let e = format!("{e:#}");
    assert!(
        e.contains("KALPANA_TRAEFIK_TOKEN is required"),
        "the refusal names the variable: {e}"
    );
    Ok(())
}
