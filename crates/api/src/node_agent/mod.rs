//! `kalpana-buckets node`: the agent on every bucket node of a Swarm. It listens on nothing:
//! it dials out to the daemon (HTTPS in production) with its node's own token, reports its host
//! and its bucket containers' samples every couple of seconds (its heartbeat), and runs the
//! volume jobs the daemon hands it on its own Docker engine, moving archive bytes straight
//! between its node and the archive's bucket.
//!
//! What it trusts: the daemons at the configured URLs (and its TLS certificate). What it holds:
//! the node's Docker socket (root on the node) and its own token, nothing of any bucket's
//! credentials. A bucket container on the node cannot reach it (it has no port), and sees no
//! token (the agent joins no bucket or overlay network; its token is a file only it mounts).

mod fence;
mod jobs;
mod report;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use kalpana_manager_core::node_protocol::NodeJob;
use kalpana_manager_core::{DockerClient, DockerRuntime};

/// How the agent is set up.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The daemon's base URL (`https://…`), or several separated by commas: an active daemon
    /// and its standbys, tried in turn when one cannot be reached or is a standby.
    pub daemon: String,
    /// The file holding this node's token.
    pub token_file: std::path::PathBuf,
    /// The daemon instance whose buckets it serves.
    pub instance: String,
    /// A PEM file of the CA that signed the daemon's certificate, when not a public one.
    pub ca_file: Option<std::path::PathBuf>,
    /// How long it serves without an acknowledged heartbeat before it stops its node's bucket
    /// containers (`KALPANA_FENCE_SECS`).
    pub fence_after: Duration,
}

/// Longest a request to the daemons may take in all (a report has its own, shorter limit).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Most jobs run at once.
const CONCURRENT_JOBS: usize = 4;

/// The agent's connection to its daemon: the active one of the daemons it was given.
#[derive(Clone)]
pub(crate) struct Link {
    http: reqwest::Client,
    /// Every daemon's base URL (an active daemon and its standbys).
    bases: Arc<[String]>,
    /// The one that answered last: asked first.
    current: Arc<AtomicUsize>,
    token: String,
}

impl Link {
    /// Sends what `build` makes of a base URL to the daemon that answered last, within
    /// `within` in all; when that one cannot be reached, does not answer in its share of the
    /// time, or answers 502, 503 (a standby, a store outage) or 504 (a proxy in front of a dead
    /// daemon), to the next one, each once. A daemon that answers otherwise is the one kept.
    async fn send(
        &self,
        within: Duration,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let n = self.bases.len();
        let share = within / n as u32;
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut last_err = None;
        for k in 0..n {
            let i = (first + k) % n;
            let base = self.bases[i].trim_end_matches('/');
            // The last one tried gets whatever time is left of the others' shares too.
            let budget = if k + 1 == n {
                within - share * k as u32
            } else {
                share
            };
            match build(base)
                .bearer_auth(&self.token)
                .timeout(budget)
                .send()
                .await
            {
                Ok(resp) if !try_another(resp.status()) => {
                    if i != first {
                        tracing::info!(daemon = %base, "node agent: this daemon answers now");
                        self.current.store(i, Ordering::Relaxed);
                    }
                    return Ok(resp);
                }
                Ok(resp) => last_err = Some(anyhow::anyhow!("{base}: {}", resp.status())),
                Err(e) if e.is_connect() || e.is_timeout() => {
                    last_err = Some(anyhow::Error::new(e.without_url()).context(base.to_string()))
                }
                Err(e) => return Err(anyhow::Error::new(e.without_url()).context(base.to_string())),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no daemon configured")))
    }

    /// POSTs `body` as JSON to the daemon's `path`; the answer as `T`.
    pub(crate) async fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.post_within(path, body, REQUEST_TIMEOUT).await
    }

    /// [`Link::post`] within `within` in all, whichever daemons it tries.
    pub(crate) async fn post_within<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        within: Duration,
    ) -> anyhow::Result<T> {
        let resp = self
            .send(within, |base| {
                self.http.post(format!("{base}{path}")).json(body)
            })
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            bail!(
                "POST {path}: {status}: {}",
                text.chars().take(300).collect::<String>()
            );
        }
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(serde_json::from_str("null")?);
        }
        Ok(resp.json().await?)
    }
}

