//! The `swarm` runtime on the test cluster (three Docker engines in network namespaces, made by
//! `.ci/swarm-up`): the conformance suite's server checks, and buckets spread over the nodes,
//! pinned to their volume's node, with nothing secret in what `docker service inspect` shows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use kalpana_e2e::runtime_suite::{self, Place, Scope};
use kalpana_e2e::swarm::require_cluster;
use kalpana_e2e::{new_instance, next_port_range, remove_instance_resources, require_environment};
use kalpana_manager_core::{DockerClient, DockerRuntime, Runtime, SwarmRuntime};

#[tokio::test(flavor = "multi_thread")]
async fn the_swarm_runtime_passes_the_server_checks_of_the_conformance_suite() -> anyhow::Result<()>
{
    require_environment()?;
    let cluster = require_cluster()?;
    let instance = new_instance();
    let (first, _) = next_port_range();
    let place = Place {
        instance: instance.clone(),
        network: String::new(),
        ports: (first, first + 1),
    };
    let rt = Arc::new(SwarmRuntime::connect(
        &cluster.manager,
        &instance,
        Default::default(),
    )?);
    let outcome = runtime_suite::run(rt, &place, Scope::Servers).await;
    cluster.remove_instance(&instance);
    outcome
}

#[tokio::test(flavor = "multi_thread")]
async fn six_buckets_spread_over_three_nodes_stay_on_their_volumes_node_and_show_no_secret(
) -> anyhow::Result<()> {
    require_environment()?;
    let cluster = require_cluster()?;
    let instance = new_instance();
    let outcome = spread(&cluster, &instance).await;
    cluster.remove_instance(&instance);
    remove_instance_resources(&instance);
    outcome
}

async fn spread(cluster: &kalpana_e2e::swarm::Cluster, instance: &str) -> anyhow::Result<()> {
    let (first, _) = next_port_range();
    let place = Place {
        instance: instance.to_string(),
        network: String::new(),
        ports: (first, first + 1),
    };
    let rt = SwarmRuntime::connect(&cluster.manager, instance, Default::default())?;
    rt.prepare().await.context("prepare")?;

    // Six buckets, one after another, as the daemon makes them.
    let mut made = Vec::new();
    let mut swarm_ms = Vec::new();
    for i in 0..6u16 {
        let s = runtime_suite::spec(&place, &runtime_suite::new_id(), first + i);
        let t = Instant::now();
        let c = runtime_suite::up(&rt, &s)
            .await
            .with_context(|| format!("bucket {i}"))?;
        swarm_ms.push(t.elapsed().as_millis() as u64);
        runtime_suite::put(&c, "k", format!("data of {i}").as_bytes()).await?;
        made.push((s, c));
    }
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut node_of = Vec::new();
    for (s, _) in &made {
        let st = rt
            .inspect_server(&s.id)
            .await?
            .context("a made server is inspected")?;
        let node = st
            .node
            .clone()
            .context("a running service names its node")?;
        *per_node.entry(node.clone()).or_default() += 1;
        node_of.push(node);
    }
    println!("buckets per node: {per_node:?}");
    let (min, max) = (
        per_node.values().min().copied().unwrap_or(0),
        per_node.values().max().copied().unwrap_or(0),
    );
    ensure!(
        per_node.len() == cluster.nodes.len(),
        "every node holds buckets: {per_node:?}"
    );
    ensure!(max - min <= 1, "spread: {per_node:?}");

    // Nothing secret in what the manager shows of a service; pinned once it ran.
    for (s, _) in &made {
        let shown = cluster.docker(&["service", "inspect", &format!("kalpana-bucket-{}", s.id)])?;
        ensure!(
            !shown.contains(&s.secret_key),
            "the secret key shows in service inspect"
        );
        ensure!(!shown.contains("WEED_JWT"), "signing keys in the env");
        ensure!(shown.contains("node.id=="), "pinned to its node: {shown}");
    }

    // Two buckets on one node share no network: neither the other's S3 port nor its engine's
    // internal ports answer from inside one's container; only its published S3 port does.
    let (x, y) = (0..made.len())
        .flat_map(|i| (0..made.len()).map(move |j| (i, j)))
        .find(|&(i, j)| i != j && node_of[i] == node_of[j])
        .context("two buckets on one node")?;
    isolated(cluster, &node_of[x], &made[x].0.id, &made[y].0).await?;

    // Pinning where it first ran did not restart it: one task in its history.
    let (s1, _) = &made[1];
    let history = cluster.docker(&["service", "ps", "-q", &format!("kalpana-bucket-{}", s1.id)])?;
    ensure!(
        history.lines().count() == 1,
        "tasks of a pinned service: {history}"
    );

    // Stopped and started again: a new container on the same node, on the same data.
    let (s0, _) = &made[0];
    rt.stop_server(&s0.id, Duration::from_secs(10)).await?;
    ensure!(
        rt.address(&s0.id, 8333).await?.is_none(),
        "a stopped bucket has no address"
    );
    rt.start_server(&s0.id).await?;
    let st = rt.inspect_server(&s0.id).await?.context("restarted")?;
    ensure!(
        st.node.as_ref() == Some(&node_of[0]),
        "back on {}: {st:?}",
        node_of[0]
    );
    let c0 = runtime_suite::client(&rt, s0).await?;
    ensure!(
        runtime_suite::get(&c0, "k").await?.as_deref() == Some(&b"data of 0"[..]),
        "the data stayed on its volume"
    );
    for (i, (_, c)) in made.iter().enumerate().skip(1) {
        ensure!(
            runtime_suite::get(c, "k").await?.as_deref() == Some(format!("data of {i}").as_bytes()),
            "bucket {i} serves its own data at its node's address"
        );
    }

    // The same make-to-first-answer on one Docker engine, in the same run.
    let mut swarm_wake = Vec::new();
    for (s, _) in made.iter().skip(1).take(3) {
        swarm_wake.push(restart_ms(&rt, s).await?);
    }
    let (docker_ms, docker_wake) = docker_baseline(instance, first + 10).await?;
    let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len().max(1) as f64;
    println!(
        "create to first S3 answer: swarm mean {:.0} ms {swarm_ms:?}, docker mean {:.0} ms {docker_ms:?}, ratio {:.2}",
        mean(&swarm_ms),
        mean(&docker_ms),
        mean(&swarm_ms) / mean(&docker_ms).max(1.0)
    );
    println!(
        "stopped to first S3 answer (a wake): swarm 0->1 replicas mean {:.0} ms {swarm_wake:?}, docker start mean {:.0} ms {docker_wake:?}, ratio {:.2}",
        mean(&swarm_wake),
        mean(&docker_wake),
        mean(&swarm_wake) / mean(&docker_wake).max(1.0)
    );

    // Removed: no service, no secret left.
    for (s, _) in &made {
        rt.remove_server(&s.id).await?;
        ensure!(rt.inspect_server(&s.id).await?.is_none(), "removed");
    }
    let left = cluster.docker(&[
        "secret",
        "ls",
        "-q",
        "--filter",
        &format!("label=kalpana.instance={instance}"),
    ])?;
    ensure!(left.trim().is_empty(), "secrets left: {left}");
    Ok(())
}

