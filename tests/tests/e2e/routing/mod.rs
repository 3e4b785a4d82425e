//! Buckets routed through a real Traefik by their subdomain, and domain links; `http_provider`:
//! Traefik fed by the daemon instead of container labels.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kalpana_e2e::{docker_inspect, sign_s3, Daemon, DaemonOptions, Traefik};
use serde_json::json;

mod http_provider;

const BASE: &str = "buckets.test";

struct Routed {
    http: reqwest::Client,
    access: String,
    secret: String,
}

impl Routed {
    /// A signed S3 request to `url` through Traefik; returns status and body.
    async fn s3(
        &self,
        method: &str,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut req = self
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes())?, url);
        for (k, v) in sign_s3(method, url, &self.access, &self.secret)? {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await?;
        Ok((resp.status().as_u16(), resp.bytes().await?.to_vec()))
    }

    /// Polls until a signed GET of `url` answers `want` (routes go live or away asynchronously).
    async fn wait_for(&self, url: &str, want: &[u16]) -> anyhow::Result<Vec<u8>> {
        let started = Instant::now();
        loop {
            let got = self.s3("GET", url, None).await;
            if let Ok((status, body)) = &got {
                if want.contains(status) {
                    return Ok(body.clone());
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                anyhow::bail!(
                    "{url} never answered {want:?}; last: {:?}",
                    got.map(|(s, _)| s)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn traefik_routes_subdomains_presigned_urls_and_domain_links() -> anyhow::Result<()> {
    let (traefik, d) =
        kalpana_e2e::routed_daemon(BASE, &[("KALPANA_TRAEFIK_ENTRYPOINTS", "web")]).await?;
    let port = traefik.port;
    let (alice, _) = d.new_user("alice").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "routed" })).await?;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["status"], "RUNNING", "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let default_host = format!("routed.{BASE}");
    let origin = format!("http://{default_host}:{port}");
    assert_eq!(b["endpoint"], origin.as_str());

    let container = format!("kalpana-bucket-{id}");
    // Traefik routes to the daemon's listener on the bucket's port, never to the container.
    assert_eq!(
        docker_inspect(
            &container,
            &format!(
                "{{{{index .Config.Labels \"traefik.http.services.kalpana-{id}.loadbalancer.server.url\"}}}}"
            )
        )?,
        format!("http://127.0.0.1:{}", b["port"].as_u64().expect("port"))
    );
    assert_eq!(
        docker_inspect(
            &container,
            &format!("{{{{index .Config.Labels \"traefik.http.routers.kalpana-{id}.rule\"}}}}")
        )?,
        format!("Host(`{default_host}`)")
    );

    let linked_host = "files.example.test";
    let local: SocketAddr = ([127, 0, 0, 1], port).into();
    let routed = Routed {
        http: reqwest::Client::builder()
            .resolve(&default_host, local)
            .resolve(linked_host, local)
            .timeout(Duration::from_secs(20))
            .build()?,
        access: b["accessKey"].as_str().expect("accessKey").to_string(),
        secret: b["secretKey"].as_str().expect("secretKey").to_string(),
    };

    // Signed S3 through Traefik by Host: the bucket, then a put and a get.
    routed.wait_for(&format!("{origin}/routed"), &[200]).await?;
    let data = kalpana_e2e::pattern(100_000, 5);
    let (status, body) = routed
        .s3(
            "PUT",
            &format!("{origin}/routed/via-traefik"),
            Some(data.clone()),
        )
        .await?;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, got) = routed
        .s3("GET", &format!("{origin}/routed/via-traefik"), None)
        .await?;
    assert_eq!(status, 200);
    assert_eq!(got, data);

    // Presigned URLs are made for the routed host and work through Traefik.
    let (status, up) = alice
        .send(
            "POST",
            &format!("/api/buckets/{id}/presigned-upload"),
            Some(json!({ "key": "presigned.txt" })),
        )
        .await?;
    assert_eq!(status, 200, "{up}");
    let url = up["url"].as_str().expect("url");
    assert!(
        url.starts_with(&format!("{origin}/routed/presigned.txt?")),
        "{url}"
    );
    let resp = routed.http.put(url).body("signed by URL").send().await?;
    assert_eq!(resp.status(), 200);
    let (_, down) = alice
        .send(
            "POST",
            &format!("/api/buckets/{id}/presigned-download"),
            Some(json!({ "key": "presigned.txt" })),
        )
        .await?;
    let resp = routed
        .http
        .get(down["url"].as_str().expect("url"))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await?, "signed by URL");

    // Link a domain: the container is replaced, both hosts route, the data is still there.
    let (status, domain) = alice
        .send(
            "POST",
            "/api/domains",
            Some(json!({ "name": "example.test" })),
        )
        .await?;
    assert_eq!(status, 201, "{domain}");
    let (status, dup) = alice
        .send(
            "POST",
            "/api/domains",
            Some(json!({ "name": "example.test" })),
        )
        .await?;
    assert_eq!(status, 409, "{dup}");
    let (status, _) = alice
        .send(
            "POST",
            "/api/domains",
            Some(json!({ "name": "not a domain" })),
        )
        .await?;
    assert_eq!(status, 400);
    // A domain routes nothing until control of it is proven (here: an admin approves it).
    let (status, refused) = alice
        .send(
            "POST",
            &format!("/api/buckets/{id}/domain"),
            Some(json!({ "domainId": domain["id"], "subdomain": "files" })),
        )
        .await?;
    assert_eq!(status, 409, "{refused}");
    let (status, approved) = d
        .admin()
        .send(
            "POST",
            &format!(
                "/api/domains/{}/approve",
                domain["id"].as_str().expect("id")
            ),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "verified");
    let before = docker_inspect(&container, "{{.Id}}")?;
    let (status, linked) = alice
        .send(
            "POST",
            &format!("/api/buckets/{id}/domain"),
            Some(json!({ "domainId": domain["id"], "subdomain": "files" })),
        )
        .await?;
    assert_eq!(status, 200, "{linked}");
    assert_eq!(
        linked["endpoint"],
        format!("http://{linked_host}:{port}").as_str()
    );
    assert_eq!(linked["port"], b["port"], "ports kept");
    assert_eq!(linked["accessKey"], b["accessKey"], "credentials kept");
    assert_eq!(linked["status"], "RUNNING");
    assert_ne!(
        docker_inspect(&container, "{{.Id}}")?,
        before,
        "container replaced"
    );
    let linked_origin = format!("http://{linked_host}:{port}");
    let got = routed
        .wait_for(&format!("{linked_origin}/routed/via-traefik"), &[200])
        .await?;
    assert_eq!(got, data, "data written before the link is there");
    let got = routed
        .wait_for(&format!("{origin}/routed/via-traefik"), &[200])
        .await?;
    assert_eq!(got, data, "the default host still routes");
    let (_, down) = alice
        .send(
            "POST",
            &format!("/api/buckets/{id}/presigned-download"),
            Some(json!({ "key": "presigned.txt" })),
        )
        .await?;
    assert!(
        down["url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&linked_origin)),
        "{down}"
    );
    assert_eq!(
        routed
            .http
            .get(down["url"].as_str().expect("url"))
            .send()
            .await?
            .status(),
        200
    );

    // Unlink: only the default host routes.
    let (status, unlinked) = alice
        .send("DELETE", &format!("/api/buckets/{id}/domain"), None)
        .await?;
    assert_eq!(status, 200, "{unlinked}");
    assert_eq!(unlinked["endpoint"], origin.as_str());
    let got = routed
        .wait_for(&format!("{origin}/routed/via-traefik"), &[200])
        .await?;
    assert_eq!(got, data);
    routed
        .wait_for(&format!("{linked_origin}/routed/via-traefik"), &[404])
        .await?;

    // Stopped: the route goes away.
    let (status, _) = alice
        .send("POST", &format!("/api/buckets/{id}/stop"), None)
        .await?;
    assert_eq!(status, 200);
    routed
        .wait_for(&format!("{origin}/routed/via-traefik"), &[404, 503])
        .await?;
    drop(traefik);
    Ok(())
}

/// Polls `url` until it serves the object again; returns every status seen, in order, once each
/// time it changes.
async fn statuses_until_back(
    http: &reqwest::Client,
    url: &str,
    first: &[u16],
) -> anyhow::Result<Vec<u16>> {
    let mut seen = first.to_vec();
    let started = Instant::now();
    loop {
        let resp = http.get(url).send().await?;
        let status = resp.status().as_u16();
        let body = resp.text().await?;
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        if status == 200 && body == "still here" && started.elapsed() > Duration::from_millis(200) {
            return Ok(seen);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the bucket never came back; statuses {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_bucket_whose_container_is_away_answers_503_and_no_other_traefik_routes_it(
) -> anyhow::Result<()> {
    let (traefik, d) = kalpana_e2e::routed_daemon(BASE, &[("KALPANA_RESYNC_SECS", "2")]).await?;
    let port = traefik.port;
    let (alice, _) = d.new_user("alice").await?;
    let (status, b) = alice
        .create_bucket(json!({ "name": "comeback", "publicAccess": true }))
        .await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let (status, _) = alice
        .put_object(&id, "page.txt", b"still here".to_vec(), None)
        .await?;
    assert_eq!(status, 201);
    let host = format!("comeback.{BASE}");
    let local: SocketAddr = ([127, 0, 0, 1], port).into();
    let http = reqwest::Client::builder()
        .resolve(&host, local)
        .resolve(&format!("nobody.{BASE}"), local)
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("http://{host}:{port}/comeback/page.txt");
    let started = Instant::now();
    while http
        .get(&url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "never routed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A host no bucket has: the daemon's 404, in S3's words.
    let resp = http
        .get(format!("http://nobody.{BASE}:{port}/nobody/x"))
        .send()
        .await?;
    assert_eq!(resp.status(), 404);
    assert!(resp.text().await?.contains("NoSuchBucket"));

    // Stopped by hand: reconcile has it back at once; meanwhile its host never answers 404
    // (Traefik may answer 502 for the moment its route still points at the stopped container).
    let out = std::process::Command::new("docker")
        .args(["stop", "-t", "1", &format!("kalpana-bucket-{id}")])
        .output()?;
    assert!(out.status.success());
    let seen = statuses_until_back(&http, &url, &[]).await?;
    assert!(
        !seen.contains(&404),
        "a 404 while the bucket was away: {seen:?}"
    );
    println!("routed host while its container was stopped by hand: {seen:?}");

    // Stopped through the API: its route is gone, and the catch-all answers 503 with
    // Retry-After (S3 clients retry), not 404 (S3 clients give up), until it is started.
    let (status, _) = alice
        .send("POST", &format!("/api/buckets/{id}/stop"), None)
        .await?;
    assert_eq!(status, 200);
    let started = Instant::now();
    let retry_after = loop {
        let resp = http.get(&url).send().await?;
        let status = resp.status().as_u16();
        assert_ne!(status, 404, "a stopped bucket's host answered 404");
        if status == 503 {
            let retry = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            assert!(resp.text().await?.contains("ServiceUnavailable"));
            break retry;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the stopped bucket's host answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(retry_after.as_deref(), Some("2"));
    let (status, _) = alice
        .send("POST", &format!("/api/buckets/{id}/start"), None)
        .await?;
    assert_eq!(status, 200);
    let seen = statuses_until_back(&http, &url, &[503]).await?;
    assert!(
        !seen.contains(&404),
        "a 404 while the bucket came back: {seen:?}"
    );

    // A second daemon's Traefik (constrained to its own instance) routes nothing of the first.
    let other = kalpana_e2e::new_instance();
    let traefik2 = Traefik::start(&other).await?;
    let d2 = Daemon::start_with(DaemonOptions {
        instance: Some(other),
        env: vec![("KALPANA_BASE_DOMAIN".into(), BASE.into())],
        ..Default::default()
    })
    .await?;
    traefik2.fall_back_to(&d2.url)?;
    let local2: SocketAddr = ([127, 0, 0, 1], traefik2.port).into();
    let http2 = reqwest::Client::builder()
        .resolve(&host, local2)
        .timeout(Duration::from_secs(10))
        .build()?;
    let url2 = format!("http://{host}:{}/comeback/page.txt", traefik2.port);
    let started = Instant::now();
    loop {
        let resp = http2.get(&url2).send().await?;
        let status = resp.status().as_u16();
        assert_ne!(status, 200, "another daemon's Traefik served the bucket");
        if status == 404 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "the second Traefik answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((traefik, traefik2));
    Ok(())
}
