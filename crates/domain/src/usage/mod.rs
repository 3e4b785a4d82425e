//! Object counts, sizes and quotas: kept current after API writes, recounted periodically from
//! the S3 servers themselves (which also sees writes made directly over S3), and a ledger of
//! bytes in flight so that concurrent uploads and issued presigned uploads are counted against
//! the quota together.

mod counters;
mod ledger;
mod presigned;
mod refresh_loop;
mod reservation;

pub use counters::{adjust, announce_quota, mark_over_quota, sync_one};
pub use ledger::Ledger;
pub use presigned::follow_presigned;
pub use refresh_loop::{recount_every, spawn_periodic_sync};
pub use reservation::{over_quota, Reservation};
