//! The daemon on the test Swarm (`KALPANA_RUNTIME=swarm`) with a node agent on every node:
//! buckets made through the REST API spread over the nodes, samples of every node and bucket in
//! the fleet, a snapshot taken and restored on a worker by its agent (the archive's bytes never
//! cross the manager host's link), stop and start, keys, and a delete that leaves nothing on
//! any node. The agents' tokens speak for their own node only.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use kalpana_e2e::swarm::{require_cluster, Agents, Cluster, Traffic};
use kalpana_e2e::{noise, require_environment, until, Api, Daemon, DaemonOptions};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The host's address on the cluster's bridge: where the nodes reach the daemon.
const HOST_ON_CLUSTER: &str = "10.203.0.254";

/// The node address and port of a bucket's direct endpoint (`http://ip:port`).
fn ip_port(endpoint: &str) -> anyhow::Result<(String, u16)> {
    let hp = endpoint
        .strip_prefix("http://")
        .with_context(|| format!("an http endpoint: {endpoint}"))?;
    let (ip, port) = hp.split_once(':').context("host:port")?;
    Ok((ip.to_string(), port.trim_end_matches('/').parse()?))
}

/// Counts what the daemon's host exchanges with the S3 servers of `views` meanwhile.
fn count_traffic(views: &[&Value]) -> anyhow::Result<Vec<Traffic>> {
    views
        .iter()
        .map(|v| {
            let (ip, port) = ip_port(v["endpoint"].as_str().unwrap_or_default())?;
            Traffic::count(&ip, port)
        })
        .collect()
}

fn counted(t: &[Traffic]) -> anyhow::Result<u64> {
    t.iter().map(Traffic::bytes).sum()
}

