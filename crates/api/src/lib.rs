//! The Kalpana Buckets daemon: the axum REST API, auth, the store of desired state (embedded by
//! default, MongoDB in production), the bucket backends and the reconcile loop.
//!
//! Three layers, top to bottom; a layer uses the ones below it, never the one above:
//! - **HTTP**: `router`, `routes` (one module per resource), `extract`, `error` (the one place
//!   errors become statuses), `openapi`, `accept` (the listener) and `body_guard`.
//! - **Domain**: the bucket operations and the backends behind one seam (`backend`): `lifecycle`
//!   (managed buckets, a container each; split by operation) and `external` (buckets on other
//!   S3 services, with `endpoint_policy`); `reconcile` (the controller loop, its decisions in
//!   `reconcile::decide`), `keys` (scoped keys), `workspaces`, `usage`, `pending_usage`,
//!   `upload`, `drift`, `auth`, `validate`, `model`; `mcp` (the agents' stdio server, a client
//!   of the REST API).
//! - **Infrastructure**: `store` (embedded or MongoDB), `secrets`, `config`, `metrics`,
//!   `events`, `lease`, `dns`, `fault`, and `app`/`server`, which wire it all together.
//!
//! Docker is reached only through `kalpana-manager-core`, and only from `lifecycle` and
//! `reconcile`; S3 only through `kalpana-s3-ops`, and routes reach a bucket's S3 only through
//! `backend`.

// HTTP
pub mod accept;
pub mod body_guard;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod router;
pub mod routes;

// Domain
pub mod auth;
pub mod backend;
pub mod caps;
pub mod drift;
pub mod endpoint_policy;
pub mod external;
pub mod fleet;
pub mod inventory;
pub mod keys;
pub mod lifecycle;
pub mod mcp;
pub mod model;
pub mod pending_usage;
pub mod reconcile;
pub mod snapshots;
pub mod teams;
pub mod upload;
pub mod usage;
pub mod validate;
pub mod workspaces;

// Infrastructure
pub mod app;
pub mod config;
pub mod console;
pub mod dns;
pub mod events;
pub mod fault;
pub mod lease;
pub mod metrics;
pub mod secrets;
pub mod server;
pub mod store;

pub use error::{Error, Result};