/// Whether another daemon may answer where this one answered `status`: a standby (503), a
/// proxy before a dead daemon (502, 504).
fn try_another(status: reqwest::StatusCode) -> bool {
    matches!(status.as_u16(), 502..=504)
}

/// The daemons' base URLs from `--daemon` (comma-separated: an active daemon and its standbys).
fn daemon_urls(daemon: &str) -> anyhow::Result<Arc<[String]>> {
    let urls: Vec<String> = daemon
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect();
    if urls.is_empty() {
        bail!("KALPANA_NODE_DAEMON names no daemon URL");
    }
    for u in &urls {
        let parsed = reqwest::Url::parse(u).with_context(|| format!("daemon URL {u:?}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("daemon URL {u:?}: not http(s)");
        }
    }
    Ok(urls.into())
}

/// Runs the agent until SIGTERM or Ctrl-C.
pub async fn run(config: AgentConfig) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&config.token_file)
        .with_context(|| {
            format!(
                "reading the node token from {}",
                config.token_file.display()
            )
        })?
        .trim()
        .to_string();
    let node = token
        .strip_prefix(kalpana_domain::secrets::NODE_TOKEN_PREFIX)
        .and_then(|rest| rest.rsplit_once('_'))
        .map(|(node, _)| node.to_string())
        .filter(|n| kalpana_domain::secrets::valid_node_id(n))
        .context("the file does not hold a node token (kbn_<node id>_…: POST /api/nodes/<node id>/token)")?;
    let docker = DockerClient::connect(&config.instance, Duration::from_secs(600))?;
    let engine_node = docker.host_info().await.ok().map(|h| h.id);
    if let Some(id) = engine_node.filter(|id| !id.is_empty() && *id != node) {
        bail!("this token is node {node}'s, but the local Docker engine is node {id}");
    }
    // No redirects: the token goes to the configured daemons only.
    let mut http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &config.ca_file {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let link = Link {
        http: http.build()?,
        bases: daemon_urls(&config.daemon)?,
        current: Arc::new(AtomicUsize::new(0)),
        token,
    };
    let runtime = Arc::new(DockerRuntime::new(docker.clone(), "none", None));
    tracing::info!(node = %node, daemon = %config.daemon, "node agent started");
    let acked = fence::Acked::now();
    let reporter = tokio::spawn(report::run(
        link.clone(),
        docker.clone(),
        node.clone(),
        acked.clone(),
    ));
    let fencer = tokio::spawn(fence::run(docker, node.clone(), acked, config.fence_after));
    let worker = tokio::spawn(work(link, runtime));
    crate::server::termination().await;
    reporter.abort();
    fencer.abort();
    worker.abort();
    tracing::info!(node = %node, "node agent stopped");
    Ok(())
}

/// Takes jobs by long polling and runs them, a few at a time.
async fn work(link: Link, runtime: Arc<DockerRuntime>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_JOBS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        match next(&link).await {
            Ok(Some(job)) => {
                let (link, runtime) = (link.clone(), runtime.clone());
                tokio::spawn(async move {
                    jobs::run(&link, &runtime, job).await;
                    drop(permit);
                });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "asking the daemon for jobs failed");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

async fn next(link: &Link) -> anyhow::Result<Option<NodeJob>> {
    // Each daemon may hold the poll for 20 s.
    let within = Duration::from_secs(30) * link.bases.len() as u32;
    let resp = link
        .send(within, |base| {
            link.http.get(format!("{base}/api/node/jobs?waitSecs=20"))
        })
        .await?;
    match resp.status() {
        reqwest::StatusCode::NO_CONTENT => Ok(None),
        s if s.is_success() => Ok(Some(resp.json().await?)),
        s => bail!("{s}: {}", resp.text().await.unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::daemon_urls;

    #[test]
    fn daemon_urls_are_split_on_commas_and_checked() {
        let urls = daemon_urls(" http://10.0.0.1:8080 ,https://b.example/ ").expect("two URLs");
        assert_eq!(&urls[..], ["http://10.0.0.1:8080", "https://b.example/"]);
        assert!(daemon_urls(" , ").is_err());
        assert!(daemon_urls("http://a,ftp://b").is_err());
        assert!(daemon_urls("not a url").is_err());
    }
}
