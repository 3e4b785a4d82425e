//! Callers recently authenticated, by token hash.

use std::collections::HashMap;

use kalpana_domain::access::Caller;

/// Callers by token hash, so that a request does not read the user and their teams from the
/// store each time. Any change to users or teams bumps the generation and with it forgets every
/// entry; entries also expire after [`CALLER_TTL`]. Sound because one daemon at a time writes
/// a store (the store lease).
#[derive(Default)]
pub struct CallerCache {
    generation: std::sync::atomic::AtomicU64,
    entries: std::sync::Mutex<HashMap<String, (u64, std::time::Instant, Caller)>>,
}

/// How long a cached caller is used without reading the store again.
const CALLER_TTL: std::time::Duration = std::time::Duration::from_secs(30);
/// Most callers kept; past it the cache starts over.
const CALLER_MAX: usize = 10_000;

impl CallerCache {
    /// The generation now: read it before reading a caller from the store.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Forgets every cached caller: a user or team changed.
    pub fn invalidate(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn get(&self, token_hash: &str) -> Option<Caller> {
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(token_hash) {
            Some((g, at, caller)) if *g == generation && at.elapsed() < CALLER_TTL => {
                Some(caller.clone())
            }
            _ => None,
        }
    }

    /// Keeps `caller`, read from the store while the cache was at `generation`.
    pub(crate) fn put(&self, token_hash: String, generation: u64, caller: Caller) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CALLER_MAX {
            entries.clear();
        }
        entries.insert(token_hash, (generation, std::time::Instant::now(), caller));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalpana_domain::model::{now, User};
    use std::collections::HashMap;

    fn caller(id: &str) -> Caller {
        Caller {
            user: User {
                id: id.into(),
                name: id.into(),
                admin: false,
                token_hash: "h".into(),
                created_at: now(),
            },
            teams: Vec::new(),
            roles: HashMap::new(),
        }
    }

    #[test]
    fn cached_callers_are_forgotten_when_users_or_teams_change() {
        let cache = CallerCache::default();
        cache.put("h1".into(), 0, caller("u1"));
        assert_eq!(cache.get("h1").map(|c| c.user.id), Some("u1".into()));
        cache.invalidate();
        assert!(cache.get("h1").is_none(), "a change forgets every caller");
        // Read from the store before a change landed: not taken for current.
        cache.put("h2".into(), 0, caller("u2"));
        assert!(cache.get("h2").is_none());
        cache.put("h2".into(), 1, caller("u2"));
        assert!(cache.get("h2").is_some());
    }
}
