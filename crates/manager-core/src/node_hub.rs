//! The daemon's side of the node agents: who reported when, their latest samples, and a queue
//! of jobs per node that its agent takes by long polling. A job's caller waits for the outcome;
//! an agent that stops reporting fails its jobs, with the node named, instead of leaving them
//! waiting.
//!
//! Guarantees: a job is handed to one agent once, and only an agent of the job's node can
//! report on it, ask for its upload URLs or finish it (the callers check the node's token
//! first). Caveat: all of this is in memory: a daemon restart fails the jobs in flight (their
//! callers are gone with it) and waits for each agent's next report.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};

use crate::error::{Error, Result};
use crate::node_protocol::{JobBucket, JobDone, NodeJob, NodeReport, Work};
use crate::runtime::Progress;
use crate::stats::{AgentPresence, ContainerStats, HostInfo};

/// An agent not heard from for this long counts as gone: its jobs fail, none is handed to it.
pub const AGENT_GONE_AFTER: Duration = Duration::from_secs(20);

/// A job its agent took and then said nothing of (no progress, no part, no end; agents send a
/// progress report at least every 10 s while a job runs) for this long has been dropped by that
/// agent (it restarted, say): it fails, rather than holding its caller, and the bucket's lock,
/// forever.
pub const JOB_SILENCE_LIMIT: Duration = Duration::from_secs(60);

/// Seconds between an agent's reports.
pub const REPORT_EVERY: Duration = Duration::from_secs(2);

/// Presigns the upload of one part of an archive.
pub type PartSigner = Arc<dyn Fn(i32) -> Result<String> + Send + Sync>;

#[derive(Default)]
struct Node {
    queue: VecDeque<NodeJob>,
    wake: Arc<Notify>,
    seen: Option<Instant>,
    host: Option<HostInfo>,
    engine_ok: bool,
    engine_error: Option<String>,
}

struct Pending {
    node: String,
    taken: bool,
    heard: Instant,
    reply: Option<oneshot::Sender<JobDone>>,
    progress: Option<Progress>,
    parts: Option<PartSigner>,
}

#[derive(Default)]
struct Inner {
    nodes: HashMap<String, Node>,
    jobs: HashMap<String, Pending>,
    samples: HashMap<String, (Instant, ContainerStats)>,
    names: HashMap<String, String>,
}

/// The node agents as the daemon knows them.
pub struct NodeHub {
    inner: Mutex<Inner>,
    silence_limit: Duration,
}

impl Default for NodeHub {
    fn default() -> Self {
        Self::with_silence_limit(JOB_SILENCE_LIMIT)
    }
}

impl std::fmt::Debug for NodeHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeHub")
    }
}

/// What a job may use besides its work.
#[derive(Default, Clone)]
pub struct JobExtras {
    /// Told of the archive bytes the agent moved.
    pub progress: Option<Progress>,
    /// Presigns each part's upload.
    pub parts: Option<PartSigner>,
}

