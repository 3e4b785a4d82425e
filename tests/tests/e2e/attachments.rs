//! Attachments: a workspace container labelled for the bucket's workspace joins the bucket's
//! attachment network with a key of its own and reaches S3 at the internal endpoint by name, with
//! nothing but the env block the attachment answered (`kalpana-s3-probe`, an aws-sdk-s3 client
//! built by this workspace, in an image of its own); it keeps working when the bucket's container
//! is replaced, and loses both when detached. Unlabelled containers and another user's are a 404
//! and connected to nothing.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kalpana_e2e::Daemon;
use serde_json::{json, Value};

/// The image of the S3 client, built once per test process.
const PROBE_IMAGE: &str = "kalpana-test/s3-probe:latest";

fn probe_image() -> anyhow::Result<&'static str> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let bin = std::path::Path::new(env!("CARGO_BIN_EXE_kalpana-s3-probe"));
            kalpana_e2e::images::image_from_binary(bin, PROBE_IMAGE).map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)?;
    Ok(PROBE_IMAGE)
}

/// A long-running container of the S3 client image with these labels, removed when dropped.
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
            .args([probe_image()?, "sleep"])
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

    /// Runs the S3 client inside this container with `env` as its whole configuration: the
    /// HTTP status the engine answered, 0 when nothing answered.
    fn s3(&self, env: &Value, args: &[&str]) -> u16 {
        let mut cmd = Command::new("docker");
        cmd.arg("exec");
        if let Some(vars) = env.as_object() {
            for (k, v) in vars {
                cmd.args(["-e", &format!("{k}={}", v.as_str().unwrap_or_default())]);
            }
        }
        cmd.args([&self.0, "/kalpana-s3-probe"]).args(args);
        cmd.output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(0)
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
    assert_eq!(mine.s3(&env, &["get", "hello.txt"]), 200);
    assert_eq!(mine.s3(&env, &["list"]), 200);
    assert_eq!(
        mine.s3(&env, &["get", "missing.txt"]),
        404,
        "a read key reads, and gets a 404 for a missing key"
    );
    assert_eq!(
        mine.s3(&env, &["put", "new.txt", "x"]),
        403,
        "a read key cannot write"
    );
    // Others are not on that network: the same env reaches nothing from there.
    assert_eq!(unlabelled.s3(&env, &["get", "hello.txt"]), 0);
    assert_eq!(bobs.s3(&env, &["get", "hello.txt"]), 0);
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
        if mine.s3(&env, &["get", "hello.txt"]) == 200 {
            break;
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
    assert_eq!(mine.s3(&env, &["get", "hello.txt"]), 0, "cut off");
    assert!(!kalpana_e2e::docker_exists("network", &network));
    let (_, keys) = alice
        .send("GET", &format!("/api/buckets/{id}/keys"), None)
        .await?;
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(0), "{keys}");
    Ok(())
}
