//! What the lost-node scenarios share: the daemon (or two, active and standby) on MongoDB with
//! agents that fence, six buckets on the victim node (five of 100 MiB, snapshotted to a vault on
//! another node, then written to again; one with no snapshot), and the checks of an evacuation.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use kalpana_e2e::mongo::MongoServer;
use kalpana_e2e::swarm::{Agents, Cluster, NodeRef};
use kalpana_e2e::{noise, strip_colours, Api, Daemon, DaemonOptions};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Where the nodes reach the host.
pub const HOST_ON_CLUSTER: &str = "10.203.0.254";
/// The agents' and daemons' fencing time.
pub const FENCE_SECS: u64 = 10;
/// When a silent node is lost.
pub const NODE_LOST_SECS: u64 = 20;
/// The daemons' store lease.
const LEASE_SECS: &str = "3";
const MIB_100: usize = 100 << 20;
/// Buckets with a snapshot; one more has none.
pub const SNAPSHOTTED: usize = 5;

pub use kalpana_e2e::until;

/// `GET` of an object through the API: status and body.
pub async fn get_object(api: &Api, id: &str, key: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let resp = api
        .request(
            reqwest::Method::GET,
            &format!("/api/buckets/{id}/objects/{key}"),
        )
        .timeout(Duration::from_secs(60))
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.bytes().await?.to_vec()))
}

/// The options of a daemon of the scenarios, on `store`.
pub fn options(
    cluster: &Cluster,
    instance: &str,
    store: &str,
    extra: &[(&str, &str)],
) -> DaemonOptions {
    let mut env: Vec<(String, String)> = vec![
        ("KALPANA_RUNTIME".into(), "swarm".into()),
        ("KALPANA_SWARM_MANAGER".into(), cluster.manager.clone()),
        ("KALPANA_LISTEN".into(), format!("{HOST_ON_CLUSTER}:0")),
        ("KALPANA_STORE".into(), store.to_string()),
        ("KALPANA_LEASE_SECS".into(), LEASE_SECS.into()),
        ("KALPANA_FENCE_SECS".into(), FENCE_SECS.to_string()),
        ("KALPANA_NODE_LOST_SECS".into(), NODE_LOST_SECS.to_string()),
        ("KALPANA_SLEEP_AFTER_SECS".into(), "0".into()),
        ("KALPANA_FLEET_SAMPLE_SECS".into(), "2".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    DaemonOptions {
        instance: Some(instance.to_string()),
        env,
        ..Default::default()
    }
}

/// A MongoDB server and a database name for one scenario.
pub async fn store() -> anyhow::Result<(MongoServer, String)> {
    let mongo = MongoServer::start().await?;
    let uri = mongo.uri(&format!("loss_{}", uuid::Uuid::new_v4().simple()));
    Ok((mongo, uri))
}

/// Starts the agents with the scenarios' fencing time, reporting to `url`.
pub async fn agents(cluster: &Cluster, d: &Daemon, url: &str) -> anyhow::Result<Agents> {
    let fence = FENCE_SECS.to_string();
    Agents::start_to(cluster, d, url, &[("KALPANA_FENCE_SECS", fence.as_str())]).await
}

/// Waits until all three agents report.
pub async fn reporting(admin: &Api) -> anyhow::Result<()> {
    kalpana_e2e::swarm::fleet_reporting(admin, 3)
        .await
        .map(drop)
}

/// Runs `scenario` against one daemon on a MongoDB of its own with fencing agents on every
/// node; the logs are printed when it fails; afterwards the instance is swept and the cluster
/// made whole again.
pub async fn on_one_daemon(
    scenario: impl AsyncFnOnce(&Cluster, &Daemon) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    kalpana_e2e::require_environment()?;
    let cluster = kalpana_e2e::swarm::require_cluster()?;
    let (_mongo, store) = store().await?;
    let instance = kalpana_e2e::new_instance();
    let d = Daemon::start_with(options(&cluster, &instance, &store, &[])).await?;
    let agents = agents(&cluster, &d, &d.url).await?;
    let outcome = scenario(&cluster, &d).await;
    if outcome.is_err() {
        eprintln!("daemon log:\n{}", d.log());
        eprintln!("agent logs:\n{}", agents.logs());
    }
    drop(agents);
    cluster.remove_instance(&d.instance);
    drop(d);
    // A node was taken away: the cluster is made whole again for whatever runs next.
    outcome.and(cluster.heal())
}

/// Node labels restored on drop (the setup moves `kalpana.buckets` to place buckets).
struct Labels<'a> {
    cluster: &'a Cluster,
    ids: Vec<String>,
}

impl Drop for Labels<'_> {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ =
                self.cluster
                    .docker(&["node", "update", "--label-add", "kalpana.buckets=true", id]);
        }
    }
}

