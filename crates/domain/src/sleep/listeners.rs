//! The daemon's listeners on bucket ports, by bucket id (made by [`super::proxy::open`]).

use std::collections::HashMap;

use tokio::task::JoinHandle;

/// The listener tasks of every bucket, by bucket id.
#[derive(Default)]
pub struct Proxies(std::sync::Mutex<HashMap<String, Vec<JoinHandle<()>>>>);

impl Proxies {
    /// Whether the daemon listens on bucket `id`'s ports.
    pub fn has(&self, id: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    /// Records bucket `id`'s listener tasks (a second set stops the first).
    pub fn insert(&self, id: &str, tasks: Vec<JoinHandle<()>>) {
        let old = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), tasks);
        for t in old.into_iter().flatten() {
            t.abort();
        }
    }

    /// Stops listening on bucket `id`'s ports (its connections end with their clients).
    pub fn close(&self, id: &str) {
        let tasks = self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        for t in tasks.into_iter().flatten() {
            t.abort();
        }
    }

    /// Buckets listened for.
    pub fn count(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
