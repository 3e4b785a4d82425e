//! A managed bucket's scoped keys, attachments and revocations waiting for the engine.

use serde::{Deserialize, Serialize};

/// What a scoped key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAccess {
    /// Read and list objects.
    Read,
    /// Write and delete objects (not read them).
    Write,
    /// Both.
    ReadWrite,
}

/// A scoped access key of a managed bucket, made by the engine itself (an IAM user with a policy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopedKey {
    /// Id (also names the engine's user: `kb-<id>`).
    pub id: String,
    /// Free text.
    pub name: String,
    /// Access key id.
    pub access_key: String,
    /// Secret key, encrypted with the master key (shown once, at creation).
    pub secret_key_enc: String,
    /// What it may do.
    pub access: KeyAccess,
    /// Only keys under this prefix.
    pub prefix: Option<String>,
    /// When it stops working (revoked by the daemon within seconds).
    pub expires_at: Option<String>,
    /// RFC 3339 (UTC); set once, when it is made.
    pub created_at: String,
    /// The user who made it (and saw its secret); none for keys made before this was kept.
    #[serde(default)]
    pub created_by: Option<String>,
    /// When its secret was last replaced, and why; the holder gets a working secret again with
    /// `POST …/keys/{keyId}/rotate`.
    #[serde(default)]
    pub rotated: Option<KeyRotation>,
}

/// A replacement of a scoped key's secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotation {
    /// When.
    pub at: String,
    /// Why, in words.
    pub reason: String,
}

impl ScopedKey {
    /// The engine's user name of the key.
    pub fn engine_user(&self) -> String {
        format!("kb-{}", self.id)
    }
}

/// A workspace container attached to a bucket: on the bucket's attachment network, with a
/// scoped key of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub id: String,
    /// Docker id of the container.
    pub container_id: String,
    pub container_name: String,
    /// The workspace its label names.
    pub workspace_id: String,
    /// The scoped key it was given.
    pub key_id: String,
    /// RFC 3339 (UTC); set once, when it is made.
    pub created_at: String,
    /// The user who attached it.
    #[serde(default)]
    pub created_by: Option<String>,
}

/// A key revoked while its bucket could not be reached: removed from the engine when it can.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingRevoke {
    /// The engine's user name.
    pub user: String,
    /// The access key id.
    pub access_key: String,
}