/// The buckets of a scenario.
pub struct Buckets {
    /// Six bucket ids on the victim; the last has no snapshot.
    pub ids: Vec<String>,
    /// SHA-256 of each snapshotted bucket's `big.bin`.
    pub digests: Vec<Vec<u8>>,
    /// Each snapshotted bucket's snapshot.
    pub snaps: Vec<String>,
    /// Their S3 ports (published on whatever node serves them).
    pub ports: Vec<u16>,
}

/// Six buckets on `victim` (the other nodes unlabelled meanwhile), a vault elsewhere, 100 MiB
/// in each of the first five, a snapshot of each into the vault, then one more object each.
pub async fn populate(
    cluster: &Cluster,
    alice: &Api,
    nodes: &[NodeRef],
    victim: &NodeRef,
) -> anyhow::Result<Buckets> {
    let mut ids = Vec::new();
    let mut ports = Vec::new();
    {
        let others: Vec<String> = nodes
            .iter()
            .filter(|n| n.n != victim.n)
            .map(|n| n.id.clone())
            .collect();
        let _restore = Labels {
            cluster,
            ids: others.clone(),
        };
        for id in &others {
            cluster.docker(&["node", "update", "--label-rm", "kalpana.buckets", id])?;
        }
        for i in 0..=SNAPSHOTTED {
            let (status, b) = alice
                .create_bucket(json!({ "name": format!("lost{i}") }))
                .await?;
            ensure!(status == 201 && b["status"] == "RUNNING", "{status} {b}");
            ensure!(
                b["node"] == format!("kalpana-swarm-{}", victim.n),
                "bucket {i} on the victim: {b}"
            );
            ids.push(b["id"].as_str().context("id")?.to_string());
            ports.push(b["port"].as_u64().context("port")? as u16);
        }
    }
    let (status, vault) = alice.create_bucket(json!({ "name": "vault" })).await?;
    ensure!(
        status == 201 && vault["status"] == "RUNNING",
        "{status} {vault}"
    );
    ensure!(
        vault["node"] != format!("kalpana-swarm-{}", victim.n),
        "the vault elsewhere: {vault}"
    );
    let vault_id = vault["id"].as_str().context("vault id")?.to_string();
    let mut digests = Vec::new();
    for (i, id) in ids.iter().take(SNAPSHOTTED).enumerate() {
        let data = noise(MIB_100, 100 + i as u64);
        digests.push(Sha256::digest(&data).to_vec());
        let (status, e) = alice.put_object(id, "big.bin", data, None).await?;
        ensure!(status == 201, "put 100 MiB into bucket {i}: {status} {e}");
    }
    let mut snaps = Vec::new();
    for id in ids.iter().take(SNAPSHOTTED) {
        let (status, s) = alice
            .send(
                "POST",
                &format!("/api/buckets/{id}/snapshots"),
                Some(json!({ "targetBucketId": vault_id })),
            )
            .await?;
        ensure!(status == 202, "{status} {s}");
        snaps.push(s["id"].as_str().context("snapshot id")?.to_string());
    }
    for (id, snap) in ids.iter().zip(&snaps) {
        let path = format!("/api/buckets/{id}/snapshots/{snap}");
        let s = until("the snapshot", Duration::from_secs(300), || async {
            let (_, s) = alice.send("GET", &path, None).await?;
            Ok((s["status"] == "DONE" || s["status"] == "FAILED").then_some(s))
        })
        .await?;
        ensure!(s["status"] == "DONE", "{s}");
    }
    // Each bucket's task was made anew after its archive: a moment until it answers.
    for id in ids.iter().take(SNAPSHOTTED) {
        until(
            "a write after the snapshot",
            Duration::from_secs(60),
            || async {
                let (status, e) = alice
                    .put_object(
                        id,
                        "after.txt",
                        b"written after the snapshot".to_vec(),
                        None,
                    )
                    .await?;
                Ok((status == 201).then_some(e))
            },
        )
        .await?;
    }
    println!(
        "{SNAPSHOTTED} buckets of 100 MiB on node {} snapshotted",
        victim.n
    );
    Ok(Buckets {
        ids,
        digests,
        snaps,
        ports,
    })
}

