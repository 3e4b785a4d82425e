//! Handlers, one module per resource.

pub mod admin;
pub mod attachments;
pub mod buckets;
pub mod connection;
pub mod copy;
pub mod defaults;
pub mod docks;
pub mod domains;
pub mod events;
pub mod fallback;
pub mod fleet;
pub mod health;
pub mod identities;
pub mod inventory;
pub mod keys;
pub mod nodes;
pub mod objects;
pub mod presign;
pub mod probe;
pub mod sleep;
pub mod snapshots;
pub mod stats;
pub mod traefik;
pub mod workspaces;
