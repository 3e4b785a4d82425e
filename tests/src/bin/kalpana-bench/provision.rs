//! `provision [N]`: creates to RUNNING beside a plain `docker run`.

use super::*;

/// `docker run` of the engine image, as the daemon configures it, to its first 200 on /healthz.
pub(super) async fn plain_docker_run(port: u16) -> Result<f64> {
    let name = format!("kalpana-bench-plain-{}", uuid::Uuid::new_v4().simple());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let started = Instant::now();
    // tokio's Command, so that concurrent runs really start concurrently.
    let status = tokio::process::Command::new("docker")
        .args(["run", "-d", "--name", &name, "-p"])
        .arg(format!("127.0.0.1:{port}:8333"))
        .args([
            "-e",
            "AWS_ACCESS_KEY_ID=benchbenchbench",
            "-e",
            "AWS_SECRET_ACCESS_KEY=benchbenchbenchbench",
        ])
        .args(["--entrypoint", "/usr/bin/weed", ENGINE_IMAGE])
        // The same command the daemon's seaweedfs profile runs.
        .args(EngineProfile::seaweedfs().command(512 * 1024 * 1024))
        .stdout(Stdio::null())
        .status()
        .await?;
    if !status.success() {
        // A failed run can leave a created container behind.
        let _ = tokio::process::Command::new("docker")
            .args(["rm", "-f", "-v", &name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        bail!("docker run failed");
    }
    let url = format!("http://127.0.0.1:{port}/healthz");
    let result = loop {
        if let Ok(r) = http.get(&url).send().await {
            if r.status().is_success() {
                break Ok(started.elapsed().as_secs_f64());
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            break Err(anyhow::anyhow!("plain container never answered"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let _ = tokio::process::Command::new("docker")
        .args(["rm", "-f", "-v", &name])
        .stdout(Stdio::null())
        .status()
        .await;
    result
}

pub(super) async fn provision(n: usize) -> Result<()> {
    let d = Daemon::start().await?;
    let (api, _) = d.new_user("bench").await?;
    // One warm-up of each so that neither side pays first-use costs.
    let _ = plain_docker_run(d.port_range.1).await?;
    let (status, b) = api.create_bucket(json!({ "name": "warmup" })).await?;
    if status != 201 || b["status"] != "RUNNING" {
        bail!("warm-up create failed: {status} {b}");
    }
    let mut plain = Vec::new();
    let mut daemon = Vec::new();
    for i in 0..n {
        // Interleave so both see the same machine conditions.
        plain.push(plain_docker_run(d.port_range.1).await?);
        let started = Instant::now();
        let (status, b) = api
            .create_bucket(json!({ "name": format!("bench-{i}") }))
            .await?;
        let secs = started.elapsed().as_secs_f64();
        if status != 201 || b["status"] != "RUNNING" {
            bail!("create {i} failed: {status} {b}");
        }
        daemon.push(secs);
        let id = b["id"].as_str().context("id")?;
        let status = api.delete_bucket(id, true).await?;
        if status != 204 {
            bail!("delete {i} failed: {status}");
        }
    }
    let (pm, dm) = (median(&mut plain.clone()), median(&mut daemon.clone()));
    println!("provision.sequential n={n} plain_docker_run_to_first_s3_answer median_s={pm:.3} p95_s={:.3}", percentile(&mut plain, 95.0));
    println!(
        "provision.sequential n={n} daemon_post_to_running median_s={dm:.3} p95_s={:.3}",
        percentile(&mut daemon, 95.0)
    );
    println!(
        "provision.sequential ratio daemon/plain median={:.3} (overhead {:+.1}%)",
        dm / pm,
        (dm / pm - 1.0) * 100.0
    );

    // n concurrent creates through the daemon, beside n concurrent plain `docker run`s.
    // Outside every test daemon's slice of this process's ports (see `port_base`).
    let ports: Vec<u16> = (0..n.min(20) as u16)
        .map(|i| kalpana_e2e::port_base() + 376 + i)
        .collect();
    let wall = Instant::now();
    let mut plain_c: Vec<f64> =
        futures::future::join_all(ports.iter().map(|p| plain_docker_run(*p)))
            .await
            .into_iter()
            .collect::<Result<_>>()?;
    let plain_wall = wall.elapsed().as_secs_f64();
    let wall = Instant::now();
    let created = futures::future::join_all((0..n).map(|i| {
        let api = api.clone();
        async move {
            let started = Instant::now();
            let (status, b) = api
                .create_bucket(json!({ "name": format!("conc-{i}") }))
                .await?;
            if status != 201 || b["status"] != "RUNNING" {
                bail!("concurrent create {i} failed: {status} {b}");
            }
            anyhow::Ok((
                started.elapsed().as_secs_f64(),
                b["id"].as_str().unwrap_or_default().to_string(),
            ))
        }
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>>>()?;
    let daemon_wall = wall.elapsed().as_secs_f64();
    let mut daemon_c: Vec<f64> = created.iter().map(|(s, _)| *s).collect();
    for (_, id) in &created {
        api.delete_bucket(id, true).await?;
    }
    let (pm, dm) = (median(&mut plain_c.clone()), median(&mut daemon_c.clone()));
    println!("provision.concurrent n={n} plain_docker_run_to_first_s3_answer median_s={pm:.3} p95_s={:.3} wall_s={plain_wall:.3}", percentile(&mut plain_c, 95.0));
    println!("provision.concurrent n={n} daemon_post_to_running median_s={dm:.3} p95_s={:.3} wall_s={daemon_wall:.3}", percentile(&mut daemon_c, 95.0));
    println!(
        "provision.concurrent ratio daemon/plain median={:.3} wall={:.3}",
        dm / pm,
        daemon_wall / plain_wall
    );
    Ok(())
}
