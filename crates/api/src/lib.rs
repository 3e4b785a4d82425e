//! The Kalpana Buckets daemon: the axum REST API, auth, the store of desired state (embedded by
//! default, MongoDB in production), bucket lifecycle and the reconcile loop.
//!
//! Docker is reached only through `kalpana-manager-core`, S3 only through `kalpana-s3-ops`.

pub mod accept;
pub mod app;
pub mod auth;
pub mod backend;
pub mod body_guard;
pub mod config;
pub mod dns;
pub mod drift;
pub mod endpoint_policy;
pub mod error;
pub mod events;
pub mod external;
pub mod extract;
pub mod fault;
pub mod lease;
pub mod lifecycle;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod pending_usage;
pub mod reconcile;
pub mod router;
pub mod routes;
pub mod secrets;
pub mod server;
pub mod store;
pub mod upload;
pub mod usage;
pub mod validate;

pub use error::{Error, Result};
