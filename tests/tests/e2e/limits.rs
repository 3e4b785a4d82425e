//! Request limits: JSON bodies bounded, stalled and trickling bodies cut off with 408 and
//! nothing stored, CORS off unless configured.

use std::time::{Duration, Instant};

use kalpana_e2e::{object_path, Daemon, DaemonOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `head` and the first `sent` bytes of a body announced as `length` bytes, then one byte
/// every `trickle` (or nothing more when `None`); returns the status line, the JSON error and
/// how long the answer took.
async fn slow_request(
    base: &str,
    head: &str,
    length: usize,
    sent: usize,
    trickle: Option<Duration>,
) -> anyhow::Result<(String, Value, Duration)> {
    let addr = base.trim_start_matches("http://");
    let mut tcp = TcpStream::connect(addr).await?;
    let started = Instant::now();
    tcp.write_all(
        format!("{head}content-length: {length}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    tcp.write_all(&vec![b'{'; sent]).await?;
    let (mut rd, mut wr) = tcp.into_split();
    let writer = tokio::spawn(async move {
        if let Some(every) = trickle {
            for _ in sent..length {
                tokio::time::sleep(every).await;
                if wr.write_all(b" ").await.is_err() {
                    break;
                }
            }
        } else {
            // Hold the connection open without sending anything.
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        drop(wr);
    });
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut answer)).await??;
    let took = started.elapsed();
    writer.abort();
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.lines().next().unwrap_or_default().to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    Ok((
        status,
        serde_json::from_str(body).unwrap_or(Value::Null),
        took,
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn json_bounded_slow_bodies_408_and_nothing_stored() -> anyhow::Result<()> {
    let d = Daemon::start_with(DaemonOptions {
        env: vec![
            ("KALPANA_BODY_IDLE_SECS".into(), "1".into()),
            ("KALPANA_BODY_GRACE_SECS".into(), "1".into()),
            ("KALPANA_BODY_MIN_RATE".into(), "1000".into()),
        ],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let token = alice.raw().2.expect("token").to_string();

    // A JSON body over 64 KiB: 413 with the JSON error, and no bucket.
    let big = json!({ "name": "huge", "description": "x".repeat(70_000) });
    let (status, e) = alice.send("POST", "/api/buckets", Some(big)).await?;
    assert_eq!(status, 413, "{e}");
    assert_eq!(e["error"]["code"], "body_too_large", "{e}");
    let (_, list) = alice.send("GET", "/api/buckets", None).await?;
    assert_eq!(list["buckets"], json!([]));

    // A JSON body that stops half-way: 408 after the idle limit, no bucket.
    let head = format!(
        "POST /api/buckets HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\n"
    );
    let (status, e, took) = slow_request(&d.url, &head, 200, 10, None).await?;
    assert!(status.contains(" 408 "), "{status} {e}");
    assert_eq!(e["error"]["code"], "request_timeout", "{e}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    println!("stalled JSON body: {status} after {took:?}");

    // A running bucket to upload into.
    let (status, b) = alice.create_bucket(json!({ "name": "uploads" })).await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();

    // An upload that stalls, and one that trickles below the minimum rate: 408, nothing stored.
    let head = format!(
        "PUT {} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n",
        object_path(&id, "stalled")
    );
    let (status, e, took) = slow_request(&d.url, &head, 1_000_000, 100_000, None).await?;
    assert!(status.contains(" 408 "), "{status} {e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no request body bytes")),
        "{e}"
    );
    println!("stalled upload: {status} after {took:?}");
    let head = format!(
        "PUT {} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n",
        object_path(&id, "trickled")
    );
    let (status, e, took) =
        slow_request(&d.url, &head, 100_000, 0, Some(Duration::from_millis(200))).await?;
    assert!(status.contains(" 408 "), "{status} {e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("too slowly")),
        "{e}"
    );
    println!("trickled upload: {status} after {took:?}");
    let (status, objects) = alice
        .send("GET", &format!("/api/buckets/{id}/objects"), None)
        .await?;
    assert_eq!(status, 200);
    assert_eq!(objects["objects"], json!([]), "{objects}");

    // An upload that keeps its pace is not cut off.
    let (status, put) = alice
        .put_object(&id, "fine", vec![7u8; 3 << 20], None)
        .await?;
    assert_eq!(status, 201, "{put}");
    Ok(())
}

#[tokio::test]
async fn cors_is_off_by_default_and_allows_only_configured_origins() -> anyhow::Result<()> {
    let preflight = |d: &Daemon, origin: &str| {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, format!("{}/api/buckets", d.url))
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let off = Daemon::start().await?;
    let resp = preflight(&off, "https://app.example.com").await?;
    assert!(
        resp.headers().get("access-control-allow-origin").is_none(),
        "CORS answered without configuration: {:?}",
        resp.headers()
    );
    let on = Daemon::start_with(DaemonOptions {
        env: vec![(
            "KALPANA_CORS_ORIGINS".into(),
            "https://app.example.com".into(),
        )],
        ..Default::default()
    })
    .await?;
    let resp = preflight(&on, "https://app.example.com").await?;
    assert!(resp.status().is_success(), "{}", resp.status());
    let h = resp.headers();
    assert_eq!(
        h.get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.example.com")
    );
    let methods = h
        .get("access-control-allow-methods")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(methods.contains("PUT"), "{methods}");
    let resp = preflight(&on, "https://evil.example.net").await?;
    assert!(
        resp.headers().get("access-control-allow-origin").is_none(),
        "another origin was allowed"
    );
    // A real request from the allowed origin carries the header too.
    let resp = on
        .admin()
        .request(reqwest::Method::GET, "/api/me")
        .header("origin", "https://app.example.com")
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("access-control-allow-origin").is_some());
    Ok(())
}

/// Sends a multipart form whose `key` field is `field_len` bytes, streamed, and reads the answer
/// as soon as the daemon gives one: the status line and the JSON error.
async fn huge_key_field(
    base: &str,
    token: &str,
    bucket: &str,
    field_len: usize,
) -> anyhow::Result<(String, Value)> {
    let addr = base.trim_start_matches("http://");
    let tcp = TcpStream::connect(addr).await?;
    let (mut rd, mut wr) = tcp.into_split();
    let boundary = "kalpanaboundary";
    let head = format!("--{boundary}\r\ncontent-disposition: form-data; name=\"key\"\r\n\r\n");
    let tail = format!(
        "\r\n--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\nx\r\n--{boundary}--\r\n"
    );
    let length = head.len() + field_len + tail.len();
    let request = format!(
        "POST /api/buckets/{bucket}/objects HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: multipart/form-data; boundary={boundary}\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n{head}"
    );
    let writer = tokio::spawn(async move {
        wr.write_all(request.as_bytes()).await?;
        let chunk = vec![b'k'; 1 << 20];
        let mut sent = 0;
        while sent < field_len {
            let n = chunk.len().min(field_len - sent);
            // The daemon answers and closes long before the end: the write then fails.
            if wr.write_all(&chunk[..n]).await.is_err() {
                return Ok::<usize, std::io::Error>(sent);
            }
            sent += n;
        }
        wr.write_all(tail.as_bytes()).await?;
        Ok(sent)
    });
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), rd.read_to_end(&mut answer)).await??;
    let sent = writer.await??;
    println!("a {field_len}-byte key field: answered after {sent} bytes of it were sent");
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.lines().next().unwrap_or_default().to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

#[tokio::test]
async fn odd_methods_and_huge_form_fields_cost_bounded_memory() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let pid = d.pid().expect("pid");
    let (alice, _) = d.new_user("alice").await?;
    let token = alice.raw().2.expect("token").to_string();
    let (status, b) = alice.create_bucket(json!({ "name": "forms" })).await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();

    // 4,000 requests without a token, each with its own 3,000-byte method: one label value.
    let before = kalpana_e2e::proc_memory(pid, "VmRSS").expect("rss");
    let http = reqwest::Client::new();
    for i in 0..4000 {
        let method = format!("M{i:04}{}", "X".repeat(2995));
        let m = reqwest::Method::from_bytes(method.as_bytes())?;
        let resp = http.request(m, format!("{}/healthz", d.url)).send().await?;
        assert!(resp.status().as_u16() >= 200, "{}", resp.status());
    }
    let resp = http.get(format!("{}/metrics", d.url)).send().await?;
    let text = resp.text().await?;
    let after = kalpana_e2e::proc_memory(pid, "VmRSS").expect("rss");
    let odd: f64 = text
        .lines()
        .filter(|l| l.starts_with("kalpana_http_requests_total{method=\"OTHER\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(odd, 4000.0, "every odd method is counted as OTHER:\n{text}");
    assert!(!text.contains("XXXXXXXX"), "a method reached a label");
    assert!(
        text.len() < 64 * 1024,
        "/metrics is {} bytes after 4,000 odd methods",
        text.len()
    );
    println!(
        "4,000 unique 3,000-byte methods: /metrics {} bytes, RSS {} → {} MiB",
        text.len(),
        before >> 20,
        after >> 20
    );
    assert!(
        after.saturating_sub(before) < 16 << 20,
        "RSS grew by {} bytes",
        after - before
    );

    // A 300 MiB `key` field: refused once it passes the cap, without reading it into memory.
    let peak_before = kalpana_e2e::proc_memory(pid, "VmHWM").expect("hwm");
    let (status, e) = huge_key_field(&d.url, &token, &id, 300 << 20).await?;
    let peak_after = kalpana_e2e::proc_memory(pid, "VmHWM").expect("hwm");
    assert!(status.contains(" 400 "), "{status} {e}");
    assert_eq!(e["error"]["code"], "bad_request", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`key` field is longer than 4096 bytes")),
        "{e}"
    );
    println!(
        "300 MiB key field: {status} {e}; peak RSS {} → {} MiB",
        peak_before >> 20,
        peak_after >> 20
    );
    assert!(
        peak_after.saturating_sub(peak_before) < 64 << 20,
        "peak RSS grew by {} bytes",
        peak_after - peak_before
    );
    let (status, objects) = alice
        .send("GET", &format!("/api/buckets/{id}/objects"), None)
        .await?;
    assert_eq!(status, 200);
    assert_eq!(objects["objects"], json!([]), "nothing stored: {objects}");
    Ok(())
}

#[tokio::test]
async fn users_hold_at_most_their_caps_of_workspaces_teams_and_domains() -> anyhow::Result<()> {
    let d = Daemon::start_with(DaemonOptions {
        env: vec![
            ("KALPANA_MAX_WORKSPACES_PER_USER".into(), "2".into()),
            ("KALPANA_MAX_TEAMS_PER_USER".into(), "1".into()),
            ("KALPANA_MAX_DOMAINS_PER_USER".into(), "2".into()),
        ],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let (bob, _) = d.new_user("bob").await?;
    for (path, bodies, list) in [
        (
            "/api/workspaces",
            vec![
                json!({ "name": "w1" }),
                json!({ "name": "w2" }),
                json!({ "name": "w3" }),
            ],
            "/api/workspaces",
        ),
        (
            "/api/teams",
            vec![json!({ "name": "t1" }), json!({ "name": "t2" })],
            "/api/teams",
        ),
        (
            "/api/domains",
            vec![
                json!({ "name": "a.example.org" }),
                json!({ "name": "b.example.org" }),
                json!({ "name": "c.example.org" }),
            ],
            "/api/domains",
        ),
    ] {
        let (last, allowed) = bodies.split_last().expect("bodies");
        for body in allowed {
            let (status, e) = alice.send("POST", path, Some(body.clone())).await?;
            assert_eq!(status, 201, "{path} {body}: {e}");
        }
        let (status, e) = alice.send("POST", path, Some(last.clone())).await?;
        assert_eq!(status, 429, "{path} past the cap: {e}");
        assert_eq!(e["error"]["code"], "owner_limit", "{e}");
        println!("{path} past the cap: {e}");
        let (_, listed) = alice.send("GET", list, None).await?;
        assert!(
            !listed
                .to_string()
                .contains(last["name"].as_str().expect("name")),
            "nothing of the refused create is kept: {listed}"
        );
        // Another user has a cap of their own; admins have none.
        let (status, e) = bob.send("POST", path, Some(last.clone())).await?;
        assert_eq!(status, 201, "{path} for bob: {e}");
    }
    for i in 0..3 {
        let (status, e) = d
            .admin()
            .send(
                "POST",
                "/api/workspaces",
                Some(json!({ "name": format!("ops{i}") })),
            )
            .await?;
        assert_eq!(status, 201, "admins are exempt: {e}");
    }
    Ok(())
}
