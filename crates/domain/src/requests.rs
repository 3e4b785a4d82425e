//! What a client asks for when it makes something: the request bodies the domain takes, and who
//! may make things in a team. Plain data and checks on the caller, below the operations.

use serde::Deserialize;

use crate::access::Caller;
use crate::error::{Error, Result};
use crate::model::{Provider, TeamRole};

/// The body of `POST /api/buckets`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateBucket {
    /// S3 bucket name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Team that shares it (the caller must be a member).
    pub team_id: Option<String>,
    /// Workspace.
    pub workspace_id: Option<String>,
    /// Versioning.
    pub versioning: Option<bool>,
    /// Server-side encryption.
    pub encryption: Option<bool>,
    /// Anonymous read.
    pub public_access: Option<bool>,
    /// Quota in GB (10^9 bytes); fractions allowed.
    #[serde(rename = "maxSizeGB")]
    pub max_size_gb: Option<f64>,
    /// Engine (default from configuration).
    pub engine: Option<String>,
    /// Subdomain label (default derived from the name).
    pub subdomain: Option<String>,
    /// `managed` (default: its own container) or `external`.
    pub kind: Option<crate::model::BucketKind>,
    /// Where an external bucket is, and its credentials.
    pub external: Option<ExternalRequest>,
    /// Make it from a snapshot: same objects, new credentials.
    pub from_snapshot: Option<FromSnapshotRequest>,
    /// Take snapshots on a schedule.
    pub snapshot_policy: Option<crate::model::SnapshotPolicy>,
    /// Seconds with no request after which it sleeps (0: never; default
    /// `KALPANA_SLEEP_AFTER_SECS`).
    pub sleep_after_secs: Option<u64>,
}

/// `fromSnapshot` of a create request.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FromSnapshotRequest {
    /// The bucket the snapshot is of (the caller must manage it).
    pub bucket_id: String,
    /// The snapshot (DONE).
    pub snapshot_id: String,
}

/// Where an external bucket is and how to sign in: the `external` object of
/// `POST /api/buckets` (and of `PATCH`, to replace credentials). `Debug` leaves the secret out.
#[derive(Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalRequest {
    /// `s3`, `r2` or `other`.
    pub provider: Option<Provider>,
    /// The bucket's name on the service.
    pub bucket_name: Option<String>,
    /// Region (`s3`: default us-east-1; `r2`: always `auto`; `other`: default us-east-1).
    pub region: Option<String>,
    /// S3 endpoint (origin); required for `other`, derived for `s3` and `r2`.
    pub endpoint: Option<String>,
    /// Cloudflare account id (`r2`).
    pub account_id: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key: stored encrypted, never shown again.
    pub secret_access_key: Option<String>,
    /// Path-style addressing (default: true for `other` and `r2`, false for `s3`).
    pub path_style: Option<bool>,
}

impl std::fmt::Debug for ExternalRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalRequest")
            .field("provider", &self.provider)
            .field("bucket_name", &self.bucket_name)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("account_id", &self.account_id)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("path_style", &self.path_style)
            .finish()
    }
}

/// Whether the caller may create a bucket in `team` (any member but a viewer; 404 for a team
/// they are not in).
pub fn may_create_in(caller: &Caller, team: Option<&str>) -> Result<()> {
    match team.map(|t| caller.role_in(t)) {
        None => Ok(()),
        Some(None) => Err(Error::NotFound("team")),
        Some(Some(TeamRole::Viewer)) => Err(Error::Forbidden(
            "a team viewer cannot create buckets, workspaces or domains in the team".into(),
        )),
        Some(Some(_)) => Ok(()),
    }
}
