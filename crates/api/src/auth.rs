//! Bearer-token authentication and the visibility rule: a caller sees a bucket they own, one of
//! a team they belong to, or any bucket if they are an admin. Anything else is 404.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::model::{now, BucketRecord, Team, User};
use crate::secrets::hash_token;

/// The authenticated user of a request, with the teams they belong to.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user.
    pub user: User,
    /// Ids of the teams the user is a member of.
    pub teams: Vec<String>,
}

impl Caller {
    /// Whether the caller may see (and act on) the bucket.
    pub fn can_see(&self, b: &BucketRecord) -> bool {
        self.user.admin
            || b.user_id == self.user.id
            || b.team_id.as_ref().is_some_and(|t| self.teams.contains(t))
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
        let user = state
            .store
            .user_by_token_hash(&hash_token(token))
            .await?
            .ok_or(Error::Unauthorized)?;
        let teams = state
            .store
            .teams_of(&user.id)
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect();
        Ok(Caller { user, teams })
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
    tracing::info!("bootstrap admin ready");
    Ok(())
}
