//! Records the daemon keeps, and their JSON views.

mod backend;
mod bucket;
mod keys;
mod node;

pub use backend::{Backend, BucketKind, Container, ExternalTarget, Provider};
pub use bucket::{BucketRecord, FromSnapshot, SleepRecord, SnapshotPolicy};
pub use keys::{Attachment, KeyAccess, KeyRotation, PendingRevoke, ScopedKey};
pub use node::{Evacuation, LostWithNode, NodeRecord, SetAsideVolume};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The current time as RFC 3339.
pub fn now() -> String {
    format_time(OffsetDateTime::now_utc())
}

/// A time given in Unix milliseconds as RFC 3339, if it is one.
pub fn rfc3339_ms(ms: u64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .map(format_time)
}

/// A time as RFC 3339.
pub fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// Whole seconds from RFC 3339 time `t` to now (0 for a time ahead), if `t` is one.
pub fn seconds_since(t: &str) -> Option<u64> {
    let then = OffsetDateTime::parse(t, &Rfc3339).ok()?;
    Some((OffsetDateTime::now_utc() - then).whole_seconds().max(0) as u64)
}

/// A new time-ordered id (UUID v7), so listing by id lists by creation.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A bucket's status, as in DESIGN.md's status machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BucketStatus {
    /// Being provisioned.
    Creating,
    /// Serving S3.
    Running,
    /// Stopped on request; data kept.
    Stopped,
    /// Something failed; see `statusMessage`.
    Error,
}

impl BucketStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            BucketStatus::Creating => "CREATING",
            BucketStatus::Running => "RUNNING",
            BucketStatus::Stopped => "STOPPED",
            BucketStatus::Error => "ERROR",
        }
    }

    /// Parses the wire name (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "CREATING" => Some(BucketStatus::Creating),
            "RUNNING" => Some(BucketStatus::Running),
            "STOPPED" => Some(BucketStatus::Stopped),
            "ERROR" => Some(BucketStatus::Error),
            _ => None,
        }
    }
}

/// A user of the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    /// Display name.
    pub name: String,
    /// Whether the user is an administrator.
    pub admin: bool,
    /// SHA-256 of the user's API token; the token itself is never stored.
    pub token_hash: String,
    /// RFC 3339 (UTC); set once, when it is made.
    pub created_at: String,
}

/// What a member may do with a team's buckets.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TeamRole {
    /// Reads objects and bucket details.
    Viewer,
    /// Also writes and deletes objects.
    Member,
    /// Also creates, changes, starts, stops, rotates and deletes buckets, and manages members.
    Admin,
    /// The team's creator: everything an admin does, and names admins.
    Owner,
}

impl TeamRole {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TeamRole::Viewer => "viewer",
            TeamRole::Member => "member",
            TeamRole::Admin => "admin",
            TeamRole::Owner => "owner",
        }
    }
}

/// A workspace (a development container, an app, an agent's home): buckets are linked to it
/// with their `workspaceId`, and its containers may be attached to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    /// Id.
    pub id: String,
    /// Free text.
    pub name: String,
    /// Owner.
    pub user_id: String,
    /// Team whose members see it.
    pub team_id: Option<String>,
    /// Creation time.
    pub created_at: String,
}

/// A team: its members reach its buckets as their role allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Team {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The user who made it.
    pub owner_id: String,
    /// Member user ids (the owner included).
    pub members: Vec<String>,
    /// Role of each member other than the owner; a member missing here (a team made before
    /// roles existed) is a `member`.
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, TeamRole>,
    /// Creation time.
    pub created_at: String,
}

impl Team {
    /// The role of `user_id`, if they are a member.
    pub fn role_of(&self, user_id: &str) -> Option<TeamRole> {
        if self.owner_id == user_id {
            return Some(TeamRole::Owner);
        }
        self.members
            .iter()
            .any(|m| m == user_id)
            .then(|| self.roles.get(user_id).copied().unwrap_or(TeamRole::Member))
    }
}

/// A domain registered by a user or a team; its buckets can be linked to `<sub>.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Domain {
    pub id: String,
    /// DNS name, e.g. `files.example.com`.
    pub name: String,
    pub user_id: String,
    /// Team whose members may use it.
    pub team_id: Option<String>,
    /// The value the TXT record `_kalpana-challenge.<name>` must hold to prove control.
    #[serde(default)]
    pub verification_token: String,
    /// When control was proven (by DNS or an admin); an unverified domain routes nothing.
    #[serde(default)]
    pub verified_at: Option<String>,
    /// Who or what verified it: `dns` or `admin:<user id>`.
    #[serde(default)]
    pub verified_by: Option<String>,
    /// RFC 3339 (UTC); set once, when it is made.
    pub created_at: String,
}

impl Domain {
    /// The DNS name whose TXT record proves control of the domain.
    pub fn challenge_name(&self) -> String {
        format!("_kalpana-challenge.{}", self.name)
    }
}

/// What a bucket is in the middle of, beside its status (typed, so that nothing is parsed back
/// out of `statusMessage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// STOPPED recorded, the container not yet stopped.
    Stopping,
    /// RUNNING, the container went down and is being brought back.
    Restarting,
}
