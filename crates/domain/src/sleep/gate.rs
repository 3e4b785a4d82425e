//! One bucket's gate: whether its server is there, who is using it, and how many requests wait
//! for it to wake. In memory only; the record says asleep or awake across restarts.
//!
//! The one ordering rule: a user counts itself in ([`Gate::users`]) *before* it looks at the
//! state, and a bucket going to sleep sets the state *before* it counts the users. Both are
//! `SeqCst`, so either the user sees "going to sleep" and waits, or the sleeper sees the user
//! and waits for it; a request never reaches a server that is being stopped.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

use tokio::sync::watch;

/// Where a bucket's server is, as far as sleeping goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum SleepState {
    /// Its server runs (or is away for another reason: stopped, restarting, replaced).
    Awake,
    /// Its server is being stopped to sleep; new requests wait.
    GoingToSleep,
    /// Its server is stopped; the next request wakes it.
    Asleep,
    /// Its server is starting for the requests that wait.
    Waking,
}

impl SleepState {
    /// The word the view shows: `awake`, `asleep` or `waking` (going to sleep shows as awake
    /// until its container has stopped).
    pub fn word(self) -> &'static str {
        match self {
            SleepState::Awake | SleepState::GoingToSleep => "awake",
            SleepState::Asleep => "asleep",
            SleepState::Waking => "waking",
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One bucket's gate (see the module doc).
pub struct Gate {
    state: watch::Sender<SleepState>,
    /// When the state last changed between awake and asleep (RFC 3339).
    since: Mutex<String>,
    /// Proxied connections with a connection to the server open, and API calls in flight.
    users: AtomicUsize,
    /// Last client byte or request, in Unix milliseconds.
    last_activity: AtomicU64,
    /// Last client request in Unix milliseconds (0: none seen since the daemon started).
    last_request: AtomicU64,
    /// Requests waiting for a wake.
    held: AtomicUsize,
    /// The bucket's own `sleepAfterSecs` as last seen in its record (`u64::MAX`: none, the
    /// daemon's default applies).
    after_secs: AtomicU64,
    /// One sleep or wake at a time.
    pub(super) turn: tokio::sync::Mutex<()>,
}

impl Gate {
    /// A gate in `state` since `since`.
    pub fn new(state: SleepState, since: String) -> Self {
        Gate {
            state: watch::Sender::new(state),
            since: Mutex::new(since),
            users: AtomicUsize::new(0),
            last_activity: AtomicU64::new(now_ms()),
            last_request: AtomicU64::new(0),
            held: AtomicUsize::new(0),
            after_secs: AtomicU64::new(u64::MAX),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Notes the bucket's own setting, as its record says now.
    pub fn set_after(&self, secs: Option<u64>) {
        self.after_secs.store(secs.unwrap_or(u64::MAX), SeqCst);
    }

    /// The bucket's own setting, if it has one.
    pub fn after(&self) -> Option<u64> {
        Some(self.after_secs.load(SeqCst)).filter(|s| *s != u64::MAX)
    }

    /// The state now.
    pub fn state(&self) -> SleepState {
        *self.state.borrow()
    }

    /// Notified on every change of state.
    pub fn watch(&self) -> watch::Receiver<SleepState> {
        self.state.subscribe()
    }

    pub(super) fn set(&self, state: SleepState) {
        if matches!(state, SleepState::Awake | SleepState::Asleep) && self.state() != state {
            *self.since.lock().unwrap_or_else(|p| p.into_inner()) = crate::model::now();
        }
        self.state.send_replace(state);
    }

    /// When it last fell asleep or woke.
    pub fn since(&self) -> String {
        self.since.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A client did something (a byte moved, a request came).
    pub fn touch(&self) {
        self.last_activity.store(now_ms(), SeqCst);
    }

    /// A client request began.
    pub fn request(&self) {
        let now = now_ms();
        self.last_activity.store(now, SeqCst);
        self.last_request.store(now, SeqCst);
    }

    /// Milliseconds since the last client activity.
    pub fn idle_ms(&self) -> u64 {
        now_ms().saturating_sub(self.last_activity.load(SeqCst))
    }

    /// The last client request seen since the daemon started, in Unix milliseconds.
    pub fn last_request_ms(&self) -> Option<u64> {
        Some(self.last_request.load(SeqCst)).filter(|t| *t > 0)
    }

    /// Users of the server now.
    pub fn users(&self) -> usize {
        self.users.load(SeqCst)
    }

    /// Counts a user in if the server is awake; otherwise counts nothing and says the state.
    pub(super) fn try_use(&self) -> std::result::Result<(), SleepState> {
        self.users.fetch_add(1, SeqCst);
        match self.state() {
            SleepState::Awake => Ok(()),
            other => {
                self.users.fetch_sub(1, SeqCst);
                Err(other)
            }
        }
    }

    pub(super) fn release(&self) {
        self.users.fetch_sub(1, SeqCst);
        self.touch();
    }

    /// Requests waiting for a wake now.
    pub fn held(&self) -> usize {
        self.held.load(SeqCst)
    }

    /// Counts a waiting request in, unless `limit` already wait.
    pub(super) fn hold(&self, limit: usize) -> bool {
        self.held
            .fetch_update(SeqCst, SeqCst, |n| (n < limit).then_some(n + 1))
            .is_ok()
    }

    pub(super) fn unhold(&self) {
        self.held.fetch_sub(1, SeqCst);
    }
}

/// Every managed bucket's gate, by id.
#[derive(Default)]
pub struct Gates(std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Gate>>>);

impl Gates {
    /// The gate of `b`, made from its record when there is none yet.
    pub fn of(&self, b: &crate::model::BucketRecord) -> std::sync::Arc<Gate> {
        let gate = self.make(b);
        gate.set_after(b.sleep_after_secs);
        gate
    }

    fn make(&self, b: &crate::model::BucketRecord) -> std::sync::Arc<Gate> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(b.id.clone())
            .or_insert_with(|| {
                let (state, since) = match &b.sleep {
                    Some(s) if s.asleep => (SleepState::Asleep, s.since.clone()),
                    Some(s) => (SleepState::Awake, s.since.clone()),
                    None => (SleepState::Awake, None),
                };
                std::sync::Arc::new(Gate::new(state, since.unwrap_or_else(crate::model::now)))
            })
            .clone()
    }

    /// The gate of bucket `id`, if it has one.
    pub fn get(&self, id: &str) -> Option<std::sync::Arc<Gate>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Forgets a deleted bucket's gate.
    pub fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Every gate.
    pub fn all(&self) -> Vec<(String, std::sync::Arc<Gate>)> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Whether bucket `id`'s server is asleep or on its way (the daemon's own loops skip it).
    pub fn sleeping(&self, id: &str) -> bool {
        self.get(id).is_some_and(|g| g.state() != SleepState::Awake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_counted_only_while_awake() {
        let g = Gate::new(SleepState::Awake, crate::model::now());
        assert!(g.try_use().is_ok());
        assert_eq!(g.users(), 1);
        g.set(SleepState::GoingToSleep);
        assert_eq!(g.try_use(), Err(SleepState::GoingToSleep));
        assert_eq!(g.users(), 1, "the refused user is not left counted");
        g.release();
        assert_eq!(g.users(), 0);
    }

    #[test]
    fn the_queue_is_bounded() {
        let g = Gate::new(SleepState::Asleep, crate::model::now());
        assert!(g.hold(2));
        assert!(g.hold(2));
        assert!(!g.hold(2), "a third waiter is refused");
        g.unhold();
        assert!(g.hold(2));
        assert_eq!(g.held(), 2);
    }

    #[test]
    fn going_to_sleep_reads_as_awake_until_stopped() {
        assert_eq!(SleepState::GoingToSleep.word(), "awake");
        assert_eq!(SleepState::Waking.word(), "waking");
    }
}
