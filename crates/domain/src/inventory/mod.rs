//! The cloud storage inventory: provider accounts ("docks") whose block volumes and buckets are
//! synced into two universal tables (seeds 000/001). A dock is seen by its owner, its team and
//! admins; everyone else gets 404. Its token is encrypted with the master key and never
//! answered, logged or put in an event.
//!
//! A sync lists everything the provider has (every page), then writes only the difference:
//! records it has not seen are inserted, records whose provider data changed are replaced,
//! records the provider no longer lists are removed, and unchanged ones are not written at all.
//! When the provider fails or answers garbage, nothing is written but the dock's
//! `lastSyncError` and `lastSyncedAt`. Syncs of one dock are serialised by its lock.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::access::Caller;
use crate::context::Core;
use crate::error::{Error, Result};
use crate::events::BucketEvent;
use crate::model::{new_id, now};

pub mod listing;
pub mod model;
pub mod providers;

use model::{CloudProvider, Dock, InventoryRecord, InventoryWrite, SyncStats};
use providers::{adapter, ProviderClient, ProviderError};

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
    crate::lifecycle::may_create_in(caller, d.team_id.as_deref())
        .map_err(|_| Error::Forbidden("a viewer cannot change the team's docks".into()))?;
    Ok(d)
}

/// The base URL of a provider's API (configured, or the public one).
pub fn base_url(state: &Core, provider: CloudProvider) -> String {
    state
        .config
        .provider_urls
        .iter()
        .find(|(p, _)| *p == provider)
        .map(|(_, u)| u.clone())
        .unwrap_or_else(|| adapter(provider).default_base_url().to_string())
}

/// The HTTP client provider calls use: no redirects (the token goes to the API's host only).
fn http() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error::Internal(format!("HTTP client: {e}")))
}

/// The API's error for a provider's answer.
fn provider_error(e: ProviderError) -> Error {
    match e {
        ProviderError::Refused { .. } => Error::ProviderRefused(e.to_string()),
        _ => Error::ProviderFailed(e.to_string()),
    }
}

/// A dock to make.
#[derive(Debug)]
pub struct NewDock {
    /// Provider.
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
    crate::lifecycle::may_create_in(caller, req.team_id.as_deref())?;
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

fn publish(state: &Core, dock: &Dock, status: &'static str, message: Option<String>) {
    state
        .events
        .publish(BucketEvent::of_dock(dock, status, message));
}

/// Syncs one dock now (after any sync of it running). A provider failure is recorded on the
/// dock (its last good inventory kept) and answered as `ProviderFailed`.
pub async fn sync(state: &Core, id: &str) -> Result<Dock> {
    let _guard = state.locks.dock(id).await;
    let Some(mut dock) = state.store.get_dock(id).await? else {
        return Err(Error::NotFound("dock"));
    };
    let started = Instant::now();
    publish(state, &dock, "SYNCING", None);
    let a = adapter(dock.provider);
    let token = state.master_key.decrypt(&dock.token_enc)?;
    let mut client = ProviderClient::new(http()?, a, &base_url(state, dock.provider), token);
    let progress = |pages: u64, listed: usize| {
        if pages.is_multiple_of(10) {
            publish(
                state,
                &dock,
                "SYNCING",
                Some(format!("{pages} pages read, {listed} resources")),
            );
        }
    };
    let listed = client.list_all(a, progress).await;
    let at = now();
    dock.last_synced_at = Some(at.clone());
    let (records, pages) = match listed {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(dock = %dock.id, provider = dock.provider.as_str(), error = %e,
                "sync failed; the last good inventory is kept");
            dock.last_sync_error = Some(e.to_string());
            state.store.put_dock(&dock).await?;
            publish(state, &dock, "FAILED", Some(e.to_string()));
            return Err(Error::ProviderFailed(e.to_string()));
        }
    };
    let existing = state.store.dock_inventory(&dock.id).await?;
    let (write, unchanged) = match plan(&dock.id, existing, records, &at) {
        Ok(p) => p,
        Err(message) => {
            let e = ProviderError::Garbage {
                provider: dock.provider.as_str(),
                message,
            };
            dock.last_sync_error = Some(e.to_string());
            state.store.put_dock(&dock).await?;
            publish(state, &dock, "FAILED", Some(e.to_string()));
            return Err(Error::ProviderFailed(e.to_string()));
        }
    };
    if !write.is_empty() {
        state.store.write_inventory(&write).await?;
    }
    let stats = SyncStats {
        pages,
        listed: (write.insert.len() + write.update.len()) as u64 + unchanged,
        inserted: write.insert.len() as u64,
        updated: write.update.len() as u64,
        removed: write.remove.len() as u64,
        unchanged,
        store_writes: write.len() as u64,
        rate_limited: client.rate_limited,
        millis: started.elapsed().as_millis() as u64,
    };
    dock.last_sync_error = None;
    dock.last_good_sync_at = Some(at);
    dock.last_sync = Some(stats.clone());
    state.store.put_dock(&dock).await?;
    tracing::info!(dock = %dock.id, provider = dock.provider.as_str(), pages, inserted = stats.inserted,
        updated = stats.updated, removed = stats.removed, unchanged, millis = stats.millis, "dock synced");
    publish(
        state,
        &dock,
        "SYNCED",
        Some(format!(
            "{} listed: {} new, {} changed, {} removed",
            stats.listed, stats.inserted, stats.updated, stats.removed
        )),
    );
    Ok(dock)
}

