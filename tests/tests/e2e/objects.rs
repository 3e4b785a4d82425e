//! Object routes through the daemon, against a real engine container.

use std::time::Duration;

use futures::StreamExt;
use kalpana_e2e::{enc, object_path, pattern, s3_client, Api, Daemon, DaemonOptions};
use reqwest::Method;
use serde_json::{json, Value};

struct Bucket {
    id: String,
    name: String,
    endpoint: String,
    s3: aws_sdk_s3::Client,
}

async fn bucket(api: &Api, body: Value) -> anyhow::Result<Bucket> {
    let (status, b) = api.create_bucket(body).await?;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["status"], "RUNNING", "{b}");
    let endpoint = b["endpoint"].as_str().expect("endpoint").to_string();
    Ok(Bucket {
        id: b["id"].as_str().expect("id").to_string(),
        name: b["name"].as_str().expect("name").to_string(),
        s3: s3_client(
            &endpoint,
            b["accessKey"].as_str().expect("accessKey"),
            b["secretKey"].as_str().expect("secretKey"),
        ),
        endpoint,
    })
}

async fn object_keys_in_s3(b: &Bucket) -> anyhow::Result<Vec<String>> {
    let out = b.s3.list_objects_v2().bucket(&b.name).send().await?;
    Ok(out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(String::from))
        .collect())
}

#[tokio::test]
async fn upload_download_range_head_metadata_delete() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let b = bucket(&alice, json!({ "name": "docs" })).await?;

    // Raw PUT of a known-length body, with a key holding a slash and non-ASCII.
    let key = "reports/2026/ünïcode report.bin";
    let data = pattern(300_000, 7);
    let (status, stored) = alice
        .put_object(&b.id, key, data.clone(), Some("application/x-test"))
        .await?;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["size"], 300_000);
    assert_eq!(
        kalpana_e2e::get_bytes(&b.s3, &b.name, key).await?,
        data,
        "the bytes reached the engine"
    );

    // Download: whole, with the headers.
    let resp = alice
        .request(Method::GET, &object_path(&b.id, key))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "application/x-test");
    assert_eq!(h["content-length"], "300000");
    assert!(
        h.contains_key("etag") && h.contains_key("last-modified"),
        "{h:?}"
    );
    assert_eq!(resp.bytes().await?.to_vec(), data);

    // Range → 206 with Content-Range, exactly those bytes.
    let resp = alice
        .request(Method::GET, &object_path(&b.id, key))
        .header("range", "bytes=1000-1999")
        .send()
        .await?;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.headers()["content-range"], "bytes 1000-1999/300000");
    assert_eq!(resp.headers()["content-length"], "1000");
    assert_eq!(resp.bytes().await?.to_vec(), data[1000..2000].to_vec());
    let resp = alice
        .request(Method::GET, &object_path(&b.id, key))
        .header("range", "bytes=-10")
        .send()
        .await?;
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.bytes().await?.to_vec(),
        data[data.len() - 10..].to_vec()
    );
    let resp = alice
        .request(Method::GET, &object_path(&b.id, key))
        .header("range", "bytes=400000-400010")
        .send()
        .await?;
    assert_eq!(resp.status(), 416);
    let body: Value = resp.json().await?;
    assert_eq!(body["error"]["code"], "range_not_satisfiable");

    // HEAD and metadata.
    let resp = alice
        .request(Method::HEAD, &object_path(&b.id, key))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "300000");
    assert_eq!(resp.headers()["content-type"], "application/x-test");
    assert!(resp.bytes().await?.is_empty());
    let (status, meta) = alice
        .send(
            "GET",
            &format!("{}/metadata", object_path(&b.id, key)),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["key"], key);
    assert_eq!(meta["size"], 300_000);
    assert_eq!(meta["contentType"], "application/x-test");
    assert!(
        meta["etag"].is_string() && meta["lastModified"].is_string(),
        "{meta}"
    );
    let (status, _) = alice
        .send(
            "GET",
            &format!("{}/metadata", object_path(&b.id, "absent")),
            None,
        )
        .await?;
    assert_eq!(status, 404);

    // Multipart form, 20 MiB: more than one S3 part, length unknown to the daemon.
    let big = pattern(20 * 1024 * 1024, 3);
    let form = reqwest::multipart::Form::new()
        .text("key", "big/form.bin")
        .part(
            "file",
            reqwest::multipart::Part::stream(big.clone())
                .file_name("form.bin")
                .mime_str("application/octet-stream")?,
        );
    let resp = alice
        .request(Method::POST, &format!("/api/buckets/{}/objects", b.id))
        .multipart(form)
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let stored: Value = resp.json().await?;
    assert_eq!(stored["size"], big.len());
    assert_eq!(
        kalpana_e2e::get_bytes(&b.s3, &b.name, "big/form.bin").await?,
        big
    );
    // A form without the key first is refused.
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x"),
        )
        .text("key", "late");
    let resp = alice
        .request(Method::POST, &format!("/api/buckets/{}/objects", b.id))
        .multipart(form)
        .send()
        .await?;
    assert_eq!(resp.status(), 400);

    // Usage follows API writes.
    let (_, stats) = alice
        .send("GET", &format!("/api/buckets/{}/stats", b.id), None)
        .await?;
    assert_eq!(stats["objectCount"], 2, "{stats}");
    assert_eq!(stats["totalSizeBytes"], 300_000 + big.len(), "{stats}");
    assert!(
        stats["container"]["memoryBytes"].as_u64().unwrap_or(0) > 0,
        "{stats}"
    );

    // Delete, twice: both 204; then the object is gone.
    for _ in 0..2 {
        let resp = alice
            .request(Method::DELETE, &object_path(&b.id, key))
            .send()
            .await?;
        assert_eq!(resp.status(), 204);
    }
    let resp = alice
        .request(Method::GET, &object_path(&b.id, key))
        .send()
        .await?;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        object_keys_in_s3(&b).await?,
        vec!["big/form.bin".to_string()]
    );
    let (_, stats) = alice
        .send("GET", &format!("/api/buckets/{}/stats", b.id), None)
        .await?;
    assert_eq!(stats["objectCount"], 1, "{stats}");
    assert_eq!(stats["totalSizeBytes"], big.len(), "{stats}");
    Ok(())
}

