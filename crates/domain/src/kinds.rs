//! What a bucket's kind allows, read from its record alone.

use crate::error::{Error, Result};
use crate::model::{BucketKind, BucketRecord};

/// The name of the bucket on its S3 server.
pub fn s3_bucket_name(b: &BucketRecord) -> &str {
    match b.external() {
        Some(x) => &x.bucket_name,
        None => &b.name,
    }
}

/// Refuses an operation only managed buckets have (a container, a domain route, engine-side
/// keys or snapshots): 422 `not_supported` naming the kind.
pub fn require_managed(b: &BucketRecord, operation: &str) -> Result<()> {
    match b.kind() {
        BucketKind::Managed => Ok(()),
        kind => Err(Error::NotSupported {
            kind: kind.as_str(),
            operation: operation.to_string(),
            bucket: b.name.clone(),
        }),
    }
}
