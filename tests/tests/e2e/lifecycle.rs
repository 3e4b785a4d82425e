//! A bucket's whole life through the REST API, with S3 spoken to the container it gets.

use aws_sdk_s3::primitives::ByteStream;
use kalpana_e2e::{
    docker_exists, docker_inspect, get_bytes, port_is_free, s3_client, Daemon, DaemonOptions,
};
use serde_json::json;

#[tokio::test]
async fn create_put_get_stop_start_delete() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, alice_id) = d.new_user("alice").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "photos" })).await?;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["status"], "RUNNING", "{b}");
    assert_eq!(b["userId"], alice_id.as_str());
    assert_eq!(b["engine"], "seaweedfs");
    let id = b["id"].as_str().expect("id").to_string();
    let endpoint = b["endpoint"].as_str().expect("endpoint").to_string();
    let access = b["accessKey"].as_str().expect("accessKey").to_string();
    let secret = b["secretKey"].as_str().expect("secretKey once").to_string();
    let port = b["port"].as_u64().expect("port") as u16;
    assert!((d.port_range.0..=d.port_range.1).contains(&port));
    assert_eq!(
        b["consolePort"],
        serde_json::Value::Null,
        "seaweedfs has no console"
    );

    // The container is what DESIGN.md says it is.
    let container = format!("kalpana-bucket-{id}");
    assert_eq!(docker_inspect(&container, "{{.State.Running}}")?, "true");
    assert_eq!(
        docker_inspect(&container, "{{.HostConfig.RestartPolicy.Name}}")?,
        "unless-stopped"
    );
    assert_eq!(
        docker_inspect(&container, "{{index .Config.Labels \"kalpana.managed\"}}")?,
        "true"
    );
    assert_eq!(
        docker_inspect(
            &container,
            "{{index .Config.Labels \"kalpana.bucket.name\"}}"
        )?,
        "photos"
    );
    assert_eq!(
        docker_inspect(&container, "{{index .Config.Labels \"kalpana.owner\"}}")?,
        alice_id
    );
    assert_eq!(
        docker_inspect(&container, "{{.HostConfig.CapDrop}}")?,
        "[ALL]"
    );
    assert_eq!(
        docker_inspect(&container, "{{.HostConfig.SecurityOpt}}")?,
        "[no-new-privileges:true]"
    );
    assert_eq!(
        docker_inspect(&container, "{{.HostConfig.Memory}}")?,
        (512u64 * 1024 * 1024).to_string()
    );
    // Docker publishes nothing: the daemon listens on the bucket's port itself.
    assert_eq!(
        docker_inspect(&container, "{{len .HostConfig.PortBindings}}")?,
        "0"
    );
    assert!(docker_exists(
        "volume",
        &format!("kalpana-bucket-{id}-data")
    ));

    // S3 with the returned endpoint and credentials: put, then get the same bytes.
    let s3 = s3_client(&endpoint, &access, &secret);
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    s3.put_object()
        .bucket("photos")
        .key("a/b.bin")
        .body(ByteStream::from(payload.clone()))
        .send()
        .await?;
    assert_eq!(get_bytes(&s3, "photos", "a/b.bin").await?, payload);

    // No later response carries the secret.
    let (status, again) = alice
        .send("GET", &format!("/api/buckets/{id}"), None)
        .await?;
    assert_eq!(status, 200);
    assert!(again.get("secretKey").is_none(), "{again}");
    let (_, list) = alice.send("GET", "/api/buckets", None).await?;
    assert!(!list.to_string().contains(&secret));

    // Stop: the container stops, status says so.
    let (status, stopped) = alice
        .send("POST", &format!("/api/buckets/{id}/stop"), None)
        .await?;
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["status"], "STOPPED");
    assert_eq!(docker_inspect(&container, "{{.State.Running}}")?, "false");
    // Stopping again is fine.
    let (status, _) = alice
        .send("POST", &format!("/api/buckets/{id}/stop"), None)
        .await?;
    assert_eq!(status, 200);

    // Start: the data written before the stop is still there.
    let (status, started) = alice
        .send("POST", &format!("/api/buckets/{id}/start"), None)
        .await?;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["status"], "RUNNING");
    assert_eq!(get_bytes(&s3, "photos", "a/b.bin").await?, payload);

    // Delete with the volume: container, volume and port are gone.
    let status = alice.delete_bucket(&id, true).await?;
    assert_eq!(status, 204);
    assert!(!docker_exists("container", &container));
    assert!(!docker_exists(
        "volume",
        &format!("kalpana-bucket-{id}-data")
    ));
    assert!(port_is_free(port), "port {port} still bound");
    let (status, body) = alice
        .send("GET", &format!("/api/buckets/{id}"), None)
        .await?;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let log = d.log();
    assert!(
        !log.contains(&secret),
        "the secret key appeared in the daemon log"
    );
    Ok(())
}

#[tokio::test]
async fn delete_without_volume_keeps_the_data_volume() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "keepme" })).await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id");
    let status = alice.delete_bucket(id, false).await?;
    assert_eq!(status, 204);
    assert!(!docker_exists("container", &format!("kalpana-bucket-{id}")));
    assert!(docker_exists(
        "volume",
        &format!("kalpana-bucket-{id}-data")
    ));
    Ok(())
}