#[tokio::test]
async fn bad_keys_are_400_and_reach_no_server() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let b = bucket(&alice, json!({ "name": "strict" })).await?;
    let long = "k".repeat(1025);
    let bad = [
        "/leading",
        "a/../b",
        "./here",
        "end/..",
        "tab\there",
        "nl\nhere",
        "nul\0",
        long.as_str(),
    ];
    for key in bad {
        let (status, body) = alice.put_object(&b.id, key, b"x".to_vec(), None).await?;
        assert_eq!(status, 400, "{key:?}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
        for method in [Method::GET, Method::DELETE] {
            let resp = alice
                .request(method.clone(), &object_path(&b.id, key))
                .send()
                .await?;
            assert_eq!(resp.status(), 400, "{method} {key:?}");
        }
        let (status, _) = alice
            .send(
                "POST",
                &format!("/api/buckets/{}/presigned-download", b.id),
                Some(json!({ "key": key })),
            )
            .await?;
        assert_eq!(status, 400, "presign {key:?}");
    }
    // Not UTF-8 at all.
    let resp = alice
        .request(
            Method::PUT,
            &format!("/api/buckets/{}/objects/%FF%FE", b.id),
        )
        .body("x")
        .send()
        .await?;
    assert_eq!(resp.status(), 400);
    assert!(
        object_keys_in_s3(&b).await?.is_empty(),
        "nothing was stored"
    );
    // The longest legal key works (in segments: engines limit one path segment to 255 bytes).
    let max = format!("{}/", "k".repeat(99)).repeat(10) + &"k".repeat(24);
    assert_eq!(max.len(), 1024);
    let (status, body) = alice.put_object(&b.id, &max, b"x".to_vec(), None).await?;
    assert_eq!(status, 201, "{body}");
    // None of the refused keys reached the engine: the daemon logged no S3 call for them.
    assert!(
        !d.log().contains("a/../b"),
        "a bad key reached the log of an S3 call"
    );
    Ok(())
}

