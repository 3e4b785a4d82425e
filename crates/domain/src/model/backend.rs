//! Where a bucket lives, with what only that place has, and how that is stored.

use serde::{Deserialize, Serialize};

/// Where a bucket lives: its own container (`managed`) or a bucket on an S3-compatible service
/// whose credentials the daemon keeps (`external`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BucketKind {
    /// Its own S3 server in its own container.
    #[default]
    Managed,
    /// A bucket on AWS S3, Cloudflare R2 or another S3-compatible service.
    External,
}

impl BucketKind {
    /// The name clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            BucketKind::Managed => "managed",
            BucketKind::External => "external",
        }
    }
}

/// The S3-compatible service an external bucket lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Amazon S3.
    S3,
    /// Cloudflare R2.
    R2,
    /// Any other S3-compatible service.
    Other,
}

/// Where an external bucket is. Its access key id is the record's `access_key`, its secret the
/// record's `secret_key_enc` (encrypted like every other secret), its region the record's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalTarget {
    /// The service.
    pub provider: Provider,
    /// The service's S3 endpoint (origin).
    pub endpoint: String,
    /// The bucket's name on the service.
    pub bucket_name: String,
    /// Path-style requests (`<endpoint>/<bucket>/<key>`) rather than virtual-hosted ones.
    pub path_style: bool,
    /// The R2 account id the endpoint was made from.
    pub account_id: Option<String>,
}

/// What a managed bucket's server is made of on the runtime.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Container {
    /// The runtime's id of its current container, once made.
    pub container_id: Option<String>,
    /// Its data volume.
    pub volume_name: Option<String>,
    /// The network its container joins.
    pub network_name: Option<String>,
    /// The name by which containers on that network reach it.
    pub internal_host: Option<String>,
}

/// Where a bucket lives, and what only that place has: a managed bucket cannot carry an
/// external target, nor an external one container fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredBackend", into = "StoredBackend")]
pub enum Backend {
    /// Its own S3 server in its own container.
    Managed(Container),
    /// A bucket on an S3-compatible service.
    External(ExternalTarget),
}

/// How [`Backend`] is stored: flat fields of the bucket record, as before it was one enum, so
/// records already stored read unchanged (no `kind` means managed, from before external
/// buckets existed).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredBackend {
    #[serde(default)]
    kind: BucketKind,
    #[serde(default)]
    external: Option<ExternalTarget>,
    #[serde(default)]
    container_id: Option<String>,
    #[serde(default)]
    volume_name: Option<String>,
    #[serde(default)]
    network_name: Option<String>,
    #[serde(default)]
    internal_host: Option<String>,
}

impl TryFrom<StoredBackend> for Backend {
    type Error = String;
    fn try_from(s: StoredBackend) -> std::result::Result<Self, String> {
        match (s.kind, s.external) {
            (BucketKind::Managed, None) => Ok(Backend::Managed(Container {
                container_id: s.container_id,
                volume_name: s.volume_name,
                network_name: s.network_name,
                internal_host: s.internal_host,
            })),
            (BucketKind::External, Some(target)) => Ok(Backend::External(target)),
            (BucketKind::Managed, Some(_)) => {
                Err("a managed bucket record carries an external target".into())
            }
            (BucketKind::External, None) => {
                Err("an external bucket record has no external target".into())
            }
        }
    }
}

impl From<Backend> for StoredBackend {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Managed(c) => StoredBackend {
                kind: BucketKind::Managed,
                external: None,
                container_id: c.container_id,
                volume_name: c.volume_name,
                network_name: c.network_name,
                internal_host: c.internal_host,
            },
            Backend::External(target) => StoredBackend {
                kind: BucketKind::External,
                external: Some(target),
                container_id: None,
                volume_name: None,
                network_name: None,
                internal_host: None,
            },
        }
    }
}