/// Pool volumes labelled `kalpana.pool` for instance `instance`.
fn pool_volumes(instance: &str) -> anyhow::Result<Vec<String>> {
    let out = std::process::Command::new("docker")
        .args(["volume", "ls", "-q", "--filter"])
        .arg(format!("label=kalpana.instance={instance}"))
        .args(["--filter", "label=kalpana.pool"])
        .output()?;
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .map(String::from)
        .collect())
}

/// A volume made ahead keeps its `kalpana.pool` label once a bucket took it (Docker labels
/// cannot change), so the data a bucket leaves when deleted without `deleteVolume` carries it
/// too: a restart must not take that for a volume no bucket took, and remove it.
#[tokio::test]
async fn kept_data_on_a_volume_made_ahead_survives_a_restart() -> anyhow::Result<()> {
    let mut d = Daemon::start().await?;
    let started = std::time::Instant::now();
    while pool_volumes(&d.instance)?.len() < 2 {
        anyhow::ensure!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the volume pool made no volumes in 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (alice, _) = d.new_user("alice").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "pooled" })).await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let volume = format!("kalpana-bucket-{id}-data");
    assert_eq!(
        docker_inspect(&volume, "{{index .Labels \"kalpana.pool\"}}")?,
        "true",
        "the bucket did not take a volume made ahead; this test shows nothing"
    );
    let (status, put) = alice
        .put_object(&id, "keep.txt", b"kept".to_vec(), None)
        .await?;
    assert_eq!(status, 201, "{put}");
    assert_eq!(alice.delete_bucket(&id, false).await?, 204);

    d.kill();
    d.spawn().await?;
    // The new run removes what the last one made ahead and never gave out before it makes
    // volumes of its own: once it has two again, that removal is over.
    let started = std::time::Instant::now();
    loop {
        let left: Vec<String> = pool_volumes(&d.instance)?
            .into_iter()
            .filter(|v| *v != volume)
            .collect();
        if left.len() >= 2 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the restarted daemon's pool made no volumes in 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        docker_exists("volume", &volume),
        "the kept data volume was removed at restart"
    );
    let (status, o) = d.admin().send("GET", "/api/admin/orphans", None).await?;
    assert_eq!(status, 200, "{o}");
    assert!(
        o["volumes"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v["name"] == volume.as_str())),
        "the kept data volume is not listed as an orphan: {o}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_names_are_400_duplicates_409_and_leave_nothing() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    for name in [
        "ab",
        "Upper",
        "under_score",
        "-lead",
        "trail-",
        "a..b",
        "10.0.0.1",
        "xn--abc",
        "abc-s3alias",
        &"x".repeat(64),
    ] {
        let (status, body) = alice
            .send("POST", "/api/buckets", Some(json!({ "name": name })))
            .await?;
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body["error"]["code"], "bad_request");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("invalid bucket name"));
    }
    for body in [
        json!({}),
        json!({ "name": "ok-name", "bogus": 1 }),
        json!({ "name": "ok-name", "engine": "ceph" }),
    ] {
        let (status, resp) = alice
            .send("POST", "/api/buckets", Some(body.clone()))
            .await?;
        assert_eq!(status, 400, "{body}: {resp}");
        assert!(resp["error"]["message"].is_string());
    }
    let (_, list) = alice.send("GET", "/api/buckets", None).await?;
    assert_eq!(
        list["buckets"].as_array().map(Vec::len),
        Some(0),
        "no trace of refused creates"
    );

    let (status, _) = alice.create_bucket(json!({ "name": "dup" })).await?;
    assert_eq!(status, 201);
    let (status, body) = alice
        .send("POST", "/api/buckets", Some(json!({ "name": "dup" })))
        .await?;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    // Another owner may use the same name.
    let (bob, _) = d.new_user("bob").await?;
    let (status, b) = bob.create_bucket(json!({ "name": "dup" })).await?;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["status"], "RUNNING");
    assert_ne!(
        b["subdomain"], "dup",
        "subdomains stay unique across owners"
    );
    Ok(())
}

#[tokio::test]
async fn missing_image_leaves_error_naming_it_and_nothing_behind() -> anyhow::Result<()> {
    let image = "kalpana-test/absent-engine:0";
    let d = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_IMAGE_MINIO".into(), image.into())],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let (status, b) = alice
        .create_bucket(json!({ "name": "noimage", "engine": "minio" }))
        .await?;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["status"], "ERROR", "{b}");
    let msg = b["statusMessage"].as_str().unwrap_or("");
    assert!(msg.contains(image), "message names the image: {msg}");
    assert_eq!(b["port"], serde_json::Value::Null, "ports released");
    let id = b["id"].as_str().expect("id");
    assert!(!docker_exists("container", &format!("kalpana-bucket-{id}")));
    assert!(!docker_exists(
        "volume",
        &format!("kalpana-bucket-{id}-data")
    ));
    assert!(
        d.log().contains("image pull"),
        "the pull attempt is in the log"
    );
    // Deleting it cleans the record.
    let status = alice.delete_bucket(id, false).await?;
    assert_eq!(status, 204);
    Ok(())
}
