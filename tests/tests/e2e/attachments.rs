//! Attachments: a workspace container labelled for the bucket's workspace joins the bucket's
//! attachment network with a key of its own and reaches S3 at the internal endpoint by name, with
//! nothing but the env block the attachment answered (`kalpana-s3-probe`, an aws-sdk-s3 client
//! built by this workspace, in an image of its own); it keeps working when the bucket's container
//! is replaced, and loses both when detached. Unlabelled containers and another user's are a 404
//! and connected to nothing. A container name outside Docker's grammar is a 400 before Docker is
//! asked anything; an attached container reaches the engine's S3 port and none of its internal
//! ones; a team viewer neither links buckets to the team's workspace nor attaches its containers.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kalpana_e2e::probe::{connects_from_netns, container_ip, container_pid};
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

/// The engine's internal ports (filer, master, volume server, admin server and their gRPC
/// ports), which no attached container may open.
const INTERNAL_PORTS: [u16; 9] = [9333, 23646, 8888, 9340, 18888, 19333, 19340, 18333, 33646];

#[tokio::test]
async fn container_names_outside_dockers_grammar_are_refused_before_docker_and_attached_containers_reach_only_s3(
) -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (status, w) = alice
        .send("POST", "/api/workspaces", Some(json!({ "name": "dev" })))
        .await?;
    assert_eq!(status, 201, "{w}");
    let wid = w["id"].as_str().expect("id").to_string();
    let (status, b) = alice
        .create_bucket(json!({ "name": "guarded", "workspaceId": wid }))
        .await?;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["status"], "RUNNING", "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let bucket_container = format!("kalpana-bucket-{id}");
    let path = format!("/api/buckets/{id}/attachments");
    let network = format!("kalpana-att-{id}");

    // Names that would reach other Docker endpoints (the engine's version, a whole container's
    // filesystem, the endless event stream) are refused at once.
    let export = format!("{bucket_container}/export?");
    for container in ["../../version?", export.as_str(), "../../events?"] {
        let started = Instant::now();
        let (status, e) = tokio::time::timeout(
            Duration::from_secs(5),
            alice.send("POST", &path, Some(json!({ "container": container }))),
        )
        .await
        .map_err(|_| anyhow::anyhow!("no answer within 5 s for {container:?}"))??;
        println!(
            "attach {container:?}: {status} {e} after {:?}",
            started.elapsed()
        );
        assert_eq!(status, 400, "{container:?}: {e}");
        assert_eq!(e["error"]["code"], "bad_request", "{e}");
    }

    // Six exports at once: all refused, and the daemon's memory does not grow by a filesystem.
    let pid = d.pid().expect("daemon pid");
    let hwm_before = kalpana_e2e::proc_memory(pid, "VmHWM").expect("VmHWM");
    let started = Instant::now();
    let answers = futures::future::join_all((0..6).map(|_| {
        let alice = alice.clone();
        let path = path.clone();
        let export = export.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(5),
                alice.send("POST", &path, Some(json!({ "container": export }))),
            )
            .await
        }
    }))
    .await;
    let took = started.elapsed();
    let hwm_after = kalpana_e2e::proc_memory(pid, "VmHWM").expect("VmHWM");
    for a in answers {
        let (status, e) =
            a.map_err(|_| anyhow::anyhow!("an export got no answer within 5 s"))??;
        assert_eq!(status, 400, "{e}");
        assert_eq!(e["error"]["code"], "bad_request", "{e}");
    }
    const MIB: u64 = 1024 * 1024;
    println!(
        "six concurrent exports: all 400 in {took:?}; daemon VmHWM {:.1} MiB before, {:.1} MiB after",
        hwm_before as f64 / MIB as f64,
        hwm_after as f64 / MIB as f64
    );
    assert!(
        hwm_after.saturating_sub(hwm_before) < 64 * MIB,
        "peak RSS grew from {hwm_before} to {hwm_after} bytes"
    );
    let (_, list) = alice.send("GET", &path, None).await?;
    assert_eq!(list["attachments"], json!([]), "{list}");
    assert!(!kalpana_e2e::docker_exists("network", &network));

    // An attached container reaches the engine's S3 port on the attachment network and none of
    // its internal ports: the daemon's firewall resets them on the network's bridge.
    let workload = Workload::start(&[format!("kalpana.workspace.id={wid}")])?;
    let (status, a) = alice
        .send(
            "POST",
            &path,
            Some(json!({ "container": workload.0, "access": "read" })),
        )
        .await?;
    assert_eq!(status, 201, "{a}");
    let bridge = format!("kba{}", &id[id.len() - 12..]);
    assert_eq!(
        kalpana_e2e::docker_inspect(
            &network,
            "{{index .Options \"com.docker.network.bridge.name\"}}"
        )?,
        bridge
    );
    for parent in ["OUTPUT", "DOCKER-USER"] {
        // `-C` only checks that the rule is there.
        let there = Command::new("iptables")
            .args(["-w", "-C", parent, "-o", &bridge, "-j", "KALPANA-ISOLATE"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success();
        assert!(there, "no {parent} jump to KALPANA-ISOLATE for {bridge}");
    }
    let bucket_ip = container_ip(&bucket_container, &network)?;
    let from = container_pid(&workload.0)?;
    assert!(
        connects_from_netns(from, bucket_ip, 8333)?,
        "the attached container should reach S3 at {bucket_ip}:8333"
    );
    let started = Instant::now();
    let reached: Vec<String> = std::thread::scope(|scope| {
        let probes: Vec<_> = INTERNAL_PORTS
            .map(|port| {
                scope.spawn(move || match connects_from_netns(from, bucket_ip, port) {
                    Ok(false) => None,
                    Ok(true) => Some(format!("reached {bucket_ip}:{port}")),
                    Err(e) => Some(format!("probe of {port} failed: {e}")),
                })
            })
            .into_iter()
            .collect();
        probes
            .into_iter()
            .filter_map(|p| p.join().unwrap_or(Some("a probe panicked".into())))
            .collect()
    });
    println!(
        "from the attached container, {bucket_ip} on {network} (bridge {bridge}): 8333 opens, {} internal ports refused in {:?}",
        INTERNAL_PORTS.len(),
        started.elapsed()
    );
    assert!(reached.is_empty(), "{reached:?}");
    Ok(())
}

#[tokio::test]
async fn a_team_viewer_neither_links_buckets_to_the_teams_workspace_nor_attaches_its_containers(
) -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (bob, bob_id) = d.new_user("bob").await?;
    let (carol, carol_id) = d.new_user("carol").await?;
    let (dave, dave_id) = d.new_user("dave").await?;
    let (status, team) = alice
        .send("POST", "/api/teams", Some(json!({ "name": "crew" })))
        .await?;
    assert_eq!(status, 201, "{team}");
    let tid = team["id"].as_str().expect("id").to_string();
    let members = format!("/api/teams/{tid}/members");
    for (user, role) in [
        (&bob_id, "member"),
        (&carol_id, "viewer"),
        (&dave_id, "member"),
    ] {
        let (status, body) = alice
            .send(
                "POST",
                &members,
                Some(json!({ "userId": user, "role": role })),
            )
            .await?;
        assert_eq!(status, 200, "{body}");
    }
    let (status, w) = alice
        .send(
            "POST",
            "/api/workspaces",
            Some(json!({ "name": "crew box", "teamId": tid })),
        )
        .await?;
    assert_eq!(status, 201, "{w}");
    let wid = w["id"].as_str().expect("id").to_string();
    let label = format!("kalpana.workspace.id={wid}");
    let (_, seen) = carol.send("GET", "/api/workspaces", None).await?;
    assert!(seen.to_string().contains(&wid), "a viewer sees it: {seen}");

    // A viewer cannot link a personal bucket to it, on create (nothing stored) or later.
    let (status, e) = carol
        .create_bucket(json!({ "name": "carols", "workspaceId": wid }))
        .await?;
    println!("viewer create with the team's workspace: {status} {e}");
    assert_eq!(status, 403, "{e}");
    assert_eq!(e["error"]["code"], "forbidden", "{e}");
    let (_, none) = carol.send("GET", "/api/buckets", None).await?;
    assert_eq!(none["buckets"], json!([]), "nothing stored: {none}");
    let (status, plain) = carol.create_bucket(json!({ "name": "carols" })).await?;
    assert_eq!(status, 201, "{plain}");
    let carols = plain["id"].as_str().expect("id").to_string();
    // A member may link, and attach the workspace's containers.
    let (status, linked) = bob
        .create_bucket(json!({ "name": "bobs", "workspaceId": wid }))
        .await?;
    assert_eq!(status, 201, "{linked}");
    assert_eq!(linked["workspaceId"], wid.as_str(), "{linked}");
    let (status, daves) = dave
        .create_bucket(json!({ "name": "daves", "workspaceId": wid }))
        .await?;
    assert_eq!(status, 201, "{daves}");
    let daves = daves["id"].as_str().expect("id").to_string();
    let first = Workload::start(std::slice::from_ref(&label))?;
    let (status, a) = dave
        .send(
            "POST",
            &format!("/api/buckets/{daves}/attachments"),
            Some(json!({ "container": first.0, "access": "read" })),
        )
        .await?;
    assert_eq!(status, 201, "a member attaches: {a}");

    // Dave demoted to viewer: his bucket stays linked, but he attaches nothing more to it.
    let (status, body) = alice
        .send(
            "POST",
            &members,
            Some(json!({ "userId": dave_id, "role": "viewer" })),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let second = Workload::start(std::slice::from_ref(&label))?;
    let (status, e) = dave
        .send(
            "POST",
            &format!("/api/buckets/{daves}/attachments"),
            Some(json!({ "container": second.0 })),
        )
        .await?;
    println!("viewer attaching a container labelled for the team's workspace: {status} {e}");
    assert_eq!(status, 403, "{e}");
    assert!(
        !second.networks().contains("kalpana-att-"),
        "{}",
        second.networks()
    );
    // Nor to a team bucket linked to that workspace.
    let (status, team_bucket) = bob
        .create_bucket(json!({ "name": "crew-data", "teamId": tid, "workspaceId": wid }))
        .await?;
    assert_eq!(status, 201, "{team_bucket}");
    let (status, e) = carol
        .send(
            "POST",
            &format!(
                "/api/buckets/{}/attachments",
                team_bucket["id"].as_str().expect("id")
            ),
            Some(json!({ "container": second.0 })),
        )
        .await?;
    assert_eq!(status, 403, "{e}");
    assert!(!second.networks().contains("kalpana-att-"));

    // Linking an existing bucket (PATCH workspaceId): refused to the viewer, allowed to a member
    // (both asked before either answer is checked).
    let (viewer_status, viewer_answer) = carol
        .send(
            "PATCH",
            &format!("/api/buckets/{carols}"),
            Some(json!({ "workspaceId": wid })),
        )
        .await?;
    println!("viewer PATCH workspaceId: {viewer_status} {viewer_answer}");
    let (_, still) = carol
        .send("GET", &format!("/api/buckets/{carols}"), None)
        .await?;
    let (status, later) = bob.create_bucket(json!({ "name": "bobs-later" })).await?;
    assert_eq!(status, 201, "{later}");
    let later_id = later["id"].as_str().expect("id").to_string();
    let (member_status, patched) = bob
        .send(
            "PATCH",
            &format!("/api/buckets/{later_id}"),
            Some(json!({ "workspaceId": wid })),
        )
        .await?;
    println!("member PATCH workspaceId: {member_status} {patched}");
    assert!(still["workspaceId"].is_null(), "{still}");
    assert_eq!(viewer_status, 403, "viewer PATCH: {viewer_answer}");
    assert_eq!(member_status, 200, "member PATCH: {patched}");
    assert_eq!(patched["workspaceId"], wid.as_str(), "{patched}");
    Ok(())
}
