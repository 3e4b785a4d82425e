//! A node cut off from the manager and the daemon (firewall rules on the cluster's bridge), its
//! clients still reaching it: it fences itself, its buckets serve elsewhere, and a client
//! probing the old and the new address of every bucket every 100 ms never gets answers from
//! both. Healed, the node's old volumes are set aside and nothing serves twice.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use kalpana_e2e::swarm::{Cluster, NodeRef};
use kalpana_e2e::Daemon;
use serde_json::Value;

use crate::common::{self, Buckets, SNAPSHOTTED};

/// nftables in the bridge's namespace: the cut is on the wire between the nodes, not in them.
fn nft(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("nsenter")
        .arg("--net=/run/netns/kalpana-swarm-br")
        .arg("nft")
        .args(args)
        .output()
        .context("nft in the bridge's namespace")?;
    if !out.status.success() {
        bail!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Drops every packet between node `n` and the manager (node 1) or the host (the daemon).
struct Cut;

impl Cut {
    fn make(n: u32) -> anyhow::Result<Self> {
        let cut = Cut;
        nft(&["add", "table", "bridge", "kalpana_cut"])?;
        nft(&[
            "add",
            "chain",
            "bridge",
            "kalpana_cut",
            "cut",
            "{ type filter hook forward priority -200; }",
        ])?;
        let node = format!("10.203.0.{n}");
        let others = "{ 10.203.0.1, 10.203.0.254 }";
        for (from, to) in [(node.as_str(), others), (others, node.as_str())] {
            let rule = format!("ip saddr {from} ip daddr {to} drop");
            let mut args = vec!["add", "rule", "bridge", "kalpana_cut", "cut"];
            args.extend(rule.split(' '));
            nft(&args)?;
        }
        Ok(cut)
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        let _ = nft(&["delete", "table", "bridge", "kalpana_cut"]);
    }
}

/// A client in node `from`'s namespace probing `targets` (bucket index, address, port) every
/// 100 ms with an HTTP request, writing one JSON line per round: `{t, a: [[i, addr]…]}` with
/// the pairs that answered.
const PROBE: &str = r#"
import json, socket, sys, time
targets = json.loads(sys.argv[1]); out = open(sys.argv[2], "w")
while True:
    t = time.time(); answered = []
    for i, addr, port in targets:
        try:
            s = socket.create_connection((addr, port), timeout=0.2)
            s.settimeout(0.3)
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            if s.recv(5) == b"HTTP/":
                answered.append([i, addr])
            s.close()
        except Exception:
            pass
    out.write(json.dumps({"t": t, "a": answered}) + "\n"); out.flush()
    time.sleep(max(0.0, 0.1 - (time.time() - t)))
"#;

struct Probe {
    child: std::process::Child,
    path: std::path::PathBuf,
}

impl Probe {
    fn start(from: u32, targets: &Value, path: std::path::PathBuf) -> anyhow::Result<Self> {
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/kalpana-swarm-{from}"))
            .args(["python3", "-c", PROBE])
            .arg(targets.to_string())
            .arg(&path)
            .spawn()
            .context("starting the probe")?;
        Ok(Probe { child, path })
    }

    /// Rounds so far: (time, answered pairs).
    fn rounds(&self) -> Vec<(f64, Vec<(usize, String)>)> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| {
                let t = v["t"].as_f64().unwrap_or(0.0);
                let a = v["a"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|p| {
                                Some((p[0].as_u64()? as usize, p[1].as_str()?.to_string()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (t, a)
            })
            .collect()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_off_node_fences_itself_and_no_bucket_ever_answers_from_two_nodes(
) -> anyhow::Result<()> {
    common::on_one_daemon(scenario).await
}

async fn scenario(cluster: &Cluster, d: &Daemon) -> anyhow::Result<()> {
    let admin = d.admin();
    let nodes = cluster.node_refs()?;
    let victim: NodeRef = nodes.iter().find(|n| n.n == 3).context("node 3")?.clone();
    common::reporting(&admin).await?;
    let (alice, _) = d.new_user("alice").await?;
    let b: Buckets = common::populate(cluster, &alice, &nodes, &victim).await?;

    // The probe runs on node 2, which the cut leaves alone: it reaches every node.
    let targets: Vec<Value> = (0..SNAPSHOTTED)
        .flat_map(|i| {
            let port = b.ports[i];
            (1..=3).map(move |n| serde_json::json!([i, format!("10.203.0.{n}"), port]))
        })
        .collect();
    let probe = Probe::start(2, &Value::Array(targets), d.data_dir.join("probe.jsonl"))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loss = common::Loss::now();
    let cut = Cut::make(victim.n)?;
    println!("node {} cut off at {}", victim.n, loss.wall);
    let back_at = common::serving_again(&alice, &b, loss.at).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let old = format!("10.203.0.{}", victim.n);
    let rounds = probe.rounds();
    let (mut both, mut old_only, mut new_only, mut neither) = (0usize, 0usize, 0usize, 0usize);
    for (_, answered) in &rounds {
        for i in 0..SNAPSHOTTED {
            let from_old = answered.iter().any(|(j, a)| *j == i && *a == old);
            let from_new = answered.iter().any(|(j, a)| *j == i && *a != old);
            match (from_old, from_new) {
                (true, true) => both += 1,
                (true, false) => old_only += 1,
                (false, true) => new_only += 1,
                (false, false) => neither += 1,
            }
        }
    }
    let span = match (rounds.first(), rounds.last()) {
        (Some(a), Some(z)) if rounds.len() > 1 => (z.0 - a.0) / (rounds.len() - 1) as f64,
        _ => 0.0,
    };
    println!(
        "probe: {} rounds (one every {:.0} ms), per bucket and round: old node only {old_only}, new node only {new_only}, neither {neither}, both {both}",
        rounds.len(),
        span * 1000.0
    );
    let log = d.log();
    let agent_log =
        std::fs::read_to_string(d.data_dir.join(format!("agents/agent-{}.log", victim.n)))
            .unwrap_or_default();
    common::print_timeline(
        "a partition",
        &loss,
        &back_at,
        &[
            (
                "fenced (first bucket container stopped)",
                common::log_line(&agent_log, "fenced: bucket container stopped"),
            ),
            (
                "lease expired (node lost)",
                common::log_line(&log, "node lost: its lease expired"),
            ),
        ],
    );
    ensure!(
        both == 0,
        "a bucket answered from both nodes in {both} probe rounds"
    );
    ensure!(
        old_only > 0 && new_only > 0,
        "the probe saw the old node serve, then the new one"
    );
    ensure!(
        agent_log.contains("fenced: bucket container stopped"),
        "the cut-off node fenced itself"
    );
    let slowest = back_at.iter().max().copied().unwrap_or_default();
    ensure!(
        slowest < Duration::from_secs(60),
        "every bucket with a snapshot serves again within 60 s of the cut: {back_at:?}"
    );
    common::check_evacuated(d, &alice, &b, &victim).await?;

    // Healed: the node's old volumes are set aside, nothing serves twice, the stranded bucket
    // comes back.
    drop(cut);
    let healed_at = Instant::now();
    let list = common::until(
        "five volumes set aside",
        Duration::from_secs(120),
        || async {
            let (_, l) = admin.send("GET", "/api/admin/set-aside", None).await?;
            Ok((l.as_array().map_or(0, Vec::len) == SNAPSHOTTED).then_some(l))
        },
    )
    .await?;
    println!(
        "healed: {SNAPSHOTTED} old volumes set aside {} ms after the cut was lifted",
        healed_at.elapsed().as_millis()
    );
    let named: Vec<String> = cluster
        .docker_at(
            &old,
            &["volume", "ls", "-q", "--filter", "label=kalpana.set-aside"],
        )?
        .split_whitespace()
        .map(String::from)
        .collect();
    for v in list.as_array().context("list")? {
        ensure!(v["node"] == victim.id.as_str(), "{v}");
        let name = v["volume"].as_str().context("volume")?;
        ensure!(
            named.iter().any(|n| n == name),
            "{name} on the node: {named:?}"
        );
    }
    for id in b.ids.iter().take(SNAPSHOTTED) {
        let running = cluster.docker_at(
            &old,
            &[
                "ps",
                "-q",
                "--filter",
                &format!("label=kalpana.bucket.id={id}"),
            ],
        )?;
        ensure!(
            running.trim().is_empty(),
            "nothing of an evacuated bucket runs on the old node: {running}"
        );
        let data = cluster.docker_at(
            &old,
            &[
                "volume",
                "ls",
                "-q",
                "--filter",
                &format!("name=kalpana-bucket-{id}-data"),
            ],
        )?;
        ensure!(
            data.trim().is_empty(),
            "the old data volume is gone: {data}"
        );
    }
    let stranded = &b.ids[SNAPSHOTTED];
    common::until(
        "the stranded bucket back",
        Duration::from_secs(90),
        || async {
            let (_, v) = alice
                .send("GET", &format!("/api/buckets/{stranded}"), None)
                .await?;
            let (status, _) = alice
                .send("GET", &format!("/api/buckets/{stranded}/objects"), None)
                .await?;
            Ok((v["status"] == "RUNNING" && status == 200).then_some(v))
        },
    )
    .await?;
    // Only an admin deletes a set-aside volume, and only one that is listed.
    let first = &list[0];
    let path = format!(
        "/api/admin/set-aside/{}/{}",
        victim.id,
        first["volume"].as_str().context("volume")?
    );
    let (status, _) = alice.send("DELETE", &path, None).await?;
    ensure!(status == 403, "alice deletes no set-aside volume: {status}");
    let (status, e) = admin
        .send(
            "DELETE",
            &format!(
                "/api/admin/set-aside/{}/kalpana-bucket-{}-data",
                victim.id, b.ids[0]
            ),
            None,
        )
        .await?;
    ensure!(status == 404, "a volume not set aside: {status} {e}");
    let (status, e) = admin.send("DELETE", &path, None).await?;
    ensure!(status == 204, "{status} {e}");
    let (status, _) = admin.send("DELETE", &path, None).await?;
    ensure!(status == 404, "deleted once");
    let left = cluster.docker_at(
        &old,
        &["volume", "ls", "-q", "--filter", "label=kalpana.set-aside"],
    )?;
    ensure!(
        left.split_whitespace().count() == SNAPSHOTTED - 1,
        "the deleted volume is gone from the node: {left}"
    );
    Ok(())
}
