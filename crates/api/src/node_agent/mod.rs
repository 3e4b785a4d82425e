//! `kalpana-buckets node`: the agent on every bucket node of a Swarm. It listens on nothing:
//! it dials out to the daemon (HTTPS in production) with its node's own token, reports its host
//! and its bucket containers' samples every couple of seconds (its heartbeat), and runs the
//! volume jobs the daemon hands it on its own Docker engine, moving archive bytes straight
//! between its node and the archive's bucket.
//!
//! What it trusts: the daemon at the configured URL (and its TLS certificate). What it holds:
//! the node's Docker socket (root on the node) and its own token, nothing of any bucket's
//! credentials. A bucket container on the node cannot reach it (it has no port), and sees no
//! token (the agent joins no bucket or overlay network; its token is a file only it mounts).

mod fence;
mod jobs;
mod report;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use kalpana_manager_core::node_protocol::NodeJob;
use kalpana_manager_core::{DockerClient, DockerRuntime};

/// How the agent is set up.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The daemon's base URL (`https://…`).
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

/// Most jobs run at once.
const CONCURRENT_JOBS: usize = 4;

/// The agent's connection to its daemon.
#[derive(Clone)]
pub(crate) struct Link {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Link {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.trim_end_matches('/'))
    }

    /// POSTs `body` as JSON to the daemon's `path`; the answer as `T`.
    pub(crate) async fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
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
    let mut http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60));
    if let Some(ca) = &config.ca_file {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let link = Link {
        http: http.build()?,
        base: config.daemon.clone(),
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
    let resp = link
        .http
        .get(link.url("/api/node/jobs?waitSecs=20"))
        .bearer_auth(&link.token)
        .timeout(Duration::from_secs(40))
        .send()
        .await?;
    match resp.status() {
        reqwest::StatusCode::NO_CONTENT => Ok(None),
        s if s.is_success() => Ok(Some(resp.json().await?)),
        s => bail!("{s}: {}", resp.text().await.unwrap_or_default()),
    }
}
