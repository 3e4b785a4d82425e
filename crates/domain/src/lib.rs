//! The bucket logic of Kalpana Buckets, without HTTP: the records and the stores that keep them
//! (`model`, `store`), the lifecycle of managed buckets and its reconcile loop (`lifecycle`,
//! `reconcile`), the backend seam (`backend`, `external`), scoped keys, teams, workspaces and
//! caps, snapshots, usage and quotas, the cloud inventory and the fleet.
//!
//! What it must not know: HTTP (no axum, hyper or tower of its own; the api crate maps [`Error`]
//! to answers in one place), and which container runtime runs bucket servers (it asks the
//! [`kalpana_manager_core::Runtime`] in [`Core::runtime`]). Domain operations take the narrow
//! [`Core`] context; a bucket's record changes through [`Core::lock_bucket`].

pub mod access;
pub mod backend;
pub mod caps;
pub mod clients;
pub mod config;
pub mod context;
pub mod dns;
pub mod drift;
pub mod error;
pub mod events;
pub mod external;
pub mod fleet;
pub mod inventory;
pub mod keys;
pub mod kinds;
pub mod lease;
pub mod lifecycle;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod node_leases;
pub mod node_loss;
pub mod pending_usage;
pub mod reach;
pub mod reconcile;
pub mod requests;
pub mod routing_config;
pub mod secrets;
pub mod sleep;
pub mod snapshots;
pub mod store;
pub mod supervisor;
pub mod teams;
pub mod upload;
pub mod usage;
pub mod validate;
pub mod workspaces;

pub use context::{Core, Locked};
pub use error::{Error, Result};
pub use kalpana_manager_core::fault;
