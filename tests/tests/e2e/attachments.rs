//! Attachments: a workspace container labelled for the bucket's workspace joins the bucket's
//! attachment network with a key of its own, reaches S3 there (requests signed by curl inside
//! its network namespace), keeps working when the bucket's container is replaced, and loses both
//! when detached. Unlabelled containers and another user's are a 404 and connected to nothing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kalpana_e2e::probe::{connects_from_netns, container_ip, container_pid};
use kalpana_e2e::{Daemon, ENGINE_IMAGE};
use serde_json::{json, Value};

/// A long-running container with these labels, removed when dropped.
struct Workload(String);

impl Workload {
    fn start(labels: &[String]) -> anyhow::Result<Self> {
        let name = format!("kalpana-workload-{}", uuid::Uuid::new_v4().simple());
        let mut cmd = Command::new("docker");
        cmd.args(["run", "-d", "--name", &name]);
        for l in labels {
            cmd.args(["--label", l]);
        }
        let ok = cmd
            .args([ENGINE_IMAGE, "master", "-mdir=/tmp", "-port=9333"])
            .stdout(Stdio::null())
            .status()?
            .success();
        anyhow::ensure!(ok, "docker run of a workload failed");
        Ok(Workload(name))
    }

    fn networks(&self) -> String {
        kalpana_e2e::docker_inspect(&self.0, "{{json .NetworkSettings.Networks}}")
            .unwrap_or_default()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// GET of `key` with `env`'s key, signed by curl inside `pid`'s network namespace, to `ip`:
/// the HTTP status (0 when nothing answered).
fn signed_get(pid: u32, ip: &str, env: &Value, bucket: &str, key: &str) -> u16 {
    let user = format!(
        "{}:{}",
        env["AWS_ACCESS_KEY_ID"].as_str().unwrap_or_default(),
        env["AWS_SECRET_ACCESS_KEY"].as_str().unwrap_or_default()
    );
    let out = Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-n",
            "curl",
            "-s",
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{http_code}", "--max-time", "3"])
        .args(["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", &user])
        .arg(format!("http://{ip}:8333/{bucket}/{key}"))
        .output();
    out.ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn labelled_workspace_containers_are_attached_with_their_own_key_and_nothing_else_is(
) -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (bob, _) = d.new_user("bob").await?;
    let (_, w) = alice
        .send("POST", "/api/workspaces", Some(json!({ "name": "dev" })))
        .await?;
    let wid = w["id"].as_str().expect("id").to_string();
    let (_, bw) = bob
        .send("POST", "/api/workspaces", Some(json!({ "name": "bob" })))
        .await?;
    let bob_wid = bw["id"].as_str().expect("id").to_string();
    let (status, b) = alice
        .create_bucket(json!({ "name": "shared", "workspaceId": wid }))
        .await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let (status, _) = alice
        .put_object(&id, "hello.txt", b"hello".to_vec(), None)
        .await?;
    assert_eq!(status, 201);

    let mine = Workload::start(&[format!("kalpana.workspace.id={wid}")])?;
    let unlabelled = Workload::start(&[])?;
    let bobs = Workload::start(&[format!("kalpana.workspace.id={bob_wid}")])?;
    let attach = |container: &str| json!({ "container": container, "access": "read" });
    let path = format!("/api/buckets/{id}/attachments");

    // Refused, and connected to nothing.
    for (who, container, want) in [
        ("unlabelled", unlabelled.0.as_str(), 404),
        ("bob's workspace", bobs.0.as_str(), 404),
        ("missing", "no-such-container", 404),
    ] {
        let (status, e) = alice.send("POST", &path, Some(attach(container))).await?;
        assert_eq!(status, want, "{who}: {e}");
    }
    let (status, _) = bob.send("POST", &path, Some(attach(&bobs.0))).await?;
    assert_eq!(status, 404, "another user's bucket");
    for w in [&unlabelled, &bobs] {
        assert!(!w.networks().contains("kalpana-att-"), "{}", w.networks());
    }

    // Attached: on the bucket's attachment network with a read key.
    let (status, a) = alice.send("POST", &path, Some(attach(&mine.0))).await?;
    assert_eq!(status, 201, "{a}");
    let env = a["env"].clone();
    assert_eq!(env["S3_BUCKET"], "shared");
    assert!(env["AWS_ENDPOINT_URL"]
        .as_str()
        .is_some_and(|e| e.contains(&format!("kalpana-bucket-{id}"))));
    let network = format!("kalpana-att-{id}");
    let bucket_container = format!("kalpana-bucket-{id}");
    let ip = container_ip(&bucket_container, &network)?.to_string();
    let pid = container_pid(&mine.0)?;
    assert_eq!(signed_get(pid, &ip, &env, "shared", "hello.txt"), 200);
    assert_eq!(
        signed_get(pid, &ip, &env, "shared", "missing.txt"),
        404,
        "a read key reads, and gets a 404 for a missing key"
    );
    // Others are not on that network.
    let other_pid = container_pid(&unlabelled.0)?;
    assert!(!connects_from_netns(other_pid, ip.parse()?, 8333)?);
    let (_, list) = alice.send("GET", &path, None).await?;
    assert_eq!(list["attachments"].as_array().map(Vec::len), Some(1));
    assert!(!list.to_string().contains("AWS_SECRET_ACCESS_KEY"));

    // The bucket's container replaced (root rotation): it joins the network again.
    let (status, _) = alice
        .send(
            "POST",
            &format!("/api/buckets/{id}/credentials/rotate"),
            None,
        )
        .await?;
    assert_eq!(status, 200);
    let started = Instant::now();
    loop {
        if let Ok(ip) = container_ip(&bucket_container, &network) {
            if signed_get(pid, &ip.to_string(), &env, "shared", "hello.txt") == 200 {
                break;
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the attached container never reached the replaced bucket container"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "reached again {:?} after the replacement",
        started.elapsed()
    );

    // Detached: key revoked, container disconnected, network gone.
    let aid = a["id"].as_str().expect("id");
    let (status, _) = alice.send("DELETE", &format!("{path}/{aid}"), None).await?;
    assert_eq!(status, 204);
    assert!(!mine.networks().contains(&network), "{}", mine.networks());
    assert!(!kalpana_e2e::docker_exists("network", &network));
    let (_, keys) = alice
        .send("GET", &format!("/api/buckets/{id}/keys"), None)
        .await?;
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(0), "{keys}");
    Ok(())
}
