//! Bearer-token authentication and the access rule: an admin may do anything; the owner of a
//! personal bucket may do anything with it; a team bucket is read by the team's viewers,
//! written by its members and managed by its admins and owner. A bucket the caller cannot see
//! is 404; one they see but may not act on that way is 403.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::model::{now, BucketRecord, Team, TeamRole, User};
use crate::secrets::hash_token;

/// The authenticated user of a request, with the teams they belong to.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user.
    pub user: User,
    /// Ids of the teams the user is a member of.
    pub teams: Vec<String>,
    /// The user's role in each of those teams.
    pub roles: HashMap<String, TeamRole>,
}

/// What a caller may do with a bucket, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// See it and read its objects.
    Read,
    /// Also write and delete objects.
    Write,
    /// Also change, start, stop, rotate, link and delete it.
    Manage,
}

impl Access {
    fn verb(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write to",
            Access::Manage => "manage",
        }
    }
}

impl Caller {
    /// What the caller may do with the bucket: everything for an admin and for the owner of a
    /// personal bucket; for a team bucket, what their role in that team allows (its creator
    /// included, so removing a member from the team takes the bucket from them too).
    pub fn access(&self, b: &BucketRecord) -> Option<Access> {
        if self.user.admin {
            return Some(Access::Manage);
        }
        match &b.team_id {
            None => (b.user_id == self.user.id).then_some(Access::Manage),
            Some(team) => self.roles.get(team).map(|r| match r {
                TeamRole::Owner | TeamRole::Admin => Access::Manage,
                TeamRole::Member => Access::Write,
                TeamRole::Viewer => Access::Read,
            }),
        }
    }

    /// Whether the caller may see the bucket.
    pub fn can_see(&self, b: &BucketRecord) -> bool {
        self.access(b).is_some()
    }

    /// 403 unless the caller may do `needed` with a bucket they can see.
    pub fn require(&self, b: &BucketRecord, needed: Access) -> Result<()> {
        match self.access(b) {
            Some(a) if a >= needed => Ok(()),
            Some(_) => Err(Error::Forbidden(format!(
                "your role in this bucket's team does not let you {} it",
                needed.verb()
            ))),
            None => Err(Error::NotFound("bucket")),
        }
    }

    /// The caller's role in `team`, if a member (admins count as owners).
    pub fn role_in(&self, team: &str) -> Option<TeamRole> {
        if self.user.admin {
            return Some(TeamRole::Owner);
        }
        self.roles.get(team).copied()
    }

    /// Whether the caller may see the team.
    pub fn can_see_team(&self, t: &Team) -> bool {
        self.user.admin || t.members.contains(&self.user.id)
    }

    /// Fails with 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<()> {
        if self.user.admin {
            Ok(())
        } else {
            Err(Error::Forbidden("only an admin may do this".into()))
        }
    }
}

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

/// Makes sure the bootstrap admin exists and holds `token` (rotating it when it changed).
pub async fn bootstrap_admin(state: &AppState, token: &str) -> Result<()> {
    let hash = hash_token(token);
    let existing = state.store.get_user("admin").await?;
    if existing
        .as_ref()
        .is_some_and(|u| u.token_hash == hash && u.admin)
    {
        return Ok(());
    }
    let user = User {
        id: "admin".into(),
        name: "admin".into(),
        admin: true,
        token_hash: hash,
        created_at: existing.map(|u| u.created_at).unwrap_or_else(now),
    };
    state.store.put_user(&user).await?;
    state.callers.invalidate();
    tracing::info!("bootstrap admin ready");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