/// What a sync writes: `listed` against `existing` (the dock's records now). Records keep their
/// id; only new and changed ones get `at` as `updatedAt`. Two listed resources with one id are
/// told apart by their cluster (`label@cluster`, Linode labels are unique per cluster only);
/// still the same, the answer is garbage. Returns the write and how many were unchanged.
pub fn plan(
    dock_id: &str,
    existing: Vec<InventoryRecord>,
    listed: Vec<InventoryRecord>,
    at: &str,
) -> std::result::Result<(InventoryWrite, u64), String> {
    let mut counts: HashMap<(model::ResourceKind, String), usize> = HashMap::new();
    for r in &listed {
        *counts
            .entry((r.kind, r.provider_resource_id.clone()))
            .or_default() += 1;
    }
    let mut old: HashMap<(model::ResourceKind, String), InventoryRecord> = existing
        .into_iter()
        .map(|r| ((r.kind, r.provider_resource_id.clone()), r))
        .collect();
    let mut seen = HashSet::new();
    let mut write = InventoryWrite::default();
    let mut unchanged = 0u64;
    for mut r in listed {
        if counts[&(r.kind, r.provider_resource_id.clone())] > 1 {
            match &r.cluster {
                Some(c) => r.provider_resource_id = format!("{}@{c}", r.provider_resource_id),
                None => {
                    return Err(format!(
                        "it listed {} more than once",
                        r.provider_resource_id
                    ))
                }
            }
        }
        let key = (r.kind, r.provider_resource_id.clone());
        if !seen.insert(key.clone()) {
            return Err(format!(
                "it listed {} more than once",
                r.provider_resource_id
            ));
        }
        r.dock_id = dock_id.to_string();
        match old.remove(&key) {
            Some(prev) if prev.same_data(&r) => unchanged += 1,
            Some(prev) => {
                r.id = prev.id;
                r.updated_at = at.to_string();
                write.update.push(r);
            }
            None => {
                r.id = new_id();
                r.updated_at = at.to_string();
                write.insert.push(r);
            }
        }
    }
    write.remove = old.into_values().collect();
    Ok((write, unchanged))
}

