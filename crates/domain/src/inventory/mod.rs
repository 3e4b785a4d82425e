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

mod docks;
pub mod listing;
pub mod model;
mod plan;
mod provider_api;
pub mod providers;
mod sync;

pub use docks::{can_see, create, delete, list, sync_for, visible, NewDock};
pub use plan::plan;
pub use provider_api::base_url;
pub use sync::{spawn_periodic_sync, sync};
