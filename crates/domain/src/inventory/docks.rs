//! Docks themselves: who sees and manages one, adding (token checked and encrypted), listing
//! and deleting them, and the events they publish.

use crate::access::Caller;
use crate::context::Core;
use crate::error::{Error, Result};
use crate::model::{new_id, now};

use super::model::{CloudProvider, Dock};
use super::provider_api::{base_url, http, provider_error};
use super::providers::{adapter, ProviderClient};
use super::sync::{publish, sync};

/// Longest API token accepted.
const MAX_TOKEN: usize = 1024;

/// Whether the caller sees the dock.
pub fn can_see(caller: &Caller, d: &Dock) -> bool {
    caller.user.admin
        || d.user_id == caller.user.id
        || d.team_id.as_ref().is_some_and(|t| caller.teams.contains(t))
}

/// A dock the caller sees; 404 otherwise.
pub async fn visible(state: &Core, caller: &Caller, id: &str) -> Result<Dock> {
    match state.store.get_dock(id).await? {
        Some(d) if can_see(caller, &d) => Ok(d),
        _ => Err(Error::NotFound("dock")),
    }
}

/// A dock the caller may sync or delete: its owner, an admin, or a team member who is not a
/// viewer (403); one the caller does not see is a 404.
async fn manageable(state: &Core, caller: &Caller, id: &str) -> Result<Dock> {
    let d = visible(state, caller, id).await?;
    if caller.user.admin || d.user_id == caller.user.id {
        return Ok(d);
    }
    crate::requests::may_create_in(caller, d.team_id.as_deref())
        .map_err(|_| Error::Forbidden("a viewer cannot change the team's docks".into()))?;
    Ok(d)
}

/// A dock to make.
#[derive(Debug)]
pub struct NewDock {
    pub provider: CloudProvider,
    /// Free text.
    pub name: String,
    /// The provider API token.
    pub api_token: String,
    /// Team whose members see it.
    pub team_id: Option<String>,
}

/// Checks the token with one cheap read, stores the dock (token encrypted) and starts its
/// first sync in the background. A refused token is a 422 naming the provider's answer and
/// stores nothing.
pub async fn create(state: &Core, caller: &Caller, req: NewDock) -> Result<Dock> {
    if req.name.trim().is_empty() || req.name.len() > 64 || req.name.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "name must be 1-64 characters without control characters".into(),
        ));
    }
    let token = req.api_token.trim().to_string();
    if token.is_empty() || token.len() > MAX_TOKEN || token.chars().any(|c| c.is_control()) {
        return Err(Error::Invalid(format!(
            "apiToken must be 1-{MAX_TOKEN} characters without control characters"
        )));
    }
    crate::requests::may_create_in(caller, req.team_id.as_deref())?;
    let a = adapter(req.provider);
    let mut client = ProviderClient::new(http()?, a, &base_url(state, req.provider), token.clone());
    let check = client.url(a.check_path());
    client.get(&check).await.map_err(provider_error)?;
    let dock = Dock {
        id: new_id(),
        name: req.name,
        provider: req.provider,
        user_id: caller.user.id.clone(),
        team_id: req.team_id,
        token_enc: state.master_key.encrypt(&token)?,
        created_at: now(),
        last_synced_at: None,
        last_sync_error: None,
        last_good_sync_at: None,
        last_sync: None,
    };
    state.store.put_dock(&dock).await?;
    tracing::info!(dock = %dock.id, provider = dock.provider.as_str(), owner = %dock.user_id,
        team = ?dock.team_id, "dock added");
    publish(state, &dock, "ADDED", None);
    let (state2, id) = (state.clone(), dock.id.clone());
    state.tasks.spawn_task("dock sync", async move {
        // A provider's failure is logged by the sync itself.
        match sync(&state2, &id).await {
            Err(e) if !matches!(e, Error::ProviderFailed(_)) => {
                tracing::warn!(dock = %id, error = %e, "first sync failed")
            }
            _ => {}
        }
    });
    Ok(dock)
}

/// Docks the caller sees, oldest first.
pub async fn list(state: &Core, caller: &Caller) -> Result<Vec<Dock>> {
    let mut all: Vec<Dock> = state
        .store
        .list_docks()
        .await?
        .into_iter()
        .filter(|d| can_see(caller, d))
        .collect();
    all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    Ok(all)
}

/// Deletes a dock and its synced records (waits for a sync of it to end).
pub async fn delete(state: &Core, caller: &Caller, id: &str) -> Result<()> {
    manageable(state, caller, id).await?;
    let _guard = state.locks.dock(id).await;
    let Some(dock) = state.store.get_dock(id).await? else {
        return Err(Error::NotFound("dock"));
    };
    state.store.delete_dock(id).await?;
    tracing::info!(dock = %id, "dock deleted with its inventory");
    publish(state, &dock, "DELETED", None);
    Ok(())
}

/// Syncs a dock the caller may manage; answers the dock afterwards, or the provider's failure
/// (the dock keeps its last good inventory and says why in `lastSyncError`).
pub async fn sync_for(state: &Core, caller: &Caller, id: &str) -> Result<Dock> {
    manageable(state, caller, id).await?;
    sync(state, id).await
}
