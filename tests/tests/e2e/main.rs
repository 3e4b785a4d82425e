//! End-to-end tests: the real daemon binary, real Docker, real engine containers, real S3.
//! All compiled into one test binary.

mod api_fuzz;
mod attachments;
mod auth;
mod big_uploads;
mod config_file;
mod console;
mod external;
mod faults;
mod fleet;
mod hardening;
mod hostnames;
mod inventory;
mod isolation;
mod keys;
mod lifecycle;
mod limits;
mod mcp;
mod metrics;
mod objects;
mod ports;
mod quotas;
mod restores;
mod routing;
mod runtime;
mod side_doors;
mod sleep;
mod snapshots;
mod stats;
mod store_outage;
mod swarm;
mod swarm_daemon;
mod tenancy;
mod workspaces;
