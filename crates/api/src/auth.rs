//! Bearer-token authentication: the caller of a request (read from the store once, then kept a
//! short while by token hash). The access rules themselves are `kalpana_domain::access`.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
pub use kalpana_domain::access::{bootstrap_admin, Access, Caller};
use kalpana_domain::secrets::hash_token;

use crate::app::AppState;
use crate::error::{Error, Result};

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
        let generation = state.callers.generation();
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