/// Polls until every snapshotted bucket has been evacuated and serves its snapshot's data:
/// when each did, after `since`. A bucket not back in time fails it with what was seen last.
pub async fn serving_again(
    alice: &Api,
    b: &Buckets,
    since: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let mut back_at = vec![None; SNAPSHOTTED];
    let mut last_seen = vec![String::from("nothing yet"); SNAPSHOTTED];
    let deadline = Duration::from_secs(150);
    while back_at.iter().any(Option::is_none) {
        ensure!(
            since.elapsed() < deadline,
            "not every bucket served again within {deadline:?}: {back_at:?}; last seen: {last_seen:?}"
        );
        for (i, id) in b.ids.iter().take(SNAPSHOTTED).enumerate() {
            if back_at[i].is_some() {
                continue;
            }
            let (status, v) = alice
                .send("GET", &format!("/api/buckets/{id}"), None)
                .await?;
            if v["evacuation"]["finishedAt"].is_null() {
                last_seen[i] = format!("view {status}: {} {}", v["status"], v["evacuation"]);
                continue;
            }
            let (status, body) = get_object(alice, id, "big.bin").await?;
            if status == 200 {
                back_at[i] = Some(since.elapsed());
                ensure!(
                    Sha256::digest(&body).to_vec() == b.digests[i],
                    "bucket {i} serves the snapshot's 100 MiB"
                );
            } else {
                last_seen[i] = format!(
                    "evacuated; GET big.bin {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(back_at.into_iter().flatten().collect())
}

/// After an evacuation: each snapshotted bucket RUNNING elsewhere, its view naming the node and
/// snapshot, what was written after the snapshot gone; the one without a snapshot ERROR naming
/// the node; none of it visible to another user.
pub async fn check_evacuated(
    d: &Daemon,
    alice: &Api,
    b: &Buckets,
    victim: &NodeRef,
) -> anyhow::Result<()> {
    for (i, id) in b.ids.iter().take(SNAPSHOTTED).enumerate() {
        let (_, v) = alice
            .send("GET", &format!("/api/buckets/{id}"), None)
            .await?;
        ensure!(v["status"] == "RUNNING", "{v}");
        ensure!(
            v["node"] != format!("kalpana-swarm-{}", victim.n) && v["node"].is_string(),
            "bucket {i} on another node: {v}"
        );
        let e = &v["evacuation"];
        ensure!(
            e["fromNode"] == victim.id.as_str() && e["snapshotId"] == b.snaps[i].as_str(),
            "the view says where from and which snapshot: {v}"
        );
        ensure!(e["snapshotAt"].is_string(), "{v}");
        let (status, _) = get_object(alice, id, "after.txt").await?;
        ensure!(
            status == 404,
            "what was written after the snapshot is gone: {status}"
        );
    }
    let (_, v) = alice
        .send("GET", &format!("/api/buckets/{}", b.ids[SNAPSHOTTED]), None)
        .await?;
    ensure!(
        v["status"] == "ERROR"
            && v["statusMessage"]
                .as_str()
                .is_some_and(|m| m.contains(&victim.id)),
        "a bucket without a snapshot is ERROR naming its node: {v}"
    );
    let (bob, _) = d
        .new_user(&format!("bob{}", uuid::Uuid::new_v4().simple()))
        .await?;
    let (status, _) = bob
        .send("GET", &format!("/api/buckets/{}", b.ids[0]), None)
        .await?;
    ensure!(status == 404, "another user sees nothing of it: {status}");
    let (status, _) = alice.send("GET", "/api/admin/set-aside", None).await?;
    ensure!(status == 403, "set-aside is admins': {status}");
    Ok(())
}

/// The first line of `log` holding `needle`, without colours.
pub fn log_line(log: &str, needle: &str) -> Option<String> {
    log.lines().map(strip_colours).find(|l| l.contains(needle))
}

/// When a node was lost (killed or cut off): for timeouts and for the log's timestamps.
pub struct Loss {
    /// On the test's clock.
    pub at: Instant,
    /// On the wall clock the logs use.
    pub wall: time::OffsetDateTime,
}

impl Loss {
    /// Now.
    pub fn now() -> Self {
        Loss {
            at: Instant::now(),
            wall: time::OffsetDateTime::now_utc(),
        }
    }
}

/// Milliseconds from `loss` to the timestamp that starts log line `line`.
fn offset_ms(loss: &Loss, line: &str) -> Option<i128> {
    let stamp = line.split_whitespace().next()?;
    let t =
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t - loss.wall).whole_milliseconds())
}

/// The timeline every scenario prints: each log line's time after the loss, then each
/// bucket's.
pub fn print_timeline(
    what: &str,
    loss: &Loss,
    back_at: &[Duration],
    lines: &[(&str, Option<String>)],
) {
    println!("timeline of {what} (times relative to the loss):");
    for (label, line) in lines {
        match line {
            Some(l) => match offset_ms(loss, l) {
                Some(ms) => println!("  {label} at +{ms} ms: {l}"),
                None => println!("  {label}: {l}"),
            },
            None => println!("  {label}: (no such log line)"),
        }
    }
    for (i, t) in back_at.iter().enumerate() {
        println!("  bucket {i} serving again at +{} ms", t.as_millis());
    }
}
