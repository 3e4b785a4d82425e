//! Handlers, one module per resource.

pub mod admin;
pub mod buckets;
pub mod domains;
pub mod events;
pub mod fallback;
pub mod health;
pub mod identities;
pub mod objects;
pub mod presign;