#[tokio::test]
async fn list_walks_2500_objects_once_and_stats_see_direct_writes() -> anyhow::Result<()> {
    let d = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_STATS_SYNC_SECS".into(), "1".into())],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let b = bucket(&alice, json!({ "name": "many" })).await?;
    // Written straight to the engine over S3, as any client may.
    let keys: Vec<String> = (0..2500)
        .map(|i| {
            if i % 5 == 0 {
                format!("dir{}/obj-{i:05}", i % 3)
            } else {
                format!("obj-{i:05}")
            }
        })
        .collect();
    futures::stream::iter(keys.clone())
        .map(|k| {
            let s3 = b.s3.clone();
            let bucket = b.name.clone();
            async move {
                s3.put_object()
                    .bucket(bucket)
                    .key(&k)
                    .body(aws_sdk_s3::primitives::ByteStream::from(
                        k.clone().into_bytes(),
                    ))
                    .send()
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/buckets/{}/objects?cursor={c}", b.id),
            None => format!("/api/buckets/{}/objects", b.id),
        };
        let (status, page) = alice.send("GET", &path, None).await?;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let objects = page["objects"].as_array().expect("objects");
        assert!(objects.len() <= 1000);
        seen.extend(
            objects
                .iter()
                .map(|o| o["key"].as_str().expect("key").to_string()),
        );
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(seen.len(), 2500, "every object exactly once");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, expected);

    // Small pages, a prefix and a delimiter.
    let (_, page) = alice
        .send(
            "GET",
            &format!("/api/buckets/{}/objects?prefix=dir1%2F&limit=7", b.id),
            None,
        )
        .await?;
    assert_eq!(page["objects"].as_array().map(Vec::len), Some(7));
    assert!(page["nextCursor"].is_string());
    let (_, page) = alice
        .send(
            "GET",
            &format!("/api/buckets/{}/objects?delimiter=%2F&limit=1000", b.id),
            None,
        )
        .await?;
    assert_eq!(
        page["prefixes"],
        json!(["dir0/", "dir1/", "dir2/"]),
        "{}",
        page["prefixes"]
    );
    for bad in ["limit=0", "limit=1001", "cursor=%21%21", "bogus=1"] {
        let (status, body) = alice
            .send("GET", &format!("/api/buckets/{}/objects?{bad}", b.id), None)
            .await?;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // The periodic recount sees the 2,500 objects written behind the daemon's back.
    let expected_bytes: u64 = keys.iter().map(|k| k.len() as u64).sum();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, stats) = alice
            .send("GET", &format!("/api/buckets/{}/stats", b.id), None)
            .await?;
        if stats["objectCount"] == 2500 && stats["lastSyncedAt"].is_string() {
            assert_eq!(stats["totalSizeBytes"], expected_bytes, "{stats}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stats never synced: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (_, view) = alice
        .send("GET", &format!("/api/buckets/{}", b.id), None)
        .await?;
    assert_eq!(view["objectCount"], 2500);
    Ok(())
}

#[tokio::test]
async fn quota_refuses_uploads_and_stores_nothing() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    // 0.02 GB = 20,000,000 bytes.
    let b = bucket(&alice, json!({ "name": "capped", "maxSizeGB": 0.02 })).await?;
    for bad in [json!({ "maxSizeGB": 0 }), json!({ "maxSizeGB": -1 })] {
        let (status, _) = alice
            .send("PATCH", &format!("/api/buckets/{}", b.id), Some(bad))
            .await?;
        assert_eq!(status, 400);
    }

    // Known length over the quota: refused before anything is sent on.
    let (status, body) = alice
        .put_object(&b.id, "too-big", pattern(25_000_000, 1), None)
        .await?;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");

    // Unknown length (chunked): cut off once past the quota after two 8 MiB parts went to S3;
    // the multipart upload is aborted.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..30).map(|i| Ok(pattern(1_000_000, i))).collect();
    let resp = alice
        .request(Method::PUT, &object_path(&b.id, "streamed"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await?;
    assert_eq!(resp.status(), 413);
    assert!(object_keys_in_s3(&b).await?.is_empty(), "nothing stored");
    let uploads = b.s3.list_multipart_uploads().bucket(&b.name).send().await?;
    assert!(
        uploads.uploads().is_empty(),
        "multipart upload left behind: {:?}",
        uploads.uploads()
    );

    // Within the quota: fine, and counted.
    let (status, body) = alice
        .put_object(&b.id, "fits", pattern(15_000_000, 2), None)
        .await?;
    assert_eq!(status, 201, "{body}");
    // Replacing it with an object of the same size fits too (the old one is freed)...
    let (status, _) = alice
        .put_object(&b.id, "fits", pattern(15_000_000, 3), None)
        .await?;
    assert_eq!(status, 201);
    // ...but a second one does not.
    let (status, _) = alice
        .put_object(&b.id, "second", pattern(6_000_000, 4), None)
        .await?;
    assert_eq!(status, 413);
    assert_eq!(object_keys_in_s3(&b).await?, vec!["fits".to_string()]);
    let (_, stats) = alice
        .send("GET", &format!("/api/buckets/{}/stats", b.id), None)
        .await?;
    assert_eq!(stats["totalSizeBytes"], 15_000_000, "{stats}");
    assert_eq!(stats["objectCount"], 1);
    Ok(())
}

fn curl(args: &[&str]) -> anyhow::Result<(u16, Vec<u8>)> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "30"])
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut body = out.stdout;
    let nl = body.iter().rposition(|&c| c == b'\n').unwrap_or(0);
    let code = String::from_utf8_lossy(&body[nl + 1..]).trim().parse()?;
    body.truncate(nl);
    Ok((code, body))
}

#[tokio::test]
async fn presigned_urls_work_with_curl_and_expire() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let b = bucket(&alice, json!({ "name": "shared" })).await?;
    let presign = |kind: &'static str, body: Value| {
        let alice = alice.clone();
        let id = b.id.clone();
        async move {
            alice
                .send(
                    "POST",
                    &format!("/api/buckets/{id}/presigned-{kind}"),
                    Some(body),
                )
                .await
        }
    };

    let (status, up) = presign(
        "upload",
        json!({ "key": "from curl/a.txt", "contentType": "text/plain" }),
    )
    .await?;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["method"], "PUT");
    let url = up["url"].as_str().expect("url");
    assert!(url.starts_with(&b.endpoint), "{url} is for {}", b.endpoint);
    let expires_at = time::OffsetDateTime::parse(
        up["expiresAt"].as_str().expect("expiresAt"),
        &time::format_description::well_known::Rfc3339,
    )?;
    let left = (expires_at - time::OffsetDateTime::now_utc()).whole_seconds();
    assert!(
        (3590..=3600).contains(&left),
        "default expiry 3600 s, got {left}"
    );

    let file = d.data_dir.join("upload.txt");
    std::fs::write(&file, b"hello through a presigned URL")?;
    let (code, body) = curl(&[
        "-X",
        "PUT",
        "-H",
        "content-type: text/plain",
        "--data-binary",
        &format!("@{}", file.display()),
        url,
    ])?;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));

    let (status, down) = presign("download", json!({ "key": "from curl/a.txt" })).await?;
    assert_eq!(status, 200, "{down}");
    assert_eq!(down["method"], "GET");
    let (code, body) = curl(&[down["url"].as_str().expect("url")])?;
    assert_eq!(code, 200);
    assert_eq!(body, b"hello through a presigned URL");

    // One second of life: works now, refused after.
    let (_, short) = presign(
        "download",
        json!({ "key": "from curl/a.txt", "expiresIn": 1 }),
    )
    .await?;
    let short_url = short["url"].as_str().expect("url").to_string();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (code, _) = curl(&[&short_url])?;
    assert_eq!(code, 403, "an expired URL must be refused");

    for bad in [
        json!({ "key": "k", "expiresIn": 0 }),
        json!({ "key": "k", "expiresIn": 604_801 }),
        json!({ "expiresIn": 10 }),
        json!({ "key": "k", "bogus": 1 }),
    ] {
        let (status, body) = presign("download", bad.clone()).await?;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, _) = presign("upload", json!({ "key": "k", "expiresIn": 604_800 })).await?;
    assert_eq!(status, 200, "7 days is allowed");
    assert!(enc("a/b").contains("%2F"));
    Ok(())
}

