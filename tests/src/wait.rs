//! Polling until something holds, with a limit.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::Value;

/// Polls `f` every 250 ms until it gives a value, at most `within`; the error names `what`.
pub async fn until<F, Fut>(what: &str, within: Duration, mut f: F) -> anyhow::Result<Value>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<Value>>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if started.elapsed() > within {
            bail!("{what}: not within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
