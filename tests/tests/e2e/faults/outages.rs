//! Bucket containers killed or removed by hand, and Docker going away and coming back.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_or_removed_container_comes_back_with_its_data() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "phoenix" })).await?;
    assert_eq!(status, 201, "{b}");
    let k = Known::of(&b);
    let data = pattern(300_000, 3);
    s3_roundtrip(&k, "keep", &data).await?;

    for (how, args, expect) in [
        ("killed", ["kill", ""], "container exited (code 137)"),
        ("removed by hand", ["rm", "-f"], "container "),
    ] {
        let before = docker_inspect(&k.container(), "{{.Id}}")?;
        let mut cmd = std::process::Command::new("docker");
        cmd.arg(args[0]);
        if !args[1].is_empty() {
            cmd.arg(args[1]);
        }
        assert!(cmd
            .arg(k.container())
            .stdout(std::process::Stdio::null())
            .status()?
            .success());
        // The record says so at once, before the container is back.
        let started = Instant::now();
        let mut seen = None;
        while started.elapsed() < Duration::from_secs(10) {
            let (_, b) = get(&alice, &k.id).await?;
            if let Some(m) = b["statusMessage"].as_str() {
                if m.contains(expect) {
                    seen = Some((started.elapsed(), m.to_string()));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (after, message) = seen.unwrap_or_else(|| panic!("{how}: no status message"));
        println!("{how}: statusMessage {message:?} after {after:?}");
        let b = converged(&alice, &k.id).await?.expect("kept");
        assert_eq!(b["status"], "RUNNING", "{how}: {b}");
        assert!(
            b["statusMessage"]
                .as_str()
                .is_some_and(|m| m.contains("back up at")),
            "{how}: {b}"
        );
        assert_eq!(get_bytes(&k.s3(), &k.name, "keep").await?, data, "{how}");
        if how == "removed by hand" {
            assert_ne!(docker_inspect(&k.container(), "{{.Id}}")?, before);
        }
    }
    let log = d.log();
    assert!(log.contains("bucket container went down"), "no log line");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_going_away_is_503_reads_go_on_and_it_recovers() -> anyhow::Result<()> {
    let proxy = DockerProxy::start().await?;
    let mut d = Daemon::start_with(DaemonOptions {
        env: vec![("DOCKER_HOST".into(), proxy.docker_host())],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "steady" })).await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let data = pattern(50_000, 9);
    let (status, _) = alice.put_object(&id, "doc", data.clone(), None).await?;
    assert_eq!(status, 201);

    proxy.cut();
    let (status, ready) = d.anonymous().send("GET", "/readyz", None).await?;
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["docker"]
            .as_str()
            .is_some_and(|m| m.contains("Docker")),
        "{ready}"
    );
    assert_eq!(ready["store"], "ok");
    let (status, e) = alice.create_bucket(json!({ "name": "during" })).await?;
    assert_eq!(status, 503, "{e}");
    assert_eq!(e["error"]["code"], "docker_unavailable", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Docker is unreachable")),
        "{e}"
    );
    for path in ["stop", "start", "credentials/rotate"] {
        let (status, e) = alice
            .send("POST", &format!("/api/buckets/{id}/{path}"), None)
            .await?;
        assert_eq!(status, 503, "{path}: {e}");
    }
    let (status, _) = alice
        .send("DELETE", &format!("/api/buckets/{id}"), None)
        .await?;
    assert_eq!(status, 503);
    // Reads of the store and of the running bucket's objects keep working.
    let (status, list) = alice.send("GET", "/api/buckets", None).await?;
    assert_eq!(status, 200);
    assert_eq!(list["buckets"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["buckets"][0]["status"], "RUNNING");
    let got = alice
        .request(reqwest::Method::GET, &object_path(&id, "doc"))
        .send()
        .await?;
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await?.to_vec(), data);
    let (status, _) = alice
        .send("GET", &format!("/api/buckets/{id}/stats"), None)
        .await?;
    assert_eq!(status, 200);

    // Docker back: ready again without a restart, and bucket operations work.
    proxy.restore()?;
    wait_ready(&d, Duration::from_secs(15)).await?;
    let (status, b2) = alice.create_bucket(json!({ "name": "after" })).await?;
    assert_eq!(status, 201, "{b2}");
    assert_eq!(b2["status"], "RUNNING", "{b2}");

    // Docker away at start-up: the daemon starts, says it is not ready, and recovers.
    let token = alice.raw().2.expect("token").to_string();
    d.kill();
    proxy.cut();
    d.spawn().await?;
    let alice = d.api(&token);
    let (status, _) = d.anonymous().send("GET", "/readyz", None).await?;
    assert_eq!(status, 503);
    let (status, list) = alice.send("GET", "/api/buckets", None).await?;
    assert_eq!(status, 200);
    assert_eq!(list["buckets"].as_array().map(Vec::len), Some(2), "{list}");
    proxy.restore()?;
    wait_ready(&d, Duration::from_secs(15)).await?;
    let (status, b) = alice
        .send("POST", &format!("/api/buckets/{id}/stop"), None)
        .await?;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["status"], "STOPPED");
    assert!(d.log().contains("the container runtime is reachable again"));
    Ok(())
}

async fn wait_ready(d: &Daemon, within: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let (status, body) = d.anonymous().send("GET", "/readyz", None).await?;
        if status == 200 {
            println!("ready again after {:?}", started.elapsed());
            return Ok(());
        }
        if started.elapsed() > within {
            anyhow::bail!("not ready after {within:?}: {body}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
