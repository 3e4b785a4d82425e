//! Waiting for an S3 server to answer: poll its unauthenticated health path, never trust
//! "running".

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How often a starting server is asked.
pub const POLL: Duration = Duration::from_millis(10);

/// Polls `url` until it answers 200 or `timeout` passes.
pub async fn wait_http_ok(engine: &str, url: &str, timeout: Duration) -> Result<Duration> {
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| Error::InvalidConfig(format!("http client: {e}")))?;
    let mut last = String::from("no answer yet");
    while started.elapsed() < timeout {
        match client.get(url).send().await {
            Ok(resp) if resp.status().is_success() => return Ok(started.elapsed()),
            Ok(resp) => last = format!("{url} answered {}", resp.status()),
            Err(e) => last = format!("{url}: {e}"),
        }
        // A refused connection costs microseconds: polling often finds the server ready
        // within POLL of the moment it is.
        tokio::time::sleep(POLL).await;
    }
    Err(Error::NotReady {
        engine: engine.to_string(),
        seconds: timeout.as_secs(),
        last,
    })
}
