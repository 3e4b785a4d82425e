//! The Kalpana Buckets daemon's HTTP side: the axum REST API (router, routes, extractors,
//! auth, OpenAPI), the console, the MCP server for agents, and the binary that wires the domain
//! (`kalpana-domain`) to a container runtime and a listener.
//!
//! Layers, top to bottom; a layer uses the ones below it, never the one above:
//! - **HTTP** (this crate): `router`, `routes` (one module per resource), `extract`, `auth`,
//!   `error` (the one place errors become statuses), `openapi`, `accept` and `body_guard`,
//!   `metrics` (the request middleware), `console`, `mcp` (a client of the REST API); `app` and
//!   `server` wire it all together.
//! - **Domain** (`kalpana-domain`): records and stores, lifecycle and reconcile, backends, keys,
//!   teams, workspaces, snapshots, usage, inventory, fleet; no HTTP. Its modules are re-exported
//!   here under their own names, so `crate::lifecycle` is `kalpana_domain::lifecycle`.
//! - **Runtime and S3** (`kalpana-manager-core`, `kalpana-s3-ops`): containers only through the
//!   `Runtime` port (Docker is its first implementation), S3 only through its client.

// HTTP
pub mod accept;
pub mod app;
pub mod auth;
pub mod body_guard;
pub mod caller_cache;
pub mod console;
pub mod error;
pub mod extract;
pub mod mcp;
pub mod metrics;
pub mod node_agent;
pub mod openapi;
pub mod router;
pub mod routes;
pub mod server;
pub mod standby;

pub use error::{Error, Result};