async fn swarm_daemon(cluster: &Cluster) -> anyhow::Result<Daemon> {
    Daemon::start_with(DaemonOptions {
        env: vec![
            ("KALPANA_RUNTIME".into(), "swarm".into()),
            ("KALPANA_SWARM_MANAGER".into(), cluster.manager.clone()),
            ("KALPANA_LISTEN".into(), format!("{HOST_ON_CLUSTER}:0")),
            ("KALPANA_FLEET_SAMPLE_SECS".into(), "2".into()),
            ("KALPANA_SLEEP_AFTER_SECS".into(), "0".into()),
        ],
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_runs_buckets_across_the_swarm_with_an_agent_on_every_node() -> anyhow::Result<()>
{
    require_environment()?;
    let cluster = require_cluster()?;
    let d = swarm_daemon(&cluster).await?;
    let outcome = scenario(&cluster, &d).await;
    if outcome.is_err() {
        eprintln!("daemon log:\n{}", d.log());
    }
    cluster.remove_instance(&d.instance);
    outcome
}

async fn scenario(cluster: &Cluster, d: &Daemon) -> anyhow::Result<()> {
    let admin = d.admin();
    let nodes = cluster.node_refs()?;
    ensure!(nodes.len() == 3, "three nodes: {nodes:?}");

    // Enrolment: admins only, known nodes only.
    let (alice, _) = d.new_user("alice").await?;
    let (status, e) = alice
        .send("POST", &format!("/api/nodes/{}/token", nodes[0].id), None)
        .await?;
    ensure!(status == 403, "a user enrols no node: {status} {e}");
    let (status, e) = admin
        .send("POST", "/api/nodes/nosuchnode0000000000000000/token", None)
        .await?;
    ensure!(status == 404, "an unknown node: {status} {e}");
    let (status, e) = admin
        .send("POST", "/api/nodes/BAD%20ID/token", None)
        .await?;
    ensure!(status == 400, "a malformed node id: {status} {e}");

    let agents = Agents::start(cluster, d).await?;
    let outcome = with_agents(cluster, d, &alice, &nodes).await;
    if outcome.is_err() {
        eprintln!("agent logs:\n{}", agents.logs());
    }
    outcome
}

async fn with_agents(
    cluster: &Cluster,
    d: &Daemon,
    alice: &Api,
    nodes: &[kalpana_e2e::swarm::NodeRef],
) -> anyhow::Result<()> {
    let admin = d.admin();
    // Every node in the fleet, its agent heard from.
    let fleet = kalpana_e2e::swarm::fleet_reporting(&admin, 3).await?;
    let ids: Vec<&str> = fleet["nodes"]
        .as_array()
        .context("nodes")?
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    for n in nodes {
        ensure!(
            ids.contains(&n.id.as_str()),
            "node {} in the fleet: {fleet}",
            n.id
        );
    }
    println!("fleet nodes: {}", fleet["nodes"]);

    // A node's token speaks for its node only; nothing else passes for one.
    let token_of = |n: usize| -> anyhow::Result<String> {
        let path = d.data_dir.join(format!("agents/node-{}.token", nodes[n].n));
        Ok(std::fs::read_to_string(path)?.trim().to_string())
    };
    let t0 = token_of(0)?;
    let report_for = |node: &str| json!({ "nodeId": node, "host": null, "engineOk": true, "engineError": null, "containers": [] });
    let as_node0 = d.api(&t0);
    let (status, e) = as_node0
        .send("POST", "/api/fleet/stats", Some(report_for(&nodes[1].id)))
        .await?;
    ensure!(status == 403, "node 0 reports for node 1: {status} {e}");
    let forged = t0.replacen(&nodes[0].id, &nodes[1].id, 1);
    for (who, token) in [
        ("a forged token", forged.as_str()),
        ("a user's token", "kb_notanodetoken"),
        ("the admin token", d.admin_token.as_str()),
    ] {
        let (status, e) = d
            .api(token)
            .send("POST", "/api/fleet/stats", Some(report_for(&nodes[1].id)))
            .await?;
        ensure!(status == 401, "{who}: {status} {e}");
        let (status, e) = d
            .api(token)
            .send("GET", "/api/node/jobs?waitSecs=0", None)
            .await?;
        ensure!(status == 401, "{who} takes no job: {status} {e}");
    }
    let (status, e) = as_node0
        .send("POST", "/api/node/jobs/nosuchjob/done", Some(json!({})))
        .await?;
    ensure!(
        status == 404,
        "finishing a job it does not hold: {status} {e}"
    );
    let (status, e) = as_node0.send("GET", "/api/buckets", None).await?;
    ensure!(status == 401, "a node token is no user: {status} {e}");

    // Six buckets through the API, spread by Swarm's scheduler.
    let mut buckets: Vec<Value> = Vec::new();
    let mut create_ms = Vec::new();
    for i in 0..6 {
        let t = Instant::now();
        let (status, b) = alice
            .create_bucket(json!({ "name": format!("spread{i}") }))
            .await?;
        ensure!(
            status == 201 && b["status"] == "RUNNING",
            "bucket {i}: {status} {b}"
        );
        create_ms.push(t.elapsed().as_millis() as u64);
        buckets.push(b);
    }
    let ids: Vec<String> = buckets
        .iter()
        .map(|b| b["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let id = |i: usize| ids[i].clone();
    let mut node_of: Vec<String> = Vec::new();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..6 {
        let shown = cluster.docker(&[
            "service",
            "inspect",
            &format!("kalpana-bucket-{}", id(i)),
            "-f",
            "{{range .Spec.TaskTemplate.Placement.Constraints}}{{.}} {{end}}",
        ])?;
        let node = shown
            .split_whitespace()
            .find_map(|c| c.strip_prefix("node.id=="))
            .with_context(|| format!("bucket {i} pinned: {shown}"))?
            .to_string();
        *per_node.entry(node.clone()).or_default() += 1;
        node_of.push(node);
    }
    println!("buckets per node: {per_node:?}");
    let (min, max) = (
        per_node.values().min().copied().unwrap_or(0),
        per_node.values().max().copied().unwrap_or(0),
    );
    ensure!(
        per_node.len() == 3 && max - min <= 1,
        "spread: {per_node:?}"
    );

    // Each view names its node, and its endpoint is that node's address.
    let node_ip: BTreeMap<String, String> = nodes
        .iter()
        .map(|n| (n.id.clone(), format!("10.203.0.{}", n.n)))
        .collect();
    for i in 0..6 {
        let (_, v) = alice
            .send("GET", &format!("/api/buckets/{}", id(i)), None)
            .await?;
        let host = nodes
            .iter()
            .find(|n| n.id == node_of[i])
            .map(|n| format!("kalpana-swarm-{}", n.n));
        ensure!(
            v["node"].as_str() == host.as_deref(),
            "bucket {i} names its node: {v}"
        );
        let (ip, _) = ip_port(v["endpoint"].as_str().unwrap_or_default())?;
        ensure!(
            Some(&ip) == node_ip.get(&node_of[i]),
            "bucket {i}'s endpoint is its node's: {v}"
        );
        buckets[i] = v;
    }

    // Objects through the API, reaching each bucket on its node.
    for i in 0..6 {
        let (status, e) = alice
            .put_object(
                &id(i),
                "hello.txt",
                format!("bucket {i}").into_bytes(),
                None,
            )
            .await?;
        ensure!(status == 201, "put into bucket {i}: {status} {e}");
    }

    // Every running bucket has samples from its node's agent.
    until(
        "a sample of every bucket",
        Duration::from_secs(40),
        || async {
            let (_, f) = admin.send("GET", "/api/fleet", None).await?;
            let sampled = f["buckets"]
                .as_array()
                .map(|b| b.iter().filter(|b| b["latest"].is_object()).count())
                .unwrap_or(0);
            Ok((sampled >= 6).then_some(f))
        },
    )
    .await?;

    // A snapshot of a bucket on a worker, into a bucket on another node, by the agents.
    let manager_node = nodes
        .iter()
        .find(|n| n.n == 1)
        .context("node 1")?
        .id
        .clone();
    let src = (0..6)
        .find(|&i| node_of[i] != manager_node)
        .context("a bucket on a worker")?;
    let vault = (0..6)
        .find(|&i| node_of[i] != node_of[src])
        .context("a bucket on another node")?;
    let big = noise(6 << 20, 7);
    let (status, e) = alice
        .put_object(&id(src), "big.bin", big.clone(), None)
        .await?;
    ensure!(status == 201, "{status} {e}");
    let path = format!("/api/buckets/{}/snapshots", id(src));
    let traffic = count_traffic(&[&buckets[src], &buckets[vault]])?;
    let (status, s) = alice
        .send("POST", &path, Some(json!({ "targetBucketId": id(vault) })))
        .await?;
    ensure!(status == 202, "{status} {s}");
    let snap = s["id"].as_str().context("snapshot id")?.to_string();
    let done = until("the snapshot", Duration::from_secs(120), || async {
        let (_, s) = alice.send("GET", &format!("{path}/{snap}"), None).await?;
        Ok((s["status"] == "DONE" || s["status"] == "FAILED").then_some(s))
    })
    .await?;
    let crossed = counted(&traffic)?;
    drop(traffic);
    ensure!(done["status"] == "DONE", "{done}");
    let size = done["sizeBytes"].as_u64().context("size")?;
    ensure!(size > 6 << 20, "the archive holds the noise: {done}");
    // The archive as stored in the target is what the record says.
    let key = done["target"]["key"].as_str().context("key")?.to_string();
    let resp = alice
        .request(
            reqwest::Method::GET,
            &kalpana_e2e::object_path(&id(vault), &key),
        )
        .send()
        .await?;
    ensure!(
        resp.status() == 200,
        "the archive in the target: {}",
        resp.status()
    );
    let stored = resp.bytes().await?;
    ensure!(
        stored.len() as u64 == size,
        "stored {} of {size}",
        stored.len()
    );
    ensure!(
        done["sha256"].as_str() == Some(hex::encode(Sha256::digest(&stored)).as_str()),
        "the stored archive's hash is the record's"
    );
    println!(
        "snapshot on a worker: {size} archive bytes; bytes the daemon's host exchanged with the source's and the target's S3 servers meanwhile: {crossed}"
    );
    ensure!(
        crossed < size / 20,
        "the archive went through the daemon: {crossed} bytes for an archive of {size}"
    );

    // Written after the snapshot, then restored away.
    let (status, _) = alice
        .put_object(&id(src), "after.txt", b"later".to_vec(), None)
        .await?;
    ensure!(status == 201);
    let traffic = count_traffic(&[&buckets[src], &buckets[vault]])?;
    let (status, r) = alice
        .send("POST", &format!("{path}/{snap}/restore"), None)
        .await?;
    ensure!(status == 202, "restore: {status} {r}");
    let restored = until("the restore", Duration::from_secs(120), || async {
        let (_, s) = alice.send("GET", &format!("{path}/{snap}"), None).await?;
        Ok(matches!(s["restore"]["status"].as_str(), Some("DONE" | "FAILED")).then_some(s))
    })
    .await?;
    ensure!(restored["restore"]["status"] == "DONE", "{restored}");
    until(
        "running after the restore",
        Duration::from_secs(60),
        || async {
            let (_, b) = alice
                .send("GET", &format!("/api/buckets/{}", id(src)), None)
                .await?;
            Ok((b["status"] == "RUNNING").then_some(b))
        },
    )
    .await?;
    let crossed = counted(&traffic)?;
    drop(traffic);
    let (status, _) = alice
        .send(
            "GET",
            &format!("/api/buckets/{}/objects/after.txt", id(src)),
            None,
        )
        .await?;
    ensure!(
        status == 404,
        "written after the snapshot: gone after the restore ({status})"
    );
    let resp = alice
        .request(
            reqwest::Method::GET,
            &kalpana_e2e::object_path(&id(src), "big.bin"),
        )
        .send()
        .await?;
    ensure!(resp.status() == 200, "restored object: {}", resp.status());
    ensure!(
        resp.bytes().await?.as_ref() == big.as_slice(),
        "restored bytes equal"
    );
    println!(
        "restore on a worker: bytes the daemon's host exchanged with the source's and the target's S3 servers meanwhile: {crossed}"
    );
    ensure!(
        crossed < size / 20,
        "the archive went through the daemon: {crossed} bytes for an archive of {size}"
    );

    // A new bucket from the snapshot: its volume filled by the agent of the node chosen for it,
    // its service pinned there.
    let (status, copy) = alice
        .create_bucket(json!({
            "name": "copy",
            "fromSnapshot": { "bucketId": id(src), "snapshotId": snap }
        }))
        .await?;
    ensure!(
        status == 201 && copy["status"] == "RUNNING",
        "fromSnapshot: {status} {copy}"
    );
    let copy_id = copy["id"].as_str().context("id")?.to_string();
    let resp = alice
        .request(
            reqwest::Method::GET,
            &kalpana_e2e::object_path(&copy_id, "big.bin"),
        )
        .send()
        .await?;
    ensure!(resp.status() == 200, "the copy's object: {}", resp.status());
    ensure!(
        resp.bytes().await?.as_ref() == big.as_slice(),
        "the copy holds the snapshot's bytes"
    );
    println!("fromSnapshot on swarm: the copy runs on {}", copy["node"]);
    ensure!(
        alice.delete_bucket(&copy_id, true).await? < 300,
        "the copy deleted"
    );

    // Stop and start: back on its node, on its data.
    for action in ["stop", "start"] {
        let (status, b) = alice
            .send(
                "POST",
                &format!("/api/buckets/{}/{action}?wait=true", id(0)),
                None,
            )
            .await?;
        ensure!(status == 200 || status == 202, "{action}: {status} {b}");
    }
    let b = until(
        "bucket 0 running again",
        Duration::from_secs(60),
        || async {
            let (_, b) = alice
                .send("GET", &format!("/api/buckets/{}", id(0)), None)
                .await?;
            Ok((b["status"] == "RUNNING").then_some(b))
        },
    )
    .await?;
    let resp = alice
        .request(
            reqwest::Method::GET,
            &kalpana_e2e::object_path(&id(0), "hello.txt"),
        )
        .send()
        .await?;
    ensure!(
        resp.status() == 200,
        "after a restart: {} {b}",
        resp.status()
    );
    ensure!(resp.bytes().await?.as_ref() == b"bucket 0", "its own data");

    // Its root credentials rotated: its server is made again, on its volume's node.
    let (status, r) = alice
        .send(
            "POST",
            &format!("/api/buckets/{}/credentials/rotate", id(0)),
            None,
        )
        .await?;
    ensure!(status == 200, "rotate: {status} {r}");
    let (_, after) = alice
        .send("GET", &format!("/api/buckets/{}", id(0)), None)
        .await?;
    ensure!(
        after["node"] == buckets[0]["node"],
        "rotated on its node: {after}"
    );
    let resp = alice
        .request(
            reqwest::Method::GET,
            &kalpana_e2e::object_path(&id(0), "hello.txt"),
        )
        .send()
        .await?;
    ensure!(resp.status() == 200, "after a rotation: {}", resp.status());
    ensure!(
        resp.bytes().await?.as_ref() == b"bucket 0",
        "its data after a rotation"
    );

    // A node's samples count for the buckets on it only.
    let elsewhere = (0..6)
        .find(|&i| buckets[i]["node"] != json!(format!("kalpana-swarm-{}", nodes[0].n)))
        .context("a bucket on another node")?;
    let spoof = json!({
        "nodeId": nodes[0].id, "host": null, "engineOk": true, "engineError": null,
        "containers": [{ "bucketId": id(elsewhere), "stats": {
            "memoryBytes": 999_999_999_999u64, "rxBytes": 0, "txBytes": 0,
            "blockReadBytes": 0, "blockWriteBytes": 0 } }]
    });
    for _ in 0..3 {
        let (status, e) = as_node0
            .send("POST", "/api/fleet/stats", Some(spoof.clone()))
            .await?;
        ensure!(status == 200, "{status} {e}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, f) = admin.send("GET", "/api/fleet", None).await?;
    ensure!(
        !f.to_string().contains("999999999999"),
        "a node spoofed another node's bucket sample: {f}"
    );

    // A read-only key on a worker's bucket works at the bucket's endpoint.
    let (status, k) = alice
        .send(
            "POST",
            &format!("/api/buckets/{}/keys", id(src)),
            Some(json!({ "name": "reader", "access": "read" })),
        )
        .await?;
    ensure!(status == 201, "a key: {status} {k}");
    let (_, view) = alice
        .send("GET", &format!("/api/buckets/{}", id(src)), None)
        .await?;
    let endpoint = view["endpoint"].as_str().context("endpoint")?.to_string();
    let s3 = kalpana_e2e::s3_client(
        &endpoint,
        k["accessKey"].as_str().context("access key")?,
        k["secretKey"].as_str().context("secret key")?,
    );
    let name = view["name"].as_str().context("name")?.to_string();
    let got = until("the key works", Duration::from_secs(20), || async {
        Ok(kalpana_e2e::get_bytes(&s3, &name, "big.bin")
            .await
            .ok()
            .map(|b| json!(b.len())))
    })
    .await?;
    ensure!(got == json!(big.len()), "read with the key at {endpoint}");

    // An orphan volume on a node (managed, of this instance, of no bucket): listed, and removed
    // there by its agent.
    let stray = "kalpana-bucket-0123456789abcdef0123456789abcdef";
    let last = cluster.nodes.last().context("a node")?.clone();
    cluster.docker_at(
        &last,
        &[
            "volume",
            "create",
            "--label",
            "kalpana.managed=true",
            "--label",
            &format!("kalpana.instance={}", d.instance),
            "--label",
            "kalpana.bucket.id=0123456789abcdef0123456789abcdef",
            stray,
        ],
    )?;
    let (status, orphans) = admin.send("GET", "/api/admin/orphans", None).await?;
    ensure!(status == 200, "{status} {orphans}");
    ensure!(
        orphans.to_string().contains(stray),
        "the node's orphan is listed: {orphans}"
    );
    let (status, e) = admin
        .send(
            "DELETE",
            &format!("/api/admin/orphans/volumes/{stray}"),
            None,
        )
        .await?;
    ensure!(status < 300, "removing the orphan: {status} {e}");
    let left = cluster.docker_at(
        &last,
        &["volume", "ls", "-q", "--filter", &format!("name={stray}")],
    )?;
    ensure!(
        left.trim().is_empty(),
        "the orphan is gone from {last}: {left}"
    );
    let (status, _) = alice.send("GET", "/api/admin/orphans", None).await?;
    ensure!(status == 403, "orphans are an admin's: {status}");

    // Deleted: nothing of them on any node.
    for i in 0..6 {
        let status = alice.delete_bucket(&id(i), true).await?;
        ensure!(
            status == 200 || status == 202 || status == 204,
            "delete {i}: {status}"
        );
    }
    let filter = format!("label=kalpana.instance={}", d.instance);
    until(
        "nothing left on any node",
        Duration::from_secs(60),
        || async {
            let mut left = Vec::new();
            let services = cluster.docker(&["service", "ls", "-q", "--filter", &filter])?;
            if !services.trim().is_empty() {
                left.push(format!("services {services}"));
            }
            for node in &cluster.nodes {
                for what in [&["ps", "-aq"][..], &["volume", "ls", "-q"][..]] {
                    let out = cluster.docker_at(node, &[what, &["--filter", &filter]].concat())?;
                    if !out.trim().is_empty() {
                        left.push(format!("{node} {what:?}: {out}"));
                    }
                }
            }
            Ok(left.is_empty().then_some(Value::Null))
        },
    )
    .await?;
    // The same through a daemon on the host's one engine, in the same run.
    let docker = Daemon::start().await?;
    let (bob, _) = docker.new_user("bob").await?;
    let mut docker_ms = Vec::new();
    for i in 0..3 {
        let t = Instant::now();
        let (status, b) = bob
            .create_bucket(json!({ "name": format!("base{i}") }))
            .await?;
        ensure!(
            status == 201 && b["status"] == "RUNNING",
            "docker bucket {i}: {status} {b}"
        );
        docker_ms.push(t.elapsed().as_millis() as u64);
    }
    let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len().max(1) as f64;
    println!(
        "create to RUNNING through the API: swarm mean {:.0} ms {create_ms:?}, docker mean {:.0} ms {docker_ms:?}, ratio {:.2}",
        mean(&create_ms),
        mean(&docker_ms),
        mean(&create_ms) / mean(&docker_ms).max(1.0)
    );
    Ok(())
}

/// The service URL the feed gives Traefik for `router`.
async fn fed_url(d: &Daemon, token: &str, router: &str) -> anyhow::Result<String> {
    let resp = d
        .anonymous()
        .request(reqwest::Method::GET, "/api/traefik/config")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await?;
    ensure!(resp.status() == 200, "the feed: {}", resp.status());
    let config: Value = resp.json().await?;
    Ok(
        config["http"]["services"][router]["loadBalancer"]["servers"][0]["url"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn traefik_routes_swarm_buckets_to_their_node_and_wakes_them_through_the_daemon(
) -> anyhow::Result<()> {
    use kalpana_e2e::{get_bytes, s3_client_to, Traefik};
    require_environment()?;
    let cluster = require_cluster()?;
    let token = format!("feed-{}", uuid::Uuid::new_v4().simple());
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let d = Daemon::start_with(DaemonOptions {
        env: vec![
            ("KALPANA_RUNTIME".into(), "swarm".into()),
            ("KALPANA_SWARM_MANAGER".into(), cluster.manager.clone()),
            ("KALPANA_LISTEN".into(), format!("{HOST_ON_CLUSTER}:0")),
            ("KALPANA_BASE_DOMAIN".into(), "swarm.test".into()),
            ("KALPANA_PUBLIC_PORT".into(), port.to_string()),
            ("KALPANA_TRAEFIK_PROVIDER".into(), "http".into()),
            ("KALPANA_TRAEFIK_TOKEN".into(), token.clone()),
        ],
        ..Default::default()
    })
    .await?;
    let outcome = async {
        let _agents = Agents::start(&cluster, &d).await?;
        let traefik = Traefik::start_http(port, &d.url, &token).await?;
        let (alice, _) = d.new_user("alice").await?;
        let (status, b) = alice.create_bucket(json!({ "name": "routed" })).await?;
        ensure!(status == 201 && b["status"] == "RUNNING", "{status} {b}");
        let id = b["id"].as_str().context("id")?.to_string();
        let router = format!("kalpana-{id}");
        let endpoint = b["endpoint"].as_str().context("endpoint")?.to_string();
        ensure!(
            endpoint.contains("routed.swarm.test"),
            "routed endpoint: {b}"
        );
        let s3 = || {
            s3_client_to(
                &endpoint,
                b["accessKey"].as_str().unwrap_or_default(),
                b["secretKey"].as_str().unwrap_or_default(),
                std::net::Ipv4Addr::LOCALHOST.into(),
            )
        };
        // Awake: Traefik goes straight to the bucket's node.
        let url = until(
            "the feed names the node",
            Duration::from_secs(20),
            || async {
                let u = fed_url(&d, &token, &router).await?;
                Ok(u.starts_with("http://10.203.0.").then_some(json!(u)))
            },
        )
        .await?;
        println!("awake: Traefik routes to {url}");
        until(
            "routed through Traefik",
            Duration::from_secs(30),
            || async {
                Ok(s3()
                    .head_bucket()
                    .bucket("routed")
                    .send()
                    .await
                    .ok()
                    .map(|_| Value::Null))
            },
        )
        .await?;
        s3().put_object()
            .bucket("routed")
            .key("k")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(
                b"through traefik",
            ))
            .send()
            .await?;
        ensure!(get_bytes(&s3(), "routed", "k").await? == b"through traefik");
        // Asleep: the feed sends Traefik to the daemon's listener, which wakes it.
        let (status, e) = alice
            .send("POST", &format!("/api/buckets/{id}/sleep"), None)
            .await?;
        ensure!(status == 200 || status == 202, "sleep: {status} {e}");
        let asleep_url = until(
            "the feed names the daemon",
            Duration::from_secs(20),
            || async {
                let u = fed_url(&d, &token, &router).await?;
                Ok(u.starts_with("http://127.0.0.1:").then_some(json!(u)))
            },
        )
        .await?;
        println!("asleep: Traefik routes to {asleep_url}");
        // Traefik polls every 2 s (later under load): until it has the new route, a GET still
        // goes to the stopped task and fails; once it has it, a GET wakes the bucket.
        let t = Instant::now();
        let mut failed = 0;
        loop {
            match get_bytes(&s3(), "routed", "k").await {
                Ok(got) => {
                    ensure!(got == b"through traefik", "a GET through Traefik wakes the bucket");
                    break;
                }
                Err(e) => {
                    failed += 1;
                    ensure!(
                        t.elapsed() < Duration::from_secs(30),
                        "no GET through Traefik woke the bucket in 30 s: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        println!(
            "a GET through Traefik woke the bucket {} ms after the feed changed ({failed} tries before Traefik polled)",
            t.elapsed().as_millis()
        );
        let (_, v) = alice
            .send("GET", &format!("/api/buckets/{id}"), None)
            .await?;
        ensure!(v["activity"]["state"] == "awake", "awake again: {v}");
        until(
            "the feed names the node again",
            Duration::from_secs(20),
            || async {
                let u = fed_url(&d, &token, &router).await?;
                Ok(u.starts_with("http://10.203.0.").then_some(json!(u)))
            },
        )
        .await?;
        // Once Traefik has polled the feed again, a GET is served by the bucket's own router
        // (until then the catch-all may serve it, through the daemon). Traefik writes its
        // access log a moment after each request, so GET until one shows there.
        let router_name = format!("{router}@http");
        until("a GET served by the bucket's router", Duration::from_secs(30), || async {
            ensure!(get_bytes(&s3(), "routed", "k").await? == b"through traefik");
            tokio::time::sleep(Duration::from_millis(500)).await;
            let served = traefik
                .access_log()
                .into_iter()
                .filter(|e| {
                    e["RouterName"] == router_name.as_str()
                        && e["RequestMethod"] == "GET"
                        && e["DownstreamStatus"] == 200
                })
                .count();
            Ok((served >= 1).then_some(json!(served)))
        })
        .await?;
        Ok(())
    }
    .await;
    if outcome.is_err() {
        eprintln!("daemon log:\n{}", d.log());
    }
    cluster.remove_instance(&d.instance);
    outcome
}

/// The pid (as the host sees it) of the running task of service `service`, on its node.
fn task_pid(cluster: &Cluster, service: &str) -> anyhow::Result<(String, u32, String)> {
    for node in &cluster.nodes {
        let ids = cluster.docker_at(
            node,
            &[
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.swarm.service.name={service}"),
            ],
        )?;
        if let Some(c) = ids.split_whitespace().next() {
            let pid = cluster
                .docker_at(node, &["inspect", "-f", "{{.State.Pid}}", c])?
                .trim()
                .parse()?;
            return Ok((node.clone(), pid, c.to_string()));
        }
    }
    bail!("no running task of {service}")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attached_service_reaches_its_bucket_across_nodes_and_loses_it_when_detached(
) -> anyhow::Result<()> {
    use kalpana_e2e::probe::connects_from_netns;
    require_environment()?;
    let cluster = require_cluster()?;
    let d = swarm_daemon(&cluster).await?;
    let app = format!("app-{}", &d.instance[d.instance.len() - 8..]);
    let outcome = async {
        let _agents = Agents::start(&cluster, &d).await?;
        let (alice, _) = d.new_user("alice").await?;
        let (status, w) = alice
            .send("POST", "/api/workspaces", Some(json!({ "name": "dev" })))
            .await?;
        ensure!(status == 201, "{w}");
        let wid = w["id"].as_str().context("id")?.to_string();
        let (status, b) = alice
            .create_bucket(json!({ "name": "shared", "workspaceId": wid }))
            .await?;
        ensure!(status == 201 && b["status"] == "RUNNING", "{status} {b}");
        let id = b["id"].as_str().context("id")?.to_string();
        // A workload: a service of the workspace, on a node of its own choosing.
        let image = kalpana_e2e::ENGINE_IMAGE;
        cluster.docker(&[
            "service",
            "create",
            "--detach",
            "--name",
            &app,
            "--label",
            &format!("kalpana.workspace.id={wid}"),
            "--label",
            &format!("kalpana.instance={}", d.instance),
            image,
            "master",
            "-port=9333",
        ])?;
        let path = format!("/api/buckets/{id}/attachments");
        let (status, a) = alice
            .send(
                "POST",
                &path,
                Some(json!({ "container": app, "access": "read" })),
            )
            .await?;
        ensure!(status == 201, "attach: {status} {a}");
        let aid = a["id"].as_str().context("attachment id")?.to_string();
        // Its task (replaced by the update) is on the bucket's network and reaches its S3.
        let network = format!("kalpana-att-{id}");
        let bucket_ip = {
            let (node, _, c) = task_pid(&cluster, &format!("kalpana-bucket-{id}"))?;
            cluster
                .docker_at(
                    &node,
                    &[
                        "inspect",
                        "-f",
                        &format!(
                            "{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"
                        ),
                        &c,
                    ],
                )?
                .trim()
                .parse::<std::net::IpAddr>()?
        };
        let reached = until(
            "the workload reaches the bucket",
            Duration::from_secs(60),
            || async {
                let Ok((_, pid, _)) = task_pid(&cluster, &app) else {
                    return Ok(None);
                };
                Ok(connects_from_netns(pid, bucket_ip, 8333)?.then_some(json!(pid)))
            },
        )
        .await?;
        println!(
            "the attached service's task (pid {reached}) reaches the bucket at {bucket_ip}:8333"
        );
        // Detached: its task is replaced off the network and reaches nothing.
        let (status, e) = alice.send("DELETE", &format!("{path}/{aid}"), None).await?;
        ensure!(status == 200 || status == 204, "detach: {status} {e}");
        until(
            "the workload no longer reaches the bucket",
            Duration::from_secs(60),
            || async {
                let Ok((_, pid, _)) = task_pid(&cluster, &app) else {
                    return Ok(None);
                };
                Ok((!connects_from_netns(pid, bucket_ip, 8333)?).then_some(Value::Null))
            },
        )
        .await?;
        let spec = cluster.docker(&[
            "service",
            "inspect",
            &app,
            "-f",
            "{{json .Spec.TaskTemplate.Networks}}",
        ])?;
        ensure!(!spec.contains(&network), "off the bucket's network: {spec}");
        Ok(())
    }
    .await;
    if outcome.is_err() {
        eprintln!("daemon log:\n{}", d.log());
    }
    let _ = cluster.docker(&["service", "rm", &app]);
    cluster.remove_instance(&d.instance);
    outcome
}
