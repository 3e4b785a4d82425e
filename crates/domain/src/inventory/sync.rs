//! Syncing docks: one now, or every due one periodically; the provider's listing is written as
//! the difference [`plan`](super::plan) works out.

use std::time::{Duration, Instant};

use crate::context::Core;
use crate::error::{Error, Result};
use crate::events::BucketEvent;
use crate::model::now;

use super::model::{Dock, SyncStats};
use super::plan::plan;
use super::provider_api::{base_url, http};
use super::providers::{adapter, ProviderClient, ProviderError};

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

/// Tells subscribers a dock's sync status.
pub(super) fn publish(state: &Core, dock: &Dock, status: &'static str, message: Option<String>) {
    state
        .events
        .publish(BucketEvent::of_dock(dock, status, message));
}
