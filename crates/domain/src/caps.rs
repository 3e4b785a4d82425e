//! Per-user caps on what a user may make besides buckets: workspaces, teams (owned) and
//! domains. Past its cap a create is refused with 429 `owner_limit`; admins are exempt.
//!
//! Guarantee: the count and the insert that follows happen under one lock (the guard
//! [`reserve`] returns), so concurrent creates of one user cannot pass the cap together.

use tokio::sync::MutexGuard;

use crate::access::Caller;
pub use crate::config::Caps;
use crate::context::Core;
use crate::error::{Error, Result};

/// What is capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Workspaces the user owns.
    Workspaces,
    /// Teams the user owns (made).
    Teams,
    /// Domains the user registered.
    Domains,
}

impl Kind {
    fn what(self) -> &'static str {
        match self {
            Kind::Workspaces => "workspaces",
            Kind::Teams => "teams",
            Kind::Domains => "domains",
        }
    }

    fn setting(self) -> &'static str {
        match self {
            Kind::Workspaces => "KALPANA_MAX_WORKSPACES_PER_USER",
            Kind::Teams => "KALPANA_MAX_TEAMS_PER_USER",
            Kind::Domains => "KALPANA_MAX_DOMAINS_PER_USER",
        }
    }
}

impl Caps {
    fn of(&self, kind: Kind) -> usize {
        match kind {
            Kind::Workspaces => self.workspaces,
            Kind::Teams => self.teams,
            Kind::Domains => self.domains,
        }
    }
}

/// Checks that `caller` may make one more of `kind`; hold the guard until the record is
/// written. Admins pass without counting.
pub async fn reserve<'a>(
    state: &'a Core,
    caller: &Caller,
    kind: Kind,
) -> Result<Option<MutexGuard<'a, ()>>> {
    if caller.user.admin {
        return Ok(None);
    }
    let guard = state.locks.caps.lock().await;
    let me = caller.user.id.as_str();
    let held = match kind {
        Kind::Workspaces => state
            .store
            .list_workspaces()
            .await?
            .iter()
            .filter(|w| w.user_id == me)
            .count(),
        Kind::Teams => state
            .store
            .teams_of(me)
            .await?
            .iter()
            .filter(|t| t.owner_id == me)
            .count(),
        Kind::Domains => state
            .store
            .list_domains()
            .await?
            .iter()
            .filter(|d| d.user_id == me)
            .count(),
    };
    let max = state.config.caps.of(kind);
    if held >= max {
        let then = match kind {
            // Teams are not deleted: only the daemon's administrator can make room.
            Kind::Teams => "ask the daemon's administrator to raise it",
            Kind::Workspaces | Kind::Domains => "delete one first",
        };
        return Err(Error::LimitReached(format!(
            "you hold {held} {}, the most one user may ({}={max}); {then}",
            kind.what(),
            kind.setting()
        )));
    }
    Ok(Some(guard))
}
