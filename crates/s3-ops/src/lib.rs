//! S3 operations against one bucket endpoint through aws-sdk-s3, configured for S3-compatible
//! servers (path-style addressing, checksums only when required).
//!
//! It knows nothing of HTTP routes, auth or the store: callers give an endpoint, credentials and
//! a bucket name.

pub mod client;
pub mod error;
pub mod minio_admin;
pub mod multipart;
pub mod objects;
pub mod presign;
pub mod scope;
pub mod settings;

pub use client::{AddressFilter, BucketClient, Endpoint, RemoteOptions};
pub use error::{Error, Result};
pub use objects::{BodyStream, BoxError, Download, Listing, ObjectInfo, Uploaded};
pub use presign::{Presigned, Presigner};
