//! `/metrics`: Prometheus text without a token, counts that follow what the daemon does, and no
//! bucket id, name or owner in it.

use std::time::{Duration, Instant};

use kalpana_e2e::Daemon;
use serde_json::json;

/// The scrape: content type and text.
async fn scrape(d: &Daemon) -> anyhow::Result<(String, String)> {
    let resp = d
        .anonymous()
        .request(reqwest::Method::GET, "/metrics")
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 200, "GET /metrics: {}", resp.status());
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((ct, resp.text().await?))
}

/// The value of the sample line `series` (name and labels exactly), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes until `series` reaches `at_least` or 20 s pass; returns the last text.
async fn wait_for(d: &Daemon, series: &str, at_least: f64) -> anyhow::Result<String> {
    let started = Instant::now();
    loop {
        let (_, text) = scrape(d).await?;
        if sample(&text, series).is_some_and(|v| v >= at_least) {
            return Ok(text);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(20),
            "{series} did not reach {at_least}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn metrics_follow_requests_buckets_and_container_deaths() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (ct, text) = scrape(&d).await?;
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    assert_eq!(sample(&text, "kalpana_docker_up"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "kalpana_store_up"), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "kalpana_buckets{status=\"RUNNING\"}"),
        Some(0.0),
        "{text}"
    );
    assert!(text.contains("# TYPE kalpana_http_request_duration_seconds histogram"));
    wait_for(&d, "kalpana_reconcile_passes_total", 1.0).await?;

    let (alice, _) = d.new_user("alice").await?;
    let (bob, _) = d.new_user("bob").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "metered" })).await?;
    assert_eq!(
        (status, b["status"].as_str()),
        (201, Some("RUNNING")),
        "{b}"
    );
    let id = b["id"].as_str().expect("id");
    for _ in 0..3 {
        let (status, _) = bob.send("GET", &format!("/api/buckets/{id}"), None).await?;
        assert_eq!(status, 404);
    }
    let (status, _) = alice
        .send("GET", &format!("/api/buckets/{id}"), None)
        .await?;
    assert_eq!(status, 200);

    let (_, text) = scrape(&d).await?;
    let route = "route=\"/api/buckets/{id}\"";
    assert_eq!(
        sample(
            &text,
            &format!("kalpana_http_requests_total{{method=\"GET\",{route},status=\"404\"}}")
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("kalpana_http_requests_total{{method=\"GET\",{route},status=\"200\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("kalpana_http_request_duration_seconds_count{{method=\"GET\",{route}}}")
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "kalpana_buckets{status=\"RUNNING\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "kalpana_events_total{kind=\"bucket.status\",status=\"RUNNING\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    // Aggregates only: no id, name or owner of anyone's bucket.
    for secret in [id, "metered", b["userId"].as_str().expect("userId")] {
        assert!(!text.contains(secret), "{secret} in the metrics");
    }

    // A bucket container killed behind the daemon's back is counted.
    let killed = std::process::Command::new("docker")
        .args(["kill", &format!("kalpana-bucket-{id}")])
        .output()?;
    assert!(killed.status.success(), "docker kill: {killed:?}");
    wait_for(&d, "kalpana_container_events_total{action=\"die\"}", 1.0).await?;

    assert_eq!(alice.delete_bucket(id, true).await?, 204);
    let (_, text) = scrape(&d).await?;
    assert_eq!(
        sample(&text, "kalpana_buckets{status=\"RUNNING\"}"),
        Some(0.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "kalpana_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"}"
        )
        .is_some_and(|n| n >= 3.0),
        "{text}"
    );
    Ok(())
}