impl NodeHub {
    /// A hub that fails a taken job after `limit` without a word of it (see
    /// [`JOB_SILENCE_LIMIT`]).
    pub fn with_silence_limit(limit: Duration) -> Self {
        NodeHub {
            inner: Mutex::default(),
            silence_limit: limit,
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a report of `node` (already authenticated as that node's agent).
    pub fn report(&self, node: &str, report: NodeReport) {
        let now = Instant::now();
        let mut inner = self.inner();
        // Old samples go, so what a report can add stays bounded by what is sampled lately.
        inner
            .samples
            .retain(|_, (at, _)| at.elapsed() < AGENT_GONE_AFTER);
        for s in report.containers {
            inner.samples.insert(s.bucket_id, (now, s.stats));
        }
        let n = inner.nodes.entry(node.to_string()).or_default();
        let first = n.seen.is_none();
        n.seen = Some(now);
        n.engine_ok = report.engine_ok;
        n.engine_error = report.engine_error;
        if report.host.is_some() {
            n.host = report.host;
        }
        if first {
            tracing::info!(node, "node agent reported");
        }
    }

    /// Learns the host names of the cluster's nodes (by node id).
    pub fn set_names(&self, names: HashMap<String, String>) {
        self.inner().names = names;
    }

    /// The host name of node `node`, once learnt.
    pub fn name(&self, node: &str) -> Option<String> {
        self.inner().names.get(node).cloned()
    }

    /// Whether `node`'s agent reported lately.
    pub fn connected(&self, node: &str) -> bool {
        self.inner()
            .nodes
            .get(node)
            .and_then(|n| n.seen)
            .is_some_and(|t| t.elapsed() < AGENT_GONE_AFTER)
    }

    /// The nodes whose agents reported lately.
    pub fn connected_nodes(&self) -> Vec<String> {
        self.inner()
            .nodes
            .iter()
            .filter(|(_, n)| n.seen.is_some_and(|t| t.elapsed() < AGENT_GONE_AFTER))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// What `node`'s agent last said of its host, and how long ago.
    pub fn presence(&self, node: &str) -> Option<(Option<HostInfo>, AgentPresence)> {
        let inner = self.inner();
        let n = inner.nodes.get(node)?;
        let seen = n.seen?;
        Some((
            n.host.clone(),
            AgentPresence {
                seen_secs_ago: seen.elapsed().as_secs(),
                engine_ok: n.engine_ok,
                engine_error: n.engine_error.clone(),
            },
        ))
    }

    /// The latest sample of bucket `id`'s server, when one came lately.
    pub fn sample(&self, id: &str) -> Option<ContainerStats> {
        let mut inner = self.inner();
        match inner.samples.get(id) {
            Some((at, s)) if at.elapsed() < AGENT_GONE_AFTER => Some(s.clone()),
            Some(_) => {
                inner.samples.remove(id);
                None
            }
            None => None,
        }
    }

    /// Runs `work` on bucket `bucket` at `node`'s agent and waits for how it ended; fails when
    /// the agent is not reporting, or stops while the job runs.
    pub async fn run(
        &self,
        node: &str,
        bucket: JobBucket,
        work: Work,
        extras: JobExtras,
    ) -> Result<JobDone> {
        if !self.connected(node) {
            return Err(Error::NodeUnavailable(format!(
                "the agent of node {node} is not reporting"
            )));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (tx, mut rx) = oneshot::channel();
        {
            let mut inner = self.inner();
            inner.jobs.insert(
                id.clone(),
                Pending {
                    node: node.to_string(),
                    taken: false,
                    heard: Instant::now(),
                    reply: Some(tx),
                    progress: extras.progress,
                    parts: extras.parts,
                },
            );
            let n = inner.nodes.entry(node.to_string()).or_default();
            n.queue.push_back(NodeJob {
                id: id.clone(),
                bucket,
                work,
            });
            n.wake.notify_one();
        }
        let _gone = Forget(self, id.clone());
        loop {
            tokio::select! {
                done = &mut rx => {
                    return done.map_err(|_| Error::NodeUnavailable(format!("node {node}'s job ended without an answer")));
                }
                () = tokio::time::sleep(Duration::from_secs(2)) => {
                    if !self.connected(node) {
                        return Err(Error::NodeUnavailable(format!(
                            "the agent of node {node} stopped reporting during the job"
                        )));
                    }
                    let silent = self
                        .inner()
                        .jobs
                        .get(&id)
                        .is_some_and(|p| p.taken && p.heard.elapsed() > self.silence_limit);
                    if silent {
                        return Err(Error::NodeUnavailable(format!(
                            "the agent of node {node} said nothing of the job for {} s (it may have restarted): the job is given up",
                            self.silence_limit.as_secs()
                        )));
                    }
                }
            }
        }
    }

    /// The next job for `node`, waiting up to `wait` for one.
    pub async fn next_job(&self, node: &str, wait: Duration) -> Option<NodeJob> {
        let deadline = Instant::now() + wait;
        loop {
            let wake = {
                let mut inner = self.inner();
                let n = inner.nodes.entry(node.to_string()).or_default();
                if let Some(job) = n.queue.pop_front() {
                    if let Some(p) = inner.jobs.get_mut(&job.id) {
                        p.taken = true;
                        p.heard = Instant::now();
                    }
                    return Some(job);
                }
                n.wake.clone()
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, wake.notified()).await.is_err() {
                return None;
            }
        }
    }

    /// Checks that `node`'s agent holds job `job`, and notes that it was heard of.
    fn taken_by(&self, node: &str, job: &str) -> Result<()> {
        match self.inner().jobs.get_mut(job) {
            Some(p) if p.node == node && p.taken => {
                p.heard = Instant::now();
                Ok(())
            }
            _ => Err(Error::UnknownJob(job.to_string())),
        }
    }

    /// Presigns part `part` of job `job`'s upload, for `node`'s agent only.
    pub fn part_url(&self, node: &str, job: &str, part: i32) -> Result<String> {
        self.taken_by(node, job)?;
        let signer = self
            .inner()
            .jobs
            .get(job)
            .and_then(|p| p.parts.clone())
            .ok_or_else(|| Error::UnknownJob(job.to_string()))?;
        signer(part)
    }

    /// Takes `bytes` more of job `job`'s progress.
    pub fn progress(&self, node: &str, job: &str, bytes: u64) -> Result<()> {
        self.taken_by(node, job)?;
        let progress = self.inner().jobs.get(job).and_then(|p| p.progress.clone());
        if let Some(p) = progress {
            p(bytes);
        }
        Ok(())
    }

    /// Ends job `job` as `node`'s agent says.
    pub fn finish(&self, node: &str, job: &str, done: JobDone) -> Result<()> {
        self.taken_by(node, job)?;
        let reply = self.inner().jobs.get_mut(job).and_then(|p| p.reply.take());
        if let Some(tx) = reply {
            let _ = tx.send(done);
        }
        Ok(())
    }
}

/// Drops a job's bookkeeping (and the job itself, if not yet taken) when its caller stops
/// waiting, however that happens.
struct Forget<'a>(&'a NodeHub, String);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let mut inner = self.0.inner();
        if let Some(p) = inner.jobs.remove(&self.1) {
            if let Some(n) = inner.nodes.get_mut(&p.node) {
                n.queue.retain(|j| j.id != self.1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_protocol::{JobBucket, NodeReport};

    fn report(node: &str) -> NodeReport {
        NodeReport {
            node_id: node.into(),
            host: None,
            engine_ok: true,
            engine_error: None,
            containers: Vec::new(),
        }
    }

    fn bucket() -> JobBucket {
        JobBucket {
            id: "b".into(),
            name: "b".into(),
            owner: "o".into(),
            instance: "i".into(),
            engine: crate::engine::EngineKind::Seaweedfs,
            image: "img".into(),
        }
    }

    #[tokio::test]
    async fn a_job_goes_to_its_node_only_and_a_silent_one_is_given_up() {
        let hub = Arc::new(NodeHub::with_silence_limit(Duration::from_secs(1)));
        hub.report("n1", report("n1"));
        hub.report("n2", report("n2"));
        let h = hub.clone();
        let job = tokio::spawn(async move {
            h.run("n1", bucket(), Work::Staged, JobExtras::default())
                .await
        });
        assert!(hub
            .next_job("n2", Duration::from_millis(200))
            .await
            .is_none());
        let taken = hub
            .next_job("n1", Duration::from_secs(2))
            .await
            .expect("n1 takes it");
        assert!(hub.finish("n2", &taken.id, JobDone::default()).is_err());
        // Taken, then nothing: given up after the limit, not waited for forever.
        let given_up = tokio::time::timeout(Duration::from_secs(10), job)
            .await
            .expect("not forever")
            .expect("joined");
        assert!(
            matches!(&given_up, Err(Error::NodeUnavailable(m)) if m.contains("said nothing")),
            "{given_up:?}"
        );
        assert!(
            hub.finish("n1", &taken.id, JobDone::default()).is_err(),
            "forgotten"
        );
    }

    #[tokio::test]
    async fn a_job_whose_agent_keeps_talking_ends_with_its_answer() {
        let hub = Arc::new(NodeHub::with_silence_limit(Duration::from_secs(1)));
        hub.report("n1", report("n1"));
        let h = hub.clone();
        let job = tokio::spawn(async move {
            h.run("n1", bucket(), Work::Staged, JobExtras::default())
                .await
        });
        let taken = hub
            .next_job("n1", Duration::from_secs(2))
            .await
            .expect("taken");
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(600)).await;
            hub.progress("n1", &taken.id, 0).expect("progress");
            hub.report("n1", report("n1"));
        }
        let done = JobDone {
            staged: Some(true),
            ..Default::default()
        };
        hub.finish("n1", &taken.id, done).expect("finish");
        let answer = job.await.expect("joined").expect("answered");
        assert_eq!(answer.staged, Some(true));
    }
}