/// Make-to-first-answer and stop-start-to-first-answer of three servers on the host's own engine
/// (the `docker` runtime).
async fn docker_baseline(instance: &str, port: u16) -> anyhow::Result<(Vec<u64>, Vec<u64>)> {
    let network = kalpana_e2e::TEST_NETWORK;
    let docker = DockerClient::connect(instance, Duration::from_secs(60))?;
    let rt = DockerRuntime::new(docker, network, None);
    let place = Place {
        instance: instance.to_string(),
        network: network.to_string(),
        ports: (port, port + 1),
    };
    let (mut made, mut woke) = (Vec::new(), Vec::new());
    for i in 0..3u16 {
        let s = runtime_suite::spec(&place, &runtime_suite::new_id(), port + i);
        let t = Instant::now();
        runtime_suite::up(&rt, &s).await?;
        made.push(t.elapsed().as_millis() as u64);
        woke.push(restart_ms(&rt, &s).await?);
        rt.remove_server(&s.id).await?;
        rt.remove_volume(&s.id).await?;
    }
    Ok((made, woke))
}

/// Stops `s`'s server, then measures a start to its first signed S3 answer (what a wake
/// costs the runtime).
async fn restart_ms(rt: &dyn Runtime, s: &kalpana_manager_core::BucketSpec) -> anyhow::Result<u64> {
    rt.stop_server(&s.id, Duration::from_secs(10)).await?;
    let t = Instant::now();
    rt.start_server(&s.id).await?;
    runtime_suite::client(rt, s).await?;
    Ok(t.elapsed().as_millis() as u64)
}

/// From inside `prober`'s task on `node`, `target`'s container (on the same node) answers on
/// none of its addresses, and its published S3 port (the public endpoint) does.
async fn isolated(
    cluster: &kalpana_e2e::swarm::Cluster,
    node: &str,
    prober: &str,
    target: &kalpana_manager_core::BucketSpec,
) -> anyhow::Result<()> {
    use kalpana_e2e::probe::connects_from_netns;
    let address = cluster
        .docker(&[
            "node",
            "inspect",
            node,
            "-f",
            "{{index .Spec.Labels \"kalpana.public-host\"}}",
        ])?
        .trim()
        .to_string();
    let pid_of = |id: &str| -> anyhow::Result<u32> {
        let c = cluster.docker_at(
            &address,
            &[
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.swarm.service.name=kalpana-bucket-{id}"),
            ],
        )?;
        let c = c
            .split_whitespace()
            .next()
            .context("its task's container")?
            .to_string();
        Ok(cluster
            .docker_at(&address, &["inspect", "-f", "{{.State.Pid}}", &c])?
            .trim()
            .parse()?)
    };
    let (p, t) = (pid_of(prober)?, pid_of(&target.id)?);
    let out = std::process::Command::new("nsenter")
        .args(["-t", &t.to_string(), "-n", "ip", "-4", "-o", "addr"])
        .output()?;
    let ips: Vec<std::net::IpAddr> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3)?.split('/').next()?.parse().ok())
        .filter(|ip: &std::net::IpAddr| !ip.is_loopback())
        .collect();
    ensure!(
        ips.len() >= 2,
        "its own network and the node's gateway bridge: {ips:?}"
    );
    for ip in &ips {
        for port in [8333, 9333, 8888, 18888, 19333, 18333, 23646] {
            ensure!(
                !connects_from_netns(p, *ip, port)?,
                "bucket {prober} reaches {ip}:{port} of bucket {} on the same node",
                target.id
            );
        }
    }
    let public: std::net::IpAddr = address.parse()?;
    ensure!(
        connects_from_netns(p, public, target.s3_port)?,
        "the published S3 port answers every client (the probe works)"
    );
    println!(
        "isolation on {node}: {} addresses x 7 ports closed, published port open",
        ips.len()
    );
    Ok(())
}