/// Syncs every dock whose last sync is older than the configured interval, a few at a time,
/// forever (off when the interval is zero).
pub fn spawn_periodic_sync(state: Core) {
    let every = state.config.inventory_sync_interval;
    if every.is_zero() {
        return;
    }
    let core = state.clone();
    core.tasks.spawn_loop("inventory sync", async move {
        use futures::StreamExt;
        let tick = every.min(Duration::from_secs(30));
        loop {
            tokio::time::sleep(tick).await;
            let docks = match state.store.list_docks().await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "listing docks for the periodic sync failed");
                    continue;
                }
            };
            let due: Vec<String> = docks
                .into_iter()
                .filter(|d| is_due(d, every))
                .map(|d| d.id)
                .collect();
            futures::stream::iter(due)
                .for_each_concurrent(4, |id| {
                    let state = state.clone();
                    async move {
                        match sync(&state, &id).await {
                            Err(e) if !matches!(e, Error::ProviderFailed(_)) => {
                                tracing::warn!(dock = %id, error = %e, "periodic sync failed")
                            }
                            _ => {}
                        }
                    }
                })
                .await;
        }
    });
}

/// Whether a dock's last sync (or its creation) is older than `every`.
fn is_due(d: &Dock, every: Duration) -> bool {
    use time::format_description::well_known::Rfc3339;
    let last = d.last_synced_at.as_deref().unwrap_or(&d.created_at);
    time::OffsetDateTime::parse(last, &Rfc3339)
        .map(|t| time::OffsetDateTime::now_utc() - t >= every)
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ResourceKind;

    fn rec(prid: &str, size: u64, cluster: Option<&str>) -> InventoryRecord {
        let mut r = providers::record(
            ResourceKind::Bucket,
            CloudProvider::Linode,
            prid.into(),
            prid.into(),
            "us-sea".into(),
            "active".into(),
            serde_json::json!({ "bucket": { "label": prid, "size": size } }),
        );
        r.size_bytes = Some(size);
        r.cluster = cluster.map(str::to_string);
        r
    }

    #[test]
    fn a_first_sync_inserts_and_a_second_of_the_same_answer_writes_nothing() {
        let listed = vec![rec("a", 1, None), rec("b", 2, None)];
        let (w, unchanged) = plan("d", Vec::new(), listed.clone(), "t1").expect("plan");
        assert_eq!(
            (w.insert.len(), w.update.len(), w.remove.len(), unchanged),
            (2, 0, 0, 0)
        );
        assert!(w
            .insert
            .iter()
            .all(|r| r.dock_id == "d" && r.updated_at == "t1" && !r.id.is_empty()));
        let (w2, unchanged) = plan("d", w.insert.clone(), listed, "t2").expect("plan");
        assert!(w2.is_empty(), "{w2:?}");
        assert_eq!(unchanged, 2);
    }

    #[test]
    fn changes_keep_the_id_and_what_disappeared_is_removed() {
        let (w, _) = plan(
            "d",
            Vec::new(),
            vec![rec("a", 1, None), rec("b", 2, None)],
            "t1",
        )
        .expect("plan");
        let a_id = w
            .insert
            .iter()
            .find(|r| r.provider_resource_id == "a")
            .map(|r| r.id.clone());
        let (w2, unchanged) = plan("d", w.insert, vec![rec("a", 5, None)], "t2").expect("plan");
        assert_eq!(unchanged, 0);
        assert_eq!(w2.update.len(), 1);
        assert_eq!(Some(w2.update[0].id.clone()), a_id);
        assert_eq!(w2.update[0].updated_at, "t2");
        assert_eq!(w2.remove.len(), 1);
        assert_eq!(w2.remove[0].provider_resource_id, "b");
    }

    #[test]
    fn one_label_in_two_clusters_is_two_buckets_and_a_true_duplicate_is_garbage() {
        let (w, _) = plan(
            "d",
            Vec::new(),
            vec![
                rec("a", 1, Some("us-sea-1")),
                rec("a", 1, Some("eu-central-1")),
            ],
            "t",
        )
        .expect("plan");
        let mut ids: Vec<_> = w
            .insert
            .iter()
            .map(|r| r.provider_resource_id.clone())
            .collect();
        ids.sort();
        assert_eq!(ids, ["a@eu-central-1", "a@us-sea-1"]);
        assert!(plan(
            "d",
            Vec::new(),
            vec![rec("a", 1, None), rec("a", 2, None)],
            "t"
        )
        .is_err());
    }
}
