//! Benchmarks that print one line per figure, each beside a baseline measured in the same run.
//! `cargo run --release -p kalpana-e2e --bin kalpana-bench -- <what>`, where what is:
//!
//! - `provision [N]`: `POST /api/buckets?wait=true` to RUNNING, N sequential and N concurrent
//!   creates, beside a plain `docker run` of the same image to its first S3 answer.
//! - `transfer [REPS]`: 1 MiB, 64 MiB and 1 GiB uploads and downloads through the daemon beside
//!   the same transfer straight to the bucket container with aws-sdk-s3; the daemon's idle and
//!   peak RSS.
//! - `presign [N]`: presigned URLs per second on one core, as the daemon makes them, beside the
//!   SDK presigning with one reused client.
//! - `list [RECORDS]`: `GET /api/buckets` and `GET /api/buckets/{id}` latency with RECORDS bucket
//!   records in the store, beside `GET /healthz` on the same daemon.
//! - `stores [RECORDS [REQUESTS]]`: `list` on the embedded store, then on a MongoDB wire server
//!   (SecantusDB from `.tools/mongo-venv`, started by the benchmark), in one run.
//! - `small [N]`: N sequential 4 KiB and N/10 1 MiB PUTs and GETs through the API beside the same
//!   straight to the bucket with aws-sdk-s3: operations per second, p99, and their ratios.
//! - `inventory [VOLUMES [PAGES]]`: a dock sync of VOLUMES (5,000) volumes over PAGES (50)
//!   pages from a provider stand-in, on both stores, beside reading the pages directly; then a
//!   second, unchanged sync and the store writes of each.
//! - `snapshot [MIB]`: a bucket of MIB (1024) MiB of incompressible objects snapshotted into
//!   another bucket and restored, beside `docker cp` of the same volume path: MiB/s of each,
//!   pause per GiB, restore downtime, the daemon's peak RSS growth.
//! - `sleep [N [WAKES]]`: WAKES (100) wakes of a sleeping bucket to the first byte of a GET,
//!   beside `docker start` of a plain stopped container of the same image to its first S3
//!   answer; the daemon's RSS with N (200) sleeping buckets and its growth per bucket; the
//!   bucket containers' memory asleep and awake.
//! - `all`: every one of the above with its defaults.

mod inventory;
mod list;
mod presign;
mod provision;
mod sleep;
mod small;
mod snapshot;
mod transfer;

use std::process::Stdio;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use kalpana_e2e::{
    object_path, percentile, proc_memory, s3_client, Daemon, DaemonOptions, ENGINE_IMAGE,
};
use kalpana_manager_core::EngineProfile;
use serde_json::json;
use transfer::{direct_client, RssSampler};

const MIB: u64 = 1024 * 1024;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn api_token(api: &kalpana_e2e::Api) -> String {
    api.raw().2.unwrap_or_default().to_string()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: usize| -> Result<usize> {
        Ok(args
            .get(i)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    match args.first().map(String::as_str) {
        Some("provision") => provision::provision(arg(1, 20)?).await,
        Some("transfer") => transfer::transfer(arg(1, 3)?).await,
        Some("presign") => presign::presign_on_own_thread(arg(1, 20_000)?),
        Some("list") => list::list(arg(1, 10_000)?, arg(2, 1000)?, None).await,
        Some("stores") => list::stores(arg(1, 10_000)?, arg(2, 1000)?).await,
        Some("small") => small::small(arg(1, 500)?).await,
        Some("inventory") => inventory::run(arg(1, 5000)?, arg(2, 50)?).await,
        Some("snapshot") => snapshot::run(arg(1, 1024)? as u64).await,
        Some("sleep") => sleep::run(arg(1, 200)?, arg(2, 100)?).await,
        Some("all") => {
            provision::provision(20).await?;
            transfer::transfer(3).await?;
            presign::presign_on_own_thread(20_000)?;
            list::stores(10_000, 1000).await?;
            inventory::run(5000, 50).await?;
            snapshot::run(1024).await?;
            sleep::run(200, 100).await
        }
        _ => bail!("usage: kalpana-bench provision [N] | transfer [REPS] | presign [N] | list [RECORDS [REQUESTS]] | stores [RECORDS [REQUESTS]] | small [N] | inventory [VOLUMES [PAGES]] | snapshot [MIB] | sleep [N [WAKES]] | all"),
    }
}
