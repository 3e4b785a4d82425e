//! Workspaces: what buckets are linked to with `workspaceId` (a development container, an app,
//! an agent's home). Seen by their owner, their team's members and admins; everyone else gets
//! 404. A bucket may only name a workspace its creator can see.

use std::collections::HashMap;

use crate::access::Caller;
use crate::context::Core;
use crate::error::{Error, Result};
use crate::model::{new_id, now, BucketRecord, TeamRole, Workspace};
use crate::store::all_buckets;

/// Whether the caller sees the workspace.
pub fn can_see(caller: &Caller, w: &Workspace) -> bool {
    caller.user.admin
        || w.user_id == caller.user.id
        || w.team_id.as_ref().is_some_and(|t| caller.teams.contains(t))
}

/// A workspace the caller sees; 404 otherwise.
pub async fn visible(state: &Core, caller: &Caller, id: &str) -> Result<Workspace> {
    match state.store.get_workspace(id).await? {
        Some(w) if can_see(caller, &w) => Ok(w),
        _ => Err(Error::NotFound("workspace")),
    }
}

/// A workspace the caller may put things in (link buckets to, attach its containers): one they
/// see, and for a team's workspace a role above viewer; 404 if they do not see it, 403 if they
/// only view it.
pub async fn usable(state: &Core, caller: &Caller, id: &str) -> Result<Workspace> {
    let w = visible(state, caller, id).await?;
    if let Some(team) = &w.team_id {
        if caller.role_in(team).is_none_or(|r| r < TeamRole::Member) {
            return Err(Error::Forbidden(
                "a team viewer cannot link buckets to the team's workspaces or attach their containers".into(),
            ));
        }
    }
    Ok(w)
}

/// Refuses a bucket's `workspaceId` that names no workspace the caller may use (404, or 403
/// for a team viewer).
pub async fn check_link(state: &Core, caller: &Caller, id: Option<&str>) -> Result<()> {
    match id {
        Some(id) => usable(state, caller, id).await.map(|_| ()),
        None => Ok(()),
    }
}

/// Makes a workspace, personal or a team's (not by a viewer of that team).
pub async fn create(
    state: &Core,
    caller: &Caller,
    name: String,
    team_id: Option<String>,
) -> Result<Workspace> {
    if name.trim().is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "name must be 1-64 characters without control characters".into(),
        ));
    }
    crate::requests::may_create_in(caller, team_id.as_deref())?;
    let _cap = crate::caps::reserve(state, caller, crate::caps::Kind::Workspaces).await?;
    let w = Workspace {
        id: new_id(),
        name,
        user_id: caller.user.id.clone(),
        team_id,
        created_at: now(),
    };
    state.store.put_workspace(&w).await?;
    tracing::info!(workspace = %w.id, owner = %w.user_id, team = ?w.team_id, "workspace created");
    Ok(w)
}

/// Workspaces the caller sees, oldest first.
pub async fn list(state: &Core, caller: &Caller) -> Result<Vec<Workspace>> {
    let mut all: Vec<Workspace> = state
        .store
        .list_workspaces()
        .await?
        .into_iter()
        .filter(|w| can_see(caller, w))
        .collect();
    all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    Ok(all)
}

/// Buckets linked to a workspace, as far as the caller sees them.
pub async fn buckets(state: &Core, caller: &Caller, id: &str) -> Result<Vec<BucketRecord>> {
    visible(state, caller, id).await?;
    Ok(linked(state, id)
        .await?
        .into_iter()
        .filter(|b| caller.can_see(b))
        .collect())
}

async fn linked(state: &Core, id: &str) -> Result<Vec<BucketRecord>> {
    Ok(all_buckets(state.store.as_ref())
        .await?
        .into_iter()
        .filter(|b| !b.deleting && b.workspace_id.as_deref() == Some(id))
        .collect())
}

/// Deletes a workspace (its owner, a team admin or owner, or an admin). Refused (409) while
/// buckets are linked to it: they are named, and must be deleted or moved first.
pub async fn delete(state: &Core, caller: &Caller, id: &str) -> Result<()> {
    let w = visible(state, caller, id).await?;
    let may = caller.user.admin
        || w.user_id == caller.user.id
        || w.team_id
            .as_deref()
            .and_then(|t| caller.role_in(t))
            .is_some_and(|r| r >= TeamRole::Admin);
    if !may {
        return Err(Error::Forbidden(
            "only the workspace's owner or a team admin may delete it".into(),
        ));
    }
    let linked = linked(state, id).await?;
    if !linked.is_empty() {
        let seen: Vec<String> = linked
            .iter()
            .filter(|b| caller.can_see(b))
            .map(|b| format!("{} ({})", b.name, b.id))
            .collect();
        return Err(Error::Conflict(format!(
            "workspace {} still has {} linked bucket(s){}: delete them or link them elsewhere first",
            w.name,
            linked.len(),
            if seen.is_empty() {
                String::new()
            } else {
                format!(": {}", seen.join(", "))
            }
        )));
    }
    state.store.delete_workspace(id).await?;
    tracing::info!(workspace = %id, by = %caller.user.id, "workspace deleted");
    Ok(())
}

/// Start-up migration of v1 records, whose `workspaceId` was any string: each (string, owner,
/// team) gets a workspace named after the string, with the string as its id when that is free
/// (a new id otherwise, and the buckets follow it). Idempotent.
pub async fn migrate_links(state: &Core) -> Result<()> {
    let mut made: HashMap<(String, String, Option<String>), String> = HashMap::new();
    for b in all_buckets(state.store.as_ref()).await? {
        let Some(ws) = b.workspace_id.clone() else {
            continue;
        };
        let scope = (ws.clone(), b.user_id.clone(), b.team_id.clone());
        let target = if let Some(id) = made.get(&scope) {
            id.clone()
        } else {
            match state.store.get_workspace(&ws).await? {
                Some(w)
                    if w.user_id == b.user_id
                        || (w.team_id.is_some() && w.team_id == b.team_id) =>
                {
                    continue;
                }
                existing => {
                    let id = if existing.is_none() {
                        ws.clone()
                    } else {
                        new_id()
                    };
                    let w = Workspace {
                        id: id.clone(),
                        name: ws.chars().take(64).collect(),
                        user_id: b.user_id.clone(),
                        team_id: b.team_id.clone(),
                        created_at: now(),
                    };
                    state.store.put_workspace(&w).await?;
                    tracing::info!(workspace = %id, from = %ws, owner = %b.user_id,
                        "workspace made for buckets that named it before workspaces existed");
                    made.insert(scope, id.clone());
                    id
                }
            }
        };
        if target != ws {
            if let Some(mut latest) = state.lock_bucket_if(&b.id).await? {
                latest.workspace_id = Some(target.clone());
                latest.write().await?;
            }
        }
    }
    Ok(())
}
