//! The active daemon is SIGKILLed while it evacuates a lost host's buckets: the standby (same
//! MongoDB, same master key, the agents given both daemons' URLs) takes over, finishes every
//! evacuation once, and no node is fenced by the takeover itself.

use std::time::Duration;

use anyhow::{ensure, Context};
use kalpana_e2e::swarm::{require_cluster, Agents, Cluster};
use kalpana_e2e::{require_environment, Daemon, DaemonOptions};

use crate::common::{self, Buckets, SNAPSHOTTED};

/// Both daemons of the scenario; the active one is killed in it.
struct Pair {
    active: Daemon,
    standby: Daemon,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_finishes_the_evacuation_a_killed_daemon_began_and_fences_no_node(
) -> anyhow::Result<()> {
    require_environment()?;
    let cluster = require_cluster()?;
    let (_mongo, store) = common::store().await?;
    let instance = kalpana_e2e::new_instance();
    let key = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let shared = [("KALPANA_MASTER_KEY", key.as_str())];
    let active = Daemon::start_with(common::options(&cluster, &instance, &store, &shared)).await?;
    // Same instance and port range (one cluster's buckets), its own data directory.
    let standby = Daemon::start_in(
        DaemonOptions {
            port_range: Some(format!("{}-{}", active.port_range.0, active.port_range.1)),
            ..common::options(
                &cluster,
                &instance,
                &store,
                &[shared[0], ("KALPANA_STANDBY", "true")],
            )
        },
        instance.clone(),
        std::env::temp_dir().join(format!("kalpana-{instance}-standby")),
    )
    .await?;
    let urls = format!("{},{}", active.url, standby.url);
    let agents = common::agents(&cluster, &active, &urls).await?;
    let mut pair = Pair { active, standby };
    let outcome = scenario(&cluster, &mut pair, &agents).await;
    if outcome.is_err() {
        eprintln!("active daemon log:\n{}", pair.active.log());
        eprintln!("standby daemon log:\n{}", pair.standby.log());
        eprintln!("agent logs:\n{}", agents.logs());
    }
    drop(agents);
    cluster.remove_instance(&instance);
    drop(pair);
    outcome.and(cluster.heal())
}

async fn scenario(cluster: &Cluster, pair: &mut Pair, agents: &Agents) -> anyhow::Result<()> {
    let admin = pair.active.admin();
    let nodes = cluster.node_refs()?;
    let victim = nodes.iter().find(|n| n.n == 2).context("node 2")?.clone();
    common::reporting(&admin).await?;
    let (alice, _) = pair.active.new_user("alice").await?;
    let token = alice.raw().2.context("alice's token")?.to_string();
    let b: Buckets = common::populate(cluster, &alice, &nodes, &victim).await?;
    let (status, _) = pair
        .standby
        .api(&token)
        .send("GET", "/api/buckets", None)
        .await?;
    ensure!(
        status == 503,
        "the standby answers 503 while the other acts: {status}"
    );

    let loss = common::Loss::now();
    let killed = cluster.kill_node(victim.n)?;
    println!("node {}: {killed} processes killed", victim.n);
    // The active daemon dies as soon as it has begun to evacuate.
    common::until(
        "the active daemon begins to evacuate",
        Duration::from_secs(90),
        || async {
            let began = pair
                .active
                .log()
                .contains("evacuating the bucket of a lost node");
            Ok(began.then_some(serde_json::Value::Null))
        },
    )
    .await?;
    pair.active.kill();
    let daemon_killed = loss.at.elapsed();
    let began_by_active = evacuating(&pair.active.log());
    let finished_by_active = evacuated(&pair.active.log());
    println!(
        "active daemon SIGKILLed at +{} ms, {} evacuations begun, {} finished",
        daemon_killed.as_millis(),
        began_by_active.len(),
        finished_by_active.len()
    );

    let on_standby = pair.standby.api(&token);
    let back_at = common::serving_again(&on_standby, &b, loss.at).await?;
    let active_log = pair.active.log();
    let standby_log = pair.standby.log();
    common::print_timeline(
        "a daemon takeover during an evacuation",
        &loss,
        &back_at,
        &[
            (
                "lease expired (node lost, active daemon)",
                common::log_line(&active_log, "node lost: its lease expired"),
            ),
            (
                "first evacuation began (active daemon)",
                common::log_line(&active_log, "evacuating the bucket of a lost node"),
            ),
            (
                "standby took over",
                common::log_line(&standby_log, "standby: the lease is this daemon's"),
            ),
            (
                "first evacuation finished (standby)",
                common::log_line(&standby_log, "bucket evacuated"),
            ),
        ],
    );
    ensure!(
        standby_log.contains("standby: the lease is this daemon's"),
        "the standby took over"
    );

    // The standby finished what the killed daemon began, each bucket once.
    let finished_by_standby = evacuated(&standby_log);
    ensure!(
        began_by_active
            .iter()
            .any(|id| !finished_by_active.contains(id) && finished_by_standby.contains(id)),
        "an evacuation the killed daemon began is finished by the standby: began {began_by_active:?}, finished by it {finished_by_active:?}, by the standby {finished_by_standby:?}"
    );
    for id in b.ids.iter().take(SNAPSHOTTED) {
        let times = finished_by_active.iter().filter(|x| *x == id).count()
            + finished_by_standby.iter().filter(|x| *x == id).count();
        ensure!(times == 1, "bucket {id} evacuated {times} times");
    }
    common::check_evacuated(&pair.standby, &on_standby, &b, &victim).await?;

    // One copy of each: one service, and on the nodes left, one data volume per bucket.
    for id in b.ids.iter().take(SNAPSHOTTED) {
        let filter = format!("label=kalpana.bucket.id={id}");
        let services = cluster.docker(&["service", "ls", "-q", "--filter", &filter])?;
        ensure!(
            services.lines().count() == 1,
            "bucket {id}: one service: {services}"
        );
        let mut volumes = Vec::new();
        for n in nodes.iter().filter(|n| n.n != victim.n) {
            let out = cluster.docker_at(
                &format!("10.203.0.{}", n.n),
                &[
                    "volume",
                    "ls",
                    "-q",
                    "--filter",
                    &format!("name=kalpana-bucket-{id}-data"),
                ],
            )?;
            volumes.extend(out.lines().map(|l| format!("node {}: {l}", n.n)));
        }
        ensure!(
            volumes.len() == 1,
            "bucket {id}: one data volume on the nodes left: {volumes:?}"
        );
    }

    // The takeover fenced nobody: the nodes left never stopped a container, and the longest
    // stretch without an acknowledged report stayed under the fencing time.
    let logs = agents.logs();
    ensure!(
        !logs.contains("stopping this node's bucket containers"),
        "no node fenced by the takeover"
    );
    let longest = logs
        .lines()
        .filter(|l| l.contains("reports reach the daemon again"))
        .filter_map(|l| number_after(l, "unacked_ms="))
        .max();
    println!(
        "agents: longest time without an acknowledged report across the takeover: {} ms (fencing at {} ms)",
        longest.map_or("none".into(), |ms| ms.to_string()),
        common::FENCE_SECS * 1000
    );
    ensure!(
        longest.is_some_and(|ms| ms < common::FENCE_SECS * 1000),
        "the agents noticed the takeover and stayed under the fencing time: {longest:?}"
    );
    Ok(())
}

/// Bucket ids of the "evacuating" lines of a daemon log.
fn evacuating(log: &str) -> Vec<String> {
    ids_of(log, "evacuating the bucket of a lost node")
}

/// Bucket ids of the "bucket evacuated" lines of a daemon log.
fn evacuated(log: &str) -> Vec<String> {
    ids_of(log, "bucket evacuated")
}

fn ids_of(log: &str, needle: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            let l = kalpana_e2e::strip_colours(l);
            let at = l.find("bucket=")? + "bucket=".len();
            Some(l[at..].split_whitespace().next()?.to_string())
        })
        .collect()
}

/// The number after `key` in a log line (colours stripped).
fn number_after(line: &str, key: &str) -> Option<u64> {
    let l = kalpana_e2e::strip_colours(line);
    let at = l.find(key)? + key.len();
    l[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}
