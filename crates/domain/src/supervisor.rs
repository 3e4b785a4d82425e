//! Background work under one owner: the loops the daemon runs (reconcile, recounts, samples,
//! snapshot schedules, inventory syncs, key refresh) and the detached tasks that write the store
//! (provisioning, snapshots, restores). A clean stop cancels the loops and waits for the tasks,
//! so nothing writes the store once the daemon has given up its lease.
//!
//! Guarantees: after [`Supervisor::shutdown`] returns, no task it started runs any more (a
//! task still running after the grace period is aborted: every such task writes its intent
//! before acting, so the next daemon finishes or rolls back what it was doing). Loops see
//! [`Supervisor::cancelled`] and end at their next wait.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Resolves when a task of [`Supervisor::spawn_task`] has ended (or was never run or dropped).
#[derive(Debug)]
pub struct Finished(tokio::sync::oneshot::Receiver<()>);

impl Future for Finished {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// Starts, tracks and stops the daemon's background work.
#[derive(Debug, Default)]
pub struct Supervisor {
    cancel: CancellationToken,
    tasks: std::sync::Mutex<JoinSet<()>>,
}

impl Supervisor {
    /// Runs loop `work` under this supervisor: it is dropped at its next wait once the daemon
    /// stops.
    pub fn spawn_loop(&self, name: &'static str, work: impl Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        self.track(name, async move {
            tokio::select! {
                () = work => {}
                () = cancel.cancelled() => {
                    tracing::debug!(task = name, "loop ended by the shutdown");
                }
            }
        });
    }

    /// Runs one-off task `work` (a provisioning, a snapshot, a restore) under this supervisor:
    /// a stop waits for it (up to its grace period) rather than dropping it half-way. The answer
    /// resolves when the task ends (or is dropped by the stop), for callers that may wait.
    pub fn spawn_task(
        &self,
        name: &'static str,
        work: impl Future<Output = ()> + Send + 'static,
    ) -> Finished {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.track(name, async move {
            work.await;
            let _ = tx.send(());
        });
        Finished(rx)
    }

    fn track(&self, name: &'static str, work: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        // Finished tasks are collected as new ones come, so the set stays small.
        while tasks.try_join_next().is_some() {}
        if self.cancel.is_cancelled() {
            tracing::warn!(task = name, "not started: the daemon is stopping");
            return;
        }
        tasks.spawn(work);
    }

    /// Fires when the daemon stops: loops end at their next wait.
    pub fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// Whether the daemon is stopping.
    pub fn is_stopping(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Ends every loop and task: cancels them all and waits up to `grace` for them to end,
    /// then aborts what is left. Returns how many were aborted.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.cancel.cancel();
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let ended =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if ended.is_ok() {
            return 0;
        }
        let left = tasks.len();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_shutdown_ends_loops_and_aborts_what_does_not_end() {
        let s = Supervisor::default();
        let looped = Arc::new(AtomicBool::new(false));
        let l = looped.clone();
        s.spawn_loop("loop", async move {
            loop {
                l.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(looped.load(Ordering::SeqCst));
        assert_eq!(
            s.shutdown(Duration::from_secs(1)).await,
            0,
            "the loop ended at the cancel"
        );
        looped.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !looped.load(Ordering::SeqCst),
            "nothing runs after the shutdown"
        );
        s.spawn_task("late", async {});
        assert!(s.is_stopping());
    }

    #[tokio::test]
    async fn a_shutdown_waits_for_tasks_and_aborts_those_past_the_grace() {
        let s = Supervisor::default();
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        s.spawn_task("short", async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            d.store(true, Ordering::SeqCst);
        });
        s.spawn_task("endless", std::future::pending());
        assert_eq!(s.shutdown(Duration::from_millis(200)).await, 1);
        assert!(done.load(Ordering::SeqCst), "the short task was waited for");
    }
}
