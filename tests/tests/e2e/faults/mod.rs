//! Crash tests: the daemon killed at every named fault point comes back and converges; bucket
//! containers killed or removed by hand come back with their data; Docker going away and coming
//! back; SIGTERM; the embedded store under SIGKILL.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt;
use kalpana_e2e::{
    docker_exists, docker_inspect, get_bytes, object_path, pattern, port_is_free, s3_client, Api,
    Daemon, DaemonOptions, DockerProxy,
};
use serde_json::{json, Value};

mod outages;
mod stops;

/// A bucket as the test knows it: id, name, direct S3 origin and the last secret it was handed.
struct Known {
    id: String,
    name: String,
    origin: String,
    access: String,
    secret: String,
}

impl Known {
    fn of(b: &Value) -> Self {
        Known {
            id: b["id"].as_str().expect("id").to_string(),
            name: b["name"].as_str().expect("name").to_string(),
            origin: format!("http://127.0.0.1:{}", b["port"].as_u64().expect("port")),
            access: b["accessKey"].as_str().expect("accessKey").to_string(),
            secret: b["secretKey"].as_str().unwrap_or_default().to_string(),
        }
    }

    fn s3(&self) -> aws_sdk_s3::Client {
        s3_client(&self.origin, &self.access, &self.secret)
    }

    fn container(&self) -> String {
        format!("kalpana-bucket-{}", self.id)
    }
}

async fn get(api: &Api, id: &str) -> anyhow::Result<(u16, Value)> {
    api.send("GET", &format!("/api/buckets/{id}"), None).await
}

