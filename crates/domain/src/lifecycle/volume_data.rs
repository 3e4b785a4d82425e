//! A managed bucket's data as a whole, for restores and `fromSnapshot`: the runtime's data jobs
//! ([`kalpana_manager_core::Runtime::fill`], [`kalpana_manager_core::Runtime::promote_staging`])
//! run where the volume lives; the domain only says which archive and with which key.
//!
//! A restore stages the archive in a separate volume first, so the bucket's data is untouched
//! until the archive has been read whole and checked; only then is the bucket's volume made anew
//! from the staging volume, a step that can be repeated from the top until it succeeds.

use kalpana_manager_core::runtime::{FillJob, JobOutcome, VolumeRole};

use crate::context::Core;
use crate::error::Result;
use crate::model::BucketRecord;

use super::spec_for;

/// Fills a fresh staging volume of `b` from `job`'s archive; the bucket's own data is not
/// touched.
pub async fn stage(state: &Core, b: &BucketRecord, job: FillJob) -> Result<JobOutcome> {
    let spec = spec_for(state, b)?;
    Ok(state.runtime.fill(&spec, VolumeRole::Staging, job).await?)
}

/// Whether `b` has a staging volume (a restore was interrupted after staging).
pub async fn staged(state: &Core, b: &BucketRecord) -> Result<bool> {
    Ok(state.runtime.staged(&b.id).await?)
}

/// Removes the staging volume of bucket `id` and any data helper left; none is fine.
pub async fn drop_staging(state: &Core, id: &str) -> Result<()> {
    Ok(state.runtime.drop_staging(id).await?)
}

/// Makes the bucket's data the staged data: its server removed, its volume made anew and
/// filled from the staging volume, its server created again from the record (which writes
/// fresh internal certificates over the snapshot's); not started. Every step can be repeated,
/// so a daemon that dies part-way runs it again from the top while the staging volume exists.
/// The staging volume is left for the caller to drop once the outcome is recorded. Caller
/// holds the bucket's lock.
pub async fn replace_from_staging(state: &Core, b: &BucketRecord) -> Result<()> {
    let spec = spec_for(state, b)?;
    // The old server's pooled connections and address go with it.
    state.s3_clients.forget(&b.id);
    state.addresses.set(&b.id, None);
    Ok(state.runtime.promote_staging(&spec).await?)
}

/// Fills the volume of a bucket being provisioned from `job`'s archive (its server is not yet
/// made).
pub async fn import(state: &Core, b: &BucketRecord, job: FillJob) -> Result<JobOutcome> {
    let spec = spec_for(state, b)?;
    Ok(state.runtime.fill(&spec, VolumeRole::Data, job).await?)
}
