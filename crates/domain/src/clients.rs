//! Where a bucket's S3 is, whatever its kind: its client, presigner and public endpoint, from the
//! managed backend (`lifecycle`, a container per bucket) or the external one (`external`).
//! Routes and background tasks get them here and never ask `kind` themselves.

use kalpana_s3_ops::{BucketClient, Presigner};

use crate::context::Core;
use crate::error::{Error, Result};
use crate::model::{BucketKind, BucketRecord};
use crate::{external, lifecycle};

/// The S3 client of a bucket, reused across requests.
pub fn s3(state: &Core, b: &BucketRecord) -> Result<BucketClient> {
    match b.kind() {
        BucketKind::Managed => lifecycle::s3_client(state, b),
        BucketKind::External => external::client(state, b),
    }
}

/// A presigner for the origin clients use.
pub fn presigner(state: &Core, b: &BucketRecord) -> Result<Presigner> {
    match b.kind() {
        BucketKind::Managed => {
            let origin = lifecycle::public_origin(state, b).ok_or_else(|| {
                Error::Conflict(format!("bucket {} has no public endpoint", b.name))
            })?;
            Ok(Presigner::new(
                &lifecycle::endpoint_at(state, b, origin)?,
                &b.name,
            ))
        }
        BucketKind::External => external::presigner(state, b),
    }
}

/// A presigner for the origin the daemon itself uses (for jobs run on the cluster's nodes,
/// which reach the bucket where the daemon does).
pub fn internal_presigner(state: &Core, b: &BucketRecord) -> Result<Presigner> {
    match b.kind() {
        BucketKind::Managed => Ok(Presigner::new(
            &lifecycle::endpoint_at(state, b, lifecycle::internal_origin(state, b)?)?,
            &b.name,
        )),
        BucketKind::External => external::presigner(state, b),
    }
}

/// The S3 origin clients use for the bucket, if it has one.
pub fn public_endpoint(state: &Core, b: &BucketRecord) -> Option<String> {
    match b.kind() {
        BucketKind::Managed => lifecycle::public_origin(state, b),
        BucketKind::External => b.external().map(|x| x.endpoint.clone()),
    }
}