#[tokio::test]
async fn settings_reach_the_engine_and_stopped_buckets_answer_409() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let b = bucket(
        &alice,
        json!({ "name": "public-site", "publicAccess": true, "versioning": true }),
    )
    .await?;
    let (status, _) = alice
        .put_object(
            &b.id,
            "index.html",
            b"<h1>hi</h1>".to_vec(),
            Some("text/html"),
        )
        .await?;
    assert_eq!(status, 201);
    let anon = reqwest::Client::new();
    let public_url = format!("{}/{}/index.html", b.endpoint, b.name);
    let resp = anon.get(&public_url).send().await?;
    assert_eq!(resp.status(), 200, "anonymous read of a public bucket");
    assert_eq!(resp.text().await?, "<h1>hi</h1>");
    let v = b.s3.get_bucket_versioning().bucket(&b.name).send().await?;
    assert_eq!(v.status().map(|s| s.as_str()), Some("Enabled"));

    // PATCH off: anonymous reads are refused, versioning suspended, encryption on.
    let (status, view) = alice
        .send(
            "PATCH",
            &format!("/api/buckets/{}", b.id),
            Some(json!({ "publicAccess": false, "versioning": false, "encryption": true })),
        )
        .await?;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["publicAccess"], false);
    assert_eq!(view["encryption"], true);
    assert_eq!(anon.get(&public_url).send().await?.status(), 403);
    let v = b.s3.get_bucket_versioning().bucket(&b.name).send().await?;
    assert_eq!(v.status().map(|s| s.as_str()), Some("Suspended"));
    let enc_conf = b.s3.get_bucket_encryption().bucket(&b.name).send().await?;
    let algorithm = enc_conf
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default())
        .map(|d| d.sse_algorithm().as_str().to_string());
    assert_eq!(algorithm.as_deref(), Some("AES256"), "{enc_conf:?}");

    // Stopped: every object route answers 409 saying so.
    let (status, _) = alice
        .send("POST", &format!("/api/buckets/{}/stop", b.id), None)
        .await?;
    assert_eq!(status, 200);
    let (status, body) = alice.put_object(&b.id, "x", b"x".to_vec(), None).await?;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("stopped")),
        "{body}"
    );
    for (method, path) in [
        ("GET", object_path(&b.id, "index.html")),
        ("GET", format!("/api/buckets/{}/objects", b.id)),
        ("DELETE", object_path(&b.id, "index.html")),
        (
            "GET",
            format!("{}/metadata", object_path(&b.id, "index.html")),
        ),
    ] {
        let (status, body) = alice.send(method, &path, None).await?;
        assert_eq!(status, 409, "{method} {path}: {body}");
    }
    let (status, _) = alice
        .send(
            "POST",
            &format!("/api/buckets/{}/presigned-download", b.id),
            Some(json!({ "key": "index.html" })),
        )
        .await?;
    assert_eq!(status, 409);

    // A setting changed while stopped is applied at start.
    let (status, _) = alice
        .send(
            "PATCH",
            &format!("/api/buckets/{}", b.id),
            Some(json!({ "publicAccess": true })),
        )
        .await?;
    assert_eq!(status, 200);
    let (status, _) = alice
        .send("POST", &format!("/api/buckets/{}/start", b.id), None)
        .await?;
    assert_eq!(status, 200);
    assert_eq!(anon.get(&public_url).send().await?.status(), 200);
    Ok(())
}
