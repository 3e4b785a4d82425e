//! Buckets routed through a real Traefik by their subdomain, and domain links.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kalpana_e2e::{docker_inspect, sign_s3, Daemon, DaemonOptions, Traefik};
use serde_json::json;

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
    let traefik = Traefik::start().await?;
    let port = traefik.port;
    let d = Daemon::start_with(DaemonOptions {
        env: vec![
            ("KALPANA_BASE_DOMAIN".into(), BASE.into()),
            ("KALPANA_PUBLIC_PORT".into(), port.to_string()),
            ("KALPANA_TRAEFIK_ENTRYPOINTS".into(), "web".into()),
        ],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "routed" })).await?;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["status"], "RUNNING", "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let default_host = format!("routed.{BASE}");
    let origin = format!("http://{default_host}:{port}");
    assert_eq!(b["endpoint"], origin.as_str());

    let container = format!("kalpana-bucket-{id}");
    assert_eq!(
        docker_inspect(
            &container,
            "{{index .Config.Labels \"traefik.docker.network\"}}"
        )?,
        "kalpana-test"
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
