//! External buckets: a SeaweedFS started here with a plain `docker run` (not by the daemon) and
//! its own credentials stands in for a provider, and is registered as an external bucket.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kalpana_e2e::{get_bytes, object_path, pattern, s3_client, Daemon, DaemonOptions};
use serde_json::{json, Value};

/// The remote service: a container the test runs and removes, published on 127.0.0.2 only.
pub(crate) struct Remote {
    name: String,
    pub(crate) endpoint: String,
    pub(crate) access_key: String,
    pub(crate) secret: String,
}

impl Remote {
    /// Runs the remote with an empty bucket `remote-data`.
    pub(crate) async fn start() -> anyhow::Result<Self> {
        kalpana_e2e::require_environment()?;
        let name = format!("kalpana-remote-{}", uuid::Uuid::new_v4().simple());
        let access_key = format!("REMOTE{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let secret = format!("remote-secret-{}", uuid::Uuid::new_v4().simple());
        // A fixed host port, so that the endpoint survives the container's restart.
        let port = std::net::TcpListener::bind("127.0.0.2:0")?
            .local_addr()?
            .port();
        let ok = Command::new("docker")
            .args(["run", "-d", "--name", &name])
            .args(["-p", &format!("127.0.0.2:{port}:8333")])
            .args(["-e", &format!("AWS_ACCESS_KEY_ID={access_key}")])
            .args(["-e", &format!("AWS_SECRET_ACCESS_KEY={secret}")])
            .args([kalpana_e2e::ENGINE_IMAGE, "mini", "-dir=/data"])
            .stdout(Stdio::null())
            .status()?
            .success();
        anyhow::ensure!(ok, "docker run of the remote SeaweedFS failed");
        let remote = Remote {
            name,
            endpoint: format!("http://127.0.0.2:{port}"),
            access_key,
            secret,
        };
        let s3 = remote.s3();
        let started = Instant::now();
        loop {
            match s3.create_bucket().bucket("remote-data").send().await {
                Ok(_) => break,
                Err(e) if started.elapsed() < Duration::from_secs(60) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => anyhow::bail!("the remote never answered: {e:?}"),
            }
        }
        Ok(remote)
    }

    fn s3(&self) -> aws_sdk_s3::Client {
        s3_client(&self.endpoint, &self.access_key, &self.secret)
    }

    fn docker(&self, action: &str) {
        let _ = Command::new("docker")
            .args([action, &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn port(&self) -> &str {
        self.endpoint.rsplit(':').next().unwrap_or_default()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn external(remote: &Remote, endpoint: &str, secret: &str) -> Value {
    json!({
        "name": "outside",
        "kind": "external",
        "external": {
            "provider": "other",
            "endpoint": endpoint,
            "bucketName": "remote-data",
            "accessKeyId": remote.access_key,
            "secretAccessKey": secret,
        }
    })
}

async fn wait_status(api: &kalpana_e2e::Api, id: &str, want: &str) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        let (_, b) = api.send("GET", &format!("/api/buckets/{id}"), None).await?;
        if b["status"] == want {
            return Ok(b);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "bucket never became {want}: {b}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn an_external_bucket_answers_the_same_routes_and_its_secret_never_shows(
) -> anyhow::Result<()> {
    let remote = Remote::start().await?;
    let d = Daemon::start_with(DaemonOptions {
        env: vec![
            ("KALPANA_EXTERNAL_ALLOW".into(), "127.0.0.2/32".into()),
            ("KALPANA_STATS_SYNC_SECS".into(), "1".into()),
        ],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let (mallory, _) = d.new_user("mallory").await?;

    // Refused before anything is stored: a wrong secret, and endpoints the policy refuses.
    let (status, e) = alice
        .create_bucket(external(&remote, &remote.endpoint, "not-the-secret"))
        .await?;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["error"]["code"], "external_unreachable", "{e}");
    println!("wrong secret: {}", e["error"]["message"]);
    let port = remote.port().to_string();
    let own_port = d.port_range.0;
    for endpoint in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        "http://169.254.169.254".to_string(),
        format!("http://127.0.0.2:{own_port}"),
        // Loopback in IPv6 dress: IPv4-compatible, IPv4-translated, NAT64 and 6to4.
        format!("http://[::7f00:1]:{port}"),
        format!("http://[::ffff:0:7f00:1]:{port}"),
        format!("http://[64:ff9b::7f00:1]:{port}"),
        format!("http://[2002:7f00:1::]:{port}"),
    ] {
        let (status, e) = alice
            .create_bucket(external(&remote, &endpoint, &remote.secret))
            .await?;
        assert_eq!(status, 422, "{endpoint}: {e}");
        assert_eq!(
            e["error"]["code"], "endpoint_not_allowed",
            "{endpoint}: {e}"
        );
        println!("{endpoint}: {}", e["error"]["message"]);
    }
    let (_, list) = alice.send("GET", "/api/buckets", None).await?;
    assert_eq!(list["buckets"].as_array().map(Vec::len), Some(0), "{list}");

    // Registered: the view names where it is, never the secret.
    let (status, b) = alice
        .create_bucket(external(&remote, &remote.endpoint, &remote.secret))
        .await?;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["kind"], "external");
    assert_eq!(b["provider"], "other");
    assert_eq!(b["externalBucket"], "remote-data");
    assert_eq!(b["status"], "RUNNING");
    assert_eq!(b["accessKey"], remote.access_key.as_str());
    assert!(b.get("secretKey").is_none(), "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    // The storage inventory lists it among the caller's buckets, as external.
    let (_, inventory) = alice.send("GET", "/api/inventory/buckets", None).await?;
    let listed = inventory["buckets"]
        .as_array()
        .and_then(|l| l.iter().find(|e| e["id"] == id.as_str()).cloned())
        .unwrap_or_default();
    assert_eq!(listed["source"], "external", "{inventory}");
    assert_eq!(listed["provider"], "other");
    assert_eq!(listed["s3Endpoint"], remote.endpoint.as_str());

    // Objects through the API: upload, list, Range download.
    let body = pattern(300_000, 5);
    let (status, stored) = alice
        .put_object(&id, "docs/report.bin", body.clone(), None)
        .await?;
    assert_eq!(status, 201, "{stored}");
    let (http, base, token) = alice.raw();
    let token = token.unwrap_or_default();
    let resp = http
        .get(format!("{base}{}", object_path(&id, "docs/report.bin")))
        .bearer_auth(token)
        .header("Range", "bytes=100-199")
        .send()
        .await?;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await?.as_ref(), &body[100..200]);
    // Landed on the remote itself.
    assert_eq!(
        get_bytes(&remote.s3(), "remote-data", "docs/report.bin").await?,
        body
    );
    // Written to the remote directly: the daemon's listing shows it.
    remote
        .s3()
        .put_object()
        .bucket("remote-data")
        .key("direct.txt")
        .body(b"written elsewhere".to_vec().into())
        .send()
        .await?;
    let (status, page) = alice
        .send("GET", &format!("/api/buckets/{id}/objects"), None)
        .await?;
    assert_eq!(status, 200, "{page}");
    let keys: Vec<&str> = page["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter_map(|o| o["key"].as_str())
        .collect();
    assert_eq!(keys, ["direct.txt", "docs/report.bin"], "{page}");

    // Presigned GET and PUT against the remote's own endpoint.
    let (status, url) = alice
        .send(
            "POST",
            &format!("/api/buckets/{id}/presigned-download"),
            Some(json!({ "key": "direct.txt" })),
        )
        .await?;
    assert_eq!(status, 200, "{url}");
    let got = reqwest::get(url["url"].as_str().expect("url")).await?;
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await?.as_ref(), b"written elsewhere");
    let (status, up) = alice
        .send(
            "POST",
            &format!("/api/buckets/{id}/presigned-upload"),
            Some(json!({ "key": "via-url.txt" })),
        )
        .await?;
    assert_eq!(status, 200, "{up}");
    let put = reqwest::Client::new()
        .put(up["url"].as_str().expect("url"))
        .body("uploaded by URL")
        .send()
        .await?;
    assert_eq!(put.status(), 200);
    assert_eq!(
        get_bytes(&remote.s3(), "remote-data", "via-url.txt").await?,
        b"uploaded by URL"
    );

    // Copy inside the external bucket, move it to a managed bucket and back.
    let (status, copied) = alice
        .send(
            "POST",
            &format!("{}/copy", object_path(&id, "docs/report.bin")),
            Some(json!({ "destinationKey": "docs/copy.bin" })),
        )
        .await?;
    assert_eq!(status, 201, "{copied}");
    assert_eq!(copied["size"], 300_000);
    let (status, managed) = alice.create_bucket(json!({ "name": "inside" })).await?;
    assert_eq!(status, 201, "{managed}");
    let mid = managed["id"].as_str().expect("id").to_string();
    let (status, moved) = alice
        .send(
            "POST",
            &format!("{}/copy", object_path(&id, "docs/copy.bin")),
            Some(
                json!({ "destinationKey": "moved.bin", "destinationBucketId": mid, "move": true }),
            ),
        )
        .await?;
    assert_eq!(status, 201, "{moved}");
    let inside = s3_client(
        managed["endpoint"].as_str().expect("endpoint"),
        managed["accessKey"].as_str().expect("access"),
        managed["secretKey"].as_str().expect("secret"),
    );
    assert_eq!(get_bytes(&inside, "inside", "moved.bin").await?, body);
    let gone = remote
        .s3()
        .head_object()
        .bucket("remote-data")
        .key("docs/copy.bin")
        .send()
        .await;
    assert!(gone.is_err(), "a move deletes its source");
    let (status, back) = alice
        .send(
            "POST",
            &format!("{}/copy", object_path(&mid, "moved.bin")),
            Some(json!({ "destinationKey": "back.bin", "destinationBucketId": id })),
        )
        .await?;
    assert_eq!(status, 201, "{back}");
    assert_eq!(
        get_bytes(&remote.s3(), "remote-data", "back.bin").await?,
        body
    );

    // The connection test, reading and writing.
    let (status, t) = alice
        .send("POST", &format!("/api/buckets/{id}/test?write=true"), None)
        .await?;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["ok"], true, "{t}");
    assert_eq!(t["canRead"], true);
    assert_eq!(t["canWrite"], true);
    println!("connection test: {t}");

    // Container operations are not an external bucket's.
    for op in ["start", "stop", "credentials/rotate"] {
        let (status, e) = alice
            .send("POST", &format!("/api/buckets/{id}/{op}"), None)
            .await?;
        assert_eq!(status, 422, "{op}: {e}");
        assert_eq!(e["error"]["code"], "not_supported", "{op}: {e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("external")),
            "{e}"
        );
    }

    // Another tenant sees none of it.
    for (method, path) in [
        ("GET", format!("/api/buckets/{id}")),
        ("GET", format!("/api/buckets/{id}/objects")),
        ("POST", format!("/api/buckets/{id}/test")),
        ("DELETE", format!("/api/buckets/{id}")),
    ] {
        let (status, _) = mallory.send(method, &path, None).await?;
        assert_eq!(status, 404, "{method} {path} as another user");
    }
    let (status, _) = mallory
        .send(
            "PUT",
            "/api/defaults/general",
            Some(json!({ "bucketId": id })),
        )
        .await?;
    assert_eq!(status, 404, "another user's bucket as their default");

    // Defaults per purpose: set, moved, read, dropped with the bucket.
    let (status, defaults) = alice
        .send(
            "PUT",
            "/api/defaults/general",
            Some(json!({ "bucketId": id })),
        )
        .await?;
    assert_eq!(status, 200, "{defaults}");
    alice
        .send(
            "PUT",
            "/api/defaults/chat",
            Some(json!({ "bucketId": mid })),
        )
        .await?;
    let (status, bad) = alice
        .send(
            "PUT",
            "/api/defaults/Not_OK",
            Some(json!({ "bucketId": id })),
        )
        .await?;
    assert_eq!(status, 400, "{bad}");
    let (_, defaults) = alice.send("GET", "/api/defaults", None).await?;
    assert_eq!(
        defaults,
        json!({ "defaults": { "general": id, "chat": mid } }),
        "{defaults}"
    );

    // The provider goes away: ERROR with its words; back: RUNNING.
    remote.docker("stop");
    let down = wait_status(&alice, &id, "ERROR").await?;
    println!("remote stopped: {}", down["statusMessage"]);
    assert!(down["statusMessage"]
        .as_str()
        .is_some_and(|m| m.contains("did not answer")));
    let (status, e) = alice
        .send("GET", &format!("/api/buckets/{id}/objects"), None)
        .await?;
    assert_eq!(status, 409, "{e}");
    remote.docker("start");
    wait_status(&alice, &id, "RUNNING").await?;

    // New credentials are checked before they replace the old ones.
    let (status, e) = alice
        .send(
            "PATCH",
            &format!("/api/buckets/{id}"),
            Some(json!({ "external": { "accessKeyId": remote.access_key, "secretAccessKey": "wrong" } })),
        )
        .await?;
    assert_eq!(status, 422, "{e}");
    let (status, ok) = alice
        .send(
            "PATCH",
            &format!("/api/buckets/{id}"),
            Some(json!({ "external": { "accessKeyId": remote.access_key, "secretAccessKey": remote.secret } })),
        )
        .await?;
    assert_eq!(status, 200, "{ok}");
    let (status, _) = alice
        .send("GET", &format!("/api/buckets/{id}/objects"), None)
        .await?;
    assert_eq!(status, 200);

    // DELETE forgets the registration; the remote objects stay, and so do other defaults.
    assert_eq!(alice.delete_bucket(&id, true).await?, 204);
    let (status, _) = alice
        .send("GET", &format!("/api/buckets/{id}"), None)
        .await?;
    assert_eq!(status, 404);
    let left = remote
        .s3()
        .list_objects_v2()
        .bucket("remote-data")
        .send()
        .await?;
    assert_eq!(left.key_count(), Some(4), "remote objects after DELETE");
    let (_, defaults) = alice.send("GET", "/api/defaults", None).await?;
    assert_eq!(
        defaults,
        json!({ "defaults": { "chat": mid } }),
        "{defaults}"
    );

    assert!(
        !d.log().contains(&remote.secret),
        "the external secret is in the daemon log"
    );
    Ok(())
}
