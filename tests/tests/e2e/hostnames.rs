//! No hostname can be taken from its owner: the base domain is the daemon's, other domains route
//! only once their control is proven in DNS (or an admin approves them), and one host routes
//! to one bucket.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kalpana_e2e::probe::Dnsmasq;
use kalpana_e2e::{docker_inspect, Daemon, DaemonOptions};
use serde_json::json;

const BASE: &str = "tenants.test";

/// Polls an anonymous GET of `url` until it answers `want` with `body`.
async fn wait_body(http: &reqwest::Client, url: &str, want: u16, body: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(url).send().await {
            let status = r.status().as_u16();
            if status == want && r.text().await? == body {
                return Ok(());
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "{url} never answered {want} {body:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn hostname_takeover_and_pre_claims_are_refused_and_traefik_serves_the_owner(
) -> anyhow::Result<()> {
    let (traefik, d) = kalpana_e2e::routed_daemon(BASE, &[]).await?;
    let port = traefik.port;
    let (alice, _) = d.new_user("alice").await?;
    let (mallory, _) = d.new_user("mallory").await?;
    let (status, a) = alice
        .create_bucket(json!({ "name": "alicedata", "publicAccess": true }))
        .await?;
    assert_eq!(status, 201, "{a}");
    let aid = a["id"].as_str().expect("id").to_string();
    let (status, _) = alice
        .put_object(&aid, "index.txt", b"alice's".to_vec(), None)
        .await?;
    assert_eq!(status, 201);
    let (status, m) = mallory
        .create_bucket(json!({ "name": "squat", "publicAccess": true }))
        .await?;
    assert_eq!(status, 201, "{m}");
    let mid = m["id"].as_str().expect("id").to_string();
    let (status, _) = mallory
        .put_object(&mid, "index.txt", b"mallory's".to_vec(), None)
        .await?;
    assert_eq!(status, 201);

    // The base domain and every name under it belong to the daemon.
    for name in [BASE, "alicedata.tenants.test", "future.tenants.test"] {
        let (status, body) = mallory
            .send("POST", "/api/domains", Some(json!({ "name": name })))
            .await?;
        assert_eq!(status, 409, "registering {name}: {body}");
    }
    // A domain of her own is pending and links nothing until proven.
    let (status, evil) = mallory
        .send(
            "POST",
            "/api/domains",
            Some(json!({ "name": "evil.example" })),
        )
        .await?;
    assert_eq!(status, 201, "{evil}");
    assert_eq!(evil["status"], "pending");
    let evil_id = evil["id"].as_str().expect("id").to_string();
    let link = |sub: &str| json!({ "domainId": evil_id, "subdomain": sub });
    let (status, body) = mallory
        .send(
            "POST",
            &format!("/api/buckets/{mid}/domain"),
            Some(link("www")),
        )
        .await?;
    assert_eq!(status, 409, "link to an unverified domain: {body}");
    assert!(
        docker_inspect(
            &format!("kalpana-bucket-{mid}"),
            &format!("{{{{index .Config.Labels \"traefik.http.routers.kalpana-{mid}.rule\"}}}}")
        )? == format!("Host(`squat.{BASE}`)"),
        "nothing new is routed"
    );

    // Every bucket router carries one explicit priority: rule length never decides.
    for id in [&aid, &mid] {
        assert_eq!(
            docker_inspect(
                &format!("kalpana-bucket-{id}"),
                &format!(
                    "{{{{index .Config.Labels \"traefik.http.routers.kalpana-{id}.priority\"}}}}"
                )
            )?,
            "1000"
        );
    }

    // Pre-claiming a future bucket's default host fails the same way; the bucket made later
    // gets its host and its traffic.
    let (status, f) = alice
        .create_bucket(json!({ "name": "future", "publicAccess": true }))
        .await?;
    assert_eq!(status, 201, "{f}");
    let fid = f["id"].as_str().expect("id").to_string();
    let (status, _) = alice
        .put_object(&fid, "index.txt", b"future's".to_vec(), None)
        .await?;
    assert_eq!(status, 201);

    // Through the real Traefik, each host serves its owner's objects, anonymously.
    let local: SocketAddr = ([127, 0, 0, 1], port).into();
    let http = reqwest::Client::builder()
        .resolve(&format!("alicedata.{BASE}"), local)
        .resolve(&format!("future.{BASE}"), local)
        .resolve(&format!("squat.{BASE}"), local)
        .timeout(Duration::from_secs(20))
        .build()?;
    for (host, bucket, body) in [
        ("alicedata", "alicedata", "alice's"),
        ("future", "future", "future's"),
        ("squat", "squat", "mallory's"),
    ] {
        wait_body(
            &http,
            &format!("http://{host}.{BASE}:{port}/{bucket}/index.txt"),
            200,
            body,
        )
        .await?;
    }

    // Two buckets never share a linked host: Alice links a proven domain, Mallory cannot take
    // the same host for her bucket even with the domain's owner's approval of her own domain.
    let (status, shared) = alice
        .send(
            "POST",
            "/api/domains",
            Some(json!({ "name": "shared.example" })),
        )
        .await?;
    assert_eq!(status, 201, "{shared}");
    let shared_id = shared["id"].as_str().expect("id");
    let (status, _) = d
        .admin()
        .send("POST", &format!("/api/domains/{shared_id}/approve"), None)
        .await?;
    assert_eq!(status, 200);
    let (status, body) = alice
        .send(
            "POST",
            &format!("/api/buckets/{aid}/domain"),
            Some(json!({ "domainId": shared_id, "subdomain": "files" })),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alice
        .send(
            "POST",
            &format!("/api/buckets/{fid}/domain"),
            Some(json!({ "domainId": shared_id, "subdomain": "files" })),
        )
        .await?;
    assert_eq!(
        status, 409,
        "a second bucket on files.shared.example: {body}"
    );
    drop(traefik);
    Ok(())
}

#[tokio::test]
async fn domains_are_verified_by_a_dns_txt_record() -> anyhow::Result<()> {
    let dns_port = Dnsmasq::free_port()?;
    let d = Daemon::start_with(DaemonOptions {
        env: vec![
            ("KALPANA_BASE_DOMAIN".into(), BASE.into()),
            (
                "KALPANA_DNS_RESOLVER".into(),
                format!("127.0.0.1:{dns_port}"),
            ),
        ],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let (status, domain) = alice
        .send(
            "POST",
            "/api/domains",
            Some(json!({ "name": "proven.example" })),
        )
        .await?;
    assert_eq!(status, 201, "{domain}");
    assert_eq!(domain["status"], "pending");
    let id = domain["id"].as_str().expect("id").to_string();
    let record = domain["verification"]["recordName"]
        .as_str()
        .expect("record name")
        .to_string();
    let value = domain["verification"]["value"]
        .as_str()
        .expect("value")
        .to_string();
    assert_eq!(record, "_kalpana-challenge.proven.example");
    assert_eq!(domain["verification"]["recordType"], "TXT");
    let verify = format!("/api/domains/{id}/verify");

    // No DNS server answering at all: still pending.
    let (status, body) = alice.send("POST", &verify, None).await?;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "verification_failed");

    // A server that knows nothing of the name: pending.
    let dns = Dnsmasq::start(dns_port, &[("_kalpana-challenge.other.example", "x")]).await?;
    let (status, body) = alice.send("POST", &verify, None).await?;
    assert_eq!(status, 422, "{body}");
    drop(dns);

    // The record with another value: pending, and it says so.
    let dns = Dnsmasq::start(dns_port, &[(&record, "kalpana-verify=not-the-token")]).await?;
    let (status, body) = alice.send("POST", &verify, None).await?;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not hold")),
        "{body}"
    );
    let (_, listed) = alice.send("GET", "/api/domains", None).await?;
    assert_eq!(listed[0]["status"], "pending", "{listed}");
    drop(dns);

    // The right value: verified, and it stays verified.
    let _dns = Dnsmasq::start(dns_port, &[(&record, &value)]).await?;
    let (status, body) = alice.send("POST", &verify, None).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "verified");
    assert!(body["verifiedAt"].is_string());
    let (_, listed) = alice.send("GET", "/api/domains", None).await?;
    assert_eq!(listed[0]["status"], "verified", "{listed}");

    // Someone else cannot verify (or see) it.
    let (mallory, _) = d.new_user("mallory").await?;
    let (status, _) = mallory.send("POST", &verify, None).await?;
    assert_eq!(status, 404);
    let (status, _) = mallory
        .send("POST", &format!("/api/domains/{id}/approve"), None)
        .await?;
    assert_eq!(status, 404);
    Ok(())
}
