//! An upload's hold on its bucket's quota, and the refusal of one over it.

use crate::context::Core;
use crate::error::Error;
use crate::model::BucketRecord;

/// Bytes an upload has taken from its bucket's quota; given back when dropped (after the store
/// recorded what was stored, or when the upload failed).
pub struct Reservation {
    state: Core,
    bucket: BucketRecord,
    key: String,
    quota: Option<u64>,
    /// Size of the object the upload replaces, if this upload may count it as freed.
    credit: u64,
    /// Whether this upload holds the credit of its key (to give it back).
    credited: bool,
    held: u64,
}

impl Reservation {
    /// Starts an upload of `key`, whose current object is `old_size` bytes.
    pub fn begin(state: &Core, b: &BucketRecord, key: &str, old_size: u64) -> Self {
        let quota = b.quota_bytes();
        let credit = match quota {
            Some(_) => state.quotas.credit(b, key, old_size),
            None => 0,
        };
        Reservation {
            state: state.clone(),
            bucket: b.clone(),
            key: key.to_string(),
            quota,
            credit,
            credited: quota.is_some() && credit == old_size,
            held: 0,
        }
    }

    /// Takes `bytes` more; false when the quota does not allow them (nothing taken).
    pub fn take(&mut self, bytes: u64) -> bool {
        let Some(quota) = self.quota else {
            return true;
        };
        let ok = self
            .state
            .quotas
            .take(&self.bucket, quota.saturating_add(self.credit), bytes);
        if ok {
            self.held += bytes;
        }
        ok
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.quota.is_some() {
            self.state
                .quotas
                .release(&self.bucket, self.held, &self.key, self.credited);
        }
    }
}

/// The 413 of an upload over quota.
pub fn over_quota(b: &BucketRecord) -> Error {
    let quota = b.max_size_gb.unwrap_or_default();
    Error::QuotaExceeded(format!(
        "the upload would take bucket {} over its quota of {quota} GB ({} bytes in use); nothing was stored",
        b.name, b.total_size_bytes
    ))
}