/// Waits until the bucket has left CREATING, is not being brought back, and Docker agrees with
/// its status; returns the record. For a deleted bucket, waits until it is gone (404).
async fn converged(api: &Api, id: &str) -> anyhow::Result<Option<Value>> {
    let started = Instant::now();
    let mut last = Value::Null;
    while started.elapsed() < Duration::from_secs(60) {
        let (status, b) = get(api, id).await?;
        let container = format!("kalpana-bucket-{id}");
        // A bucket being deleted answers 404 at once; it is gone once Docker holds nothing of it.
        if status == 404 {
            if !docker_exists("container", &container)
                && !docker_exists("volume", &format!("{container}-data"))
            {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let running = docker_inspect(&container, "{{.State.Running}}").ok();
        let settled = match b["status"].as_str() {
            Some("RUNNING") => {
                running.as_deref() == Some("true")
                    && !b["statusMessage"]
                        .as_str()
                        .is_some_and(|m| m.ends_with("restarting it"))
            }
            Some("STOPPED") => running.as_deref() != Some("true"),
            Some("ERROR") => true,
            _ => false,
        };
        if settled {
            return Ok(Some(b));
        }
        last = b;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("bucket {id} did not converge in 60 s; last seen {last}")
}

async fn orphans(d: &Daemon) -> anyhow::Result<Value> {
    let (status, o) = d.admin().send("GET", "/api/admin/orphans", None).await?;
    assert_eq!(status, 200, "{o}");
    Ok(o)
}

fn assert_no_orphans(o: &Value, point: &str) {
    assert_eq!(o["containers"], json!([]), "after {point}: {o}");
    assert_eq!(o["volumes"], json!([]), "after {point}: {o}");
}

fn generation(k: &Known) -> anyhow::Result<u64> {
    Ok(docker_inspect(
        &k.container(),
        "{{index .Config.Labels \"kalpana.generation\"}}",
    )?
    .parse()?)
}

/// Restarts the daemon armed with `point`, runs `trigger` (whose answer never comes), and checks
/// that the daemon died there by SIGKILL; then restarts it unarmed.
async fn crash_at<F, Fut>(
    d: &mut Daemon,
    token: &str,
    point: &str,
    trigger: F,
) -> anyhow::Result<Api>
where
    F: FnOnce(Api) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(u16, Value)>> + Send + 'static,
{
    let (api, answer) = d.crash_at(token, point, trigger).await?;
    assert!(
        answer.is_err(),
        "{point}: the call got an answer from a daemon that died: {answer:?}"
    );
    Ok(api)
}

async fn s3_roundtrip(k: &Known, key: &str, body: &[u8]) -> anyhow::Result<()> {
    k.s3()
        .put_object()
        .bucket(&k.name)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await?;
    assert_eq!(get_bytes(&k.s3(), &k.name, key).await?, body);
    Ok(())
}

/// Rotates the secret (unarmed daemon) so the test holds working credentials again.
async fn rotate(api: &Api, k: &mut Known) -> anyhow::Result<()> {
    let (status, b) = api
        .send(
            "POST",
            &format!("/api/buckets/{}/credentials/rotate", k.id),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{b}");
    k.secret = b["secretKey"].as_str().expect("new secret").to_string();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fault_point_converges_after_a_kill() -> anyhow::Result<()> {
    let mut d = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_BASE_DOMAIN".into(), "faults.test".into())],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let token = alice.raw().2.expect("token").to_string();
    let data = pattern(100_000, 7);

    // Creation, at each step: the bucket is finished (the record was the intent) and serves S3
    // once its credentials are rotated (the caller never got the first secret).
    for (n, point) in [
        "create.recorded",
        "provision.volume",
        "provision.container",
        "provision.ready",
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("crash{n}");
        let body = json!({ "name": name });
        let alice = crash_at(&mut d, &token, point, move |api| async move {
            api.create_bucket(body).await
        })
        .await?;
        let (_, mine) = alice.send("GET", "/api/buckets", None).await?;
        let b = mine["buckets"]
            .as_array()
            .expect("buckets")
            .iter()
            .find(|b| b["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{point}: no bucket {name} in {mine}"))
            .clone();
        let id = b["id"].as_str().expect("id").to_string();
        let b = converged(&alice, &id).await?.expect("bucket kept");
        assert_eq!(b["status"], "RUNNING", "{point}: {b}");
        let mut k = Known::of(&b);
        rotate(&alice, &mut k).await?;
        s3_roundtrip(&k, "after-crash", &data).await?;
        assert_no_orphans(&orphans(&d).await?, point);
        assert_eq!(alice.delete_bucket(&id, true).await?, 204);
    }

    // A bucket for the rest: data written before every crash must survive all of them.
    let mut alice = d.api(&token);
    let (status, b) = alice.create_bucket(json!({ "name": "steady" })).await?;
    assert_eq!(status, 201, "{b}");
    let mut k = Known::of(&b);
    s3_roundtrip(&k, "before", &data).await?;

    // Start killed after the container runs, before RUNNING is recorded: rolled back to STOPPED
    // (the caller never heard it succeed), the container stopped again.
    let (status, _) = alice
        .send("POST", &format!("/api/buckets/{}/stop", k.id), None)
        .await?;
    assert_eq!(status, 200);
    let path = format!("/api/buckets/{}/start", k.id);
    alice = crash_at(&mut d, &token, "start.running", move |api| async move {
        api.send("POST", &path, None).await
    })
    .await?;
    let b = converged(&alice, &k.id).await?.expect("kept");
    assert_eq!(b["status"], "STOPPED", "start.running: {b}");
    assert_eq!(
        docker_inspect(&k.container(), "{{.State.Running}}")?,
        "false"
    );
    assert_no_orphans(&orphans(&d).await?, "start.running");
    let (status, b) = alice
        .send("POST", &format!("/api/buckets/{}/start", k.id), None)
        .await?;
    assert_eq!(status, 200, "{b}");

    // Stop killed after the container stopped (STOPPED was recorded first, as the intent):
    // finished, the bucket STOPPED without the "stopping" note, and it starts again.
    let path = format!("/api/buckets/{}/stop", k.id);
    alice = crash_at(&mut d, &token, "stop.stopped", move |api| async move {
        api.send("POST", &path, None).await
    })
    .await?;
    let b = converged(&alice, &k.id).await?.expect("kept");
    assert_eq!(b["status"], "STOPPED", "stop.stopped: {b}");
    assert_no_orphans(&orphans(&d).await?, "stop.stopped");
    let started = Instant::now();
    while get(&alice, &k.id).await?.1["statusMessage"] != Value::Null {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "stopping note kept"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, b) = alice
        .send("POST", &format!("/api/buckets/{}/start", k.id), None)
        .await?;
    assert_eq!(status, 200, "{b}");
    assert_eq!(get_bytes(&k.s3(), &k.name, "before").await?, data);

    // Rotation and container replacement, killed at each step: the new configuration (recorded
    // first) wins, the old secret stops working, the data stays.
    for point in [
        "rotate.recorded",
        "replace.stopped",
        "replace.removed",
        "replace.created",
    ] {
        let before = generation(&k)?;
        let path = format!("/api/buckets/{}/credentials/rotate", k.id);
        alice = crash_at(&mut d, &token, point, move |api| async move {
            api.send("POST", &path, None).await
        })
        .await?;
        // The record holds the new generation; the restarted daemon's first reconcile pass
        // replaces the container (after the old one may briefly look settled).
        let started = Instant::now();
        while generation(&k).unwrap_or(before) != before + 1 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{point}: container not replaced"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let b = converged(&alice, &k.id).await?.expect("kept");
        assert_eq!(b["status"], "RUNNING", "{point}: {b}");
        let old = k
            .s3()
            .get_object()
            .bucket(&k.name)
            .key("before")
            .send()
            .await;
        assert!(old.is_err(), "{point}: the old secret still works");
        rotate(&alice, &mut k).await?;
        assert_eq!(
            get_bytes(&k.s3(), &k.name, "before").await?,
            data,
            "{point}"
        );
        assert_no_orphans(&orphans(&d).await?, point);
    }

    // A domain link killed after it was recorded: the container is replaced with the link's
    // route label.
    let (status, dom) = alice
        .send(
            "POST",
            "/api/domains",
            Some(json!({ "name": "crash.test" })),
        )
        .await?;
    assert_eq!(status, 201, "{dom}");
    let (status, approved) = d
        .admin()
        .send(
            "POST",
            &format!("/api/domains/{}/approve", dom["id"].as_str().expect("id")),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{approved}");
    let link = json!({ "domainId": dom["id"], "subdomain": "files" });
    let path = format!("/api/buckets/{}/domain", k.id);
    alice = crash_at(&mut d, &token, "link.recorded", move |api| async move {
        api.send("POST", &path, Some(link)).await
    })
    .await?;
    let started = Instant::now();
    loop {
        let labels = docker_inspect(&k.container(), "{{json .Config.Labels}}").unwrap_or_default();
        if labels.contains("files.crash.test") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "link.recorded: route of the link missing: {labels}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = converged(&alice, &k.id).await?.expect("kept");
    assert_eq!(b["status"], "RUNNING", "link.recorded: {b}");
    assert_eq!(get_bytes(&k.s3(), &k.name, "before").await?, data);
    assert_no_orphans(&orphans(&d).await?, "link.recorded");

    // Delete killed after the mark, and after the container went: finished, nothing left.
    let port = b["port"].as_u64().expect("port") as u16;
    let mut second = {
        let (status, b) = alice.create_bucket(json!({ "name": "doomed" })).await?;
        assert_eq!(status, 201, "{b}");
        Known::of(&b)
    };
    for (point, k) in [("delete.marked", &mut k), ("delete.container", &mut second)] {
        let path = format!("/api/buckets/{}?deleteVolume=true", k.id);
        alice = crash_at(&mut d, &token, point, move |api| async move {
            api.send("DELETE", &path, None).await
        })
        .await?;
        assert!(
            converged(&alice, &k.id).await?.is_none(),
            "{point}: still there"
        );
        assert!(!docker_exists("container", &k.container()), "{point}");
        assert!(
            !docker_exists("volume", &format!("{}-data", k.container())),
            "{point}"
        );
        assert_no_orphans(&orphans(&d).await?, point);
    }
    assert!(port_is_free(port), "port {port} still bound");
    // The ports of every bucket came back: none is reserved any more.
    let (_, all) = d.admin().send("GET", "/api/buckets", None).await?;
    assert_eq!(all["buckets"], json!([]), "{all}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn orphans_are_reported_and_removed_only_on_an_admin_call() -> anyhow::Result<()> {
    // What a daemon whose store was lost (or restored from an old backup) would find: a
    // container and a volume labelled for its instance that no record accounts for.
    let d = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_RESYNC_SECS".into(), "1".into())],
        ..Default::default()
    })
    .await?;
    let ghost = "01a2000000000000000000000000beef";
    let container = format!("kalpana-bucket-{ghost}");
    let volume = format!("{container}-data");
    let labels = [
        "kalpana.managed=true".to_string(),
        format!("kalpana.instance={}", d.instance),
        format!("kalpana.bucket.id={ghost}"),
    ];
    let mut vol = std::process::Command::new("docker");
    vol.args(["volume", "create"]);
    let mut ctr = std::process::Command::new("docker");
    ctr.args(["create", "--name", &container]);
    for l in &labels {
        vol.args(["--label", l]);
        ctr.args(["--label", l]);
    }
    vol.arg(&volume).stdout(std::process::Stdio::null());
    ctr.arg(kalpana_e2e::ENGINE_IMAGE)
        .stdout(std::process::Stdio::null());
    assert!(vol.status()?.success() && ctr.status()?.success());
    let o = orphans(&d).await?;
    assert_eq!(o["containers"][0]["name"], container.as_str(), "{o}");
    assert_eq!(o["volumes"][0]["name"], volume.as_str(), "{o}");
    // The reconcile pass logged them and left them in place.
    let started = Instant::now();
    while !d.log().contains("orphan: managed container") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no orphan log line"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(docker_exists("container", &container));
    assert!(docker_exists("volume", &volume));

    // Only an admin may remove them, and only orphans.
    let (user, _) = d.new_user("alice").await?;
    let (status, _) = user.send("GET", "/api/admin/orphans", None).await?;
    assert_eq!(status, 403);
    let path = format!("/api/admin/orphans/containers/{container}");
    let (status, _) = user.send("DELETE", &path, None).await?;
    assert_eq!(status, 403);
    let (status, b2) = d.admin().create_bucket(json!({ "name": "kept" })).await?;
    assert_eq!(status, 201, "{b2}");
    let own = format!("kalpana-bucket-{}", b2["id"].as_str().expect("id"));
    let (status, e) = d
        .admin()
        .send(
            "DELETE",
            &format!("/api/admin/orphans/containers/{own}"),
            None,
        )
        .await?;
    assert_eq!(
        status, 404,
        "a bucket's own container is not an orphan: {e}"
    );
    assert!(docker_exists("container", &own));
    let (status, _) = d.admin().send("DELETE", &path, None).await?;
    assert_eq!(status, 204);
    assert!(!docker_exists("container", &container));
    let (status, _) = d
        .admin()
        .send(
            "DELETE",
            &format!("/api/admin/orphans/volumes/{volume}"),
            None,
        )
        .await?;
    assert_eq!(status, 204);
    assert!(!docker_exists("volume", &volume));
    assert_no_orphans(&orphans(&d).await?, "admin removal");
    Ok(())
}
