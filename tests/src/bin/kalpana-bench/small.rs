//! `small [N]`: small and 1 MiB operations through the API beside straight to the bucket.

use super::*;

/// Operations per second and p99 latency of `n` sequential PUTs and GETs of `size`-byte objects
/// through the API (one keep-alive client) beside the same through aws-sdk-s3 straight to the
/// bucket's container, in one run.
pub(super) async fn small(n: usize) -> Result<()> {
    let d = Daemon::start().await?;
    let (api, _) = d.new_user("bench").await?;
    let (status, b) = api.create_bucket(json!({ "name": "small" })).await?;
    if status != 201 || b["status"] != "RUNNING" {
        bail!("create failed: {status} {b}");
    }
    let id = b["id"].as_str().context("id")?.to_string();
    let direct = s3_client(
        b["endpoint"].as_str().context("endpoint")?,
        b["accessKey"].as_str().context("accessKey")?,
        b["secretKey"].as_str().context("secretKey")?,
    );
    let (http, base, token) = api.raw();
    let (http, base, token) = (
        http.clone(),
        base.to_string(),
        token.unwrap_or("").to_string(),
    );
    // Rounds interleave the four phases, so that the machine's drift over a run (the direct
    // figures alone moved 30 % between runs) falls on both sides alike.
    const ROUNDS: usize = 5;
    const PHASES: [(&str, &str); 4] = [
        ("direct", "put"),
        ("api", "put"),
        ("direct", "get"),
        ("api", "get"),
    ];
    for (size, count) in [(4 * 1024usize, n), (1024 * 1024, n / 5)] {
        let body = vec![7u8; size];
        let per_round = count.div_ceil(ROUNDS);
        let mut lat: Vec<Vec<f64>> = vec![Vec::with_capacity(count); PHASES.len()];
        let mut spent = [0f64; PHASES.len()];
        for round in 0..ROUNDS {
            for (phase, (via, op)) in PHASES.into_iter().enumerate() {
                let started = Instant::now();
                for i in round * per_round..(round + 1) * per_round {
                    let key = format!("obj-{size}-{i}");
                    let t = Instant::now();
                    match (via, op) {
                        ("direct", "put") => {
                            direct
                                .put_object()
                                .bucket("small")
                                .key(&key)
                                .body(body.clone().into())
                                .send()
                                .await?;
                        }
                        ("direct", _) => {
                            let got = direct.get_object().bucket("small").key(&key).send().await?;
                            got.body.collect().await?;
                        }
                        ("api", "put") => {
                            let resp = http
                                .put(format!("{base}{}", object_path(&id, &format!("{key}-api"))))
                                .bearer_auth(&token)
                                .body(body.clone())
                                .send()
                                .await?;
                            if resp.status() != 201 {
                                bail!("API PUT: {}", resp.status());
                            }
                        }
                        _ => {
                            let resp = http
                                .get(format!("{base}{}", object_path(&id, &format!("{key}-api"))))
                                .bearer_auth(&token)
                                .send()
                                .await?;
                            if resp.status() != 200 {
                                bail!("API GET: {}", resp.status());
                            }
                            resp.bytes().await?;
                        }
                    }
                    lat[phase].push(t.elapsed().as_secs_f64() * 1000.0);
                }
                spent[phase] += started.elapsed().as_secs_f64();
            }
        }
        let mut figures = Vec::new();
        for (phase, (via, op)) in PHASES.into_iter().enumerate() {
            let done = lat[phase].len();
            let ops = done as f64 / spent[phase];
            let p99 = percentile(&mut lat[phase], 99.0);
            println!(
                "small.{op} size={size} via={via} n={done} ops_per_s={ops:.1} p99_ms={p99:.2}"
            );
            figures.push(ops);
        }
        println!(
            "small.ratio size={size} put_api_over_direct={:.3} get_api_over_direct={:.3}",
            figures[1] / figures[0],
            figures[3] / figures[2]
        );
    }
    Ok(())
}
