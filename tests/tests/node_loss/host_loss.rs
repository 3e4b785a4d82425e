//! The engine of a node dies (its agent still heartbeats: nothing moves), then every process
//! of the node (engine, containers, agent): its buckets serve elsewhere from their snapshots.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use kalpana_e2e::swarm::Cluster;
use kalpana_e2e::Daemon;

use crate::common::{self, Buckets, NODE_LOST_SECS};

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_hosts_buckets_serve_elsewhere_from_their_snapshots_and_an_engine_crash_moves_nothing(
) -> anyhow::Result<()> {
    common::on_one_daemon(scenario).await
}

async fn scenario(cluster: &Cluster, d: &Daemon) -> anyhow::Result<()> {
    let admin = d.admin();
    let nodes = cluster.node_refs()?;
    let victim = nodes.iter().find(|n| n.n == 2).context("node 2")?.clone();
    common::reporting(&admin).await?;
    let (alice, _) = d.new_user("alice").await?;
    let b: Buckets = common::populate(cluster, &alice, &nodes, &victim).await?;

    // The engine alone dies: the agent still heartbeats, so nothing moves.
    let crashed = Instant::now();
    cluster.kill_engine(victim.n)?;
    common::until(
        "the fleet says the engine is down",
        Duration::from_secs(30),
        || async {
            let (_, f) = admin.send("GET", "/api/fleet", None).await?;
            let down = f["nodes"].as_array().is_some_and(|n| {
                n.iter()
                    .any(|n| n["id"] == victim.id.as_str() && n["engineOk"] == false)
            });
            Ok(down.then_some(f))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(NODE_LOST_SECS + 10).saturating_sub(crashed.elapsed()))
        .await;
    for id in &b.ids {
        let (_, v) = alice
            .send("GET", &format!("/api/buckets/{id}"), None)
            .await?;
        ensure!(
            v["evacuation"].is_null() && v["status"] == "RUNNING",
            "an engine crash moves nothing while the agent heartbeats: {v}"
        );
    }
    println!(
        "engine of node {} dead for {} s: nothing evacuated, the fleet says engineOk=false",
        victim.n,
        crashed.elapsed().as_secs()
    );

    // Now the host: every process of the node.
    let loss = common::Loss::now();
    let killed = cluster.kill_node(victim.n)?;
    println!(
        "node {}: {killed} processes killed at {}",
        victim.n,
        kalpana_domain::model::now()
    );
    let back_at = common::serving_again(&alice, &b, loss.at).await?;
    let log = d.log();
    common::print_timeline(
        "a host loss",
        &loss,
        &back_at,
        &[
            (
                "lease expired (node lost)",
                common::log_line(&log, "node lost: its lease expired"),
            ),
            (
                "first evacuation began",
                common::log_line(&log, "evacuating the bucket of a lost node"),
            ),
        ],
    );
    let slowest = back_at.iter().max().copied().unwrap_or_default();
    ensure!(
        slowest < Duration::from_secs(60),
        "every bucket with a snapshot serves again within 60 s of the loss: {back_at:?}"
    );
    common::check_evacuated(d, &alice, &b, &victim).await?;
    let (status, list) = admin.send("GET", "/api/admin/set-aside", None).await?;
    ensure!(
        status == 200 && list.as_array().is_some_and(Vec::is_empty),
        "nothing set aside while the node is away: {status} {list}"
    );
    Ok(())
}
