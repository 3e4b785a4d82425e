//! Bearer-token authentication: the caller of a request (read from the store once, then kept a
//! short while by token hash). The access rules themselves are `kalpana_domain::access`.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
pub use kalpana_domain::access::{bootstrap_admin, Access, Caller};
use kalpana_domain::secrets::hash_token;

use crate::app::AppState;
use crate::error::{Error, Result};

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
    /// Forgets every cached caller: a user or team changed.
    pub fn invalidate(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn get(&self, token_hash: &str) -> Option<Caller> {
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
    fn put(&self, token_hash: String, generation: u64, caller: Caller) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CALLER_MAX {
            entries.clear();
        }
        entries.insert(token_hash, (generation, std::time::Instant::now(), caller));
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(Error::Unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Error::Unauthorized)?;
        let token_hash = hash_token(token);
        if let Some(caller) = state.callers.get(&token_hash) {
            return Ok(caller);
        }
        // Read before the store, so a change made meanwhile is not cached as current.
        let generation = state
            .callers
            .generation
            .load(std::sync::atomic::Ordering::SeqCst);
        let user = state
            .store
            .user_by_token_hash(&token_hash)
            .await?
            .ok_or(Error::Unauthorized)?;
        let mut teams = Vec::new();
        let mut roles = HashMap::new();
        for t in state.store.teams_of(&user.id).await? {
            if let Some(role) = t.role_of(&user.id) {
                roles.insert(t.id.clone(), role);
                teams.push(t.id);
            }
        }
        let caller = Caller { user, teams, roles };
        state.callers.put(token_hash, generation, caller.clone());
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalpana_domain::model::{now, User};

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
