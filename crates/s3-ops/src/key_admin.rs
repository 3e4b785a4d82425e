//! One handle on whichever API an engine makes scoped keys with.

use crate::error::Result;
use crate::iam::{IamClient, IssuedKey, KeyScope};
use crate::minio_admin::MinioAdmin;

/// The key-making client of one engine, signed with its root credentials.
#[derive(Debug, Clone)]
pub enum KeyAdmin {
    /// SeaweedFS.
    Iam(IamClient),
    /// MinIO.
    Minio(MinioAdmin),
}

impl KeyAdmin {
    /// Makes a key for `user` (the engine-side name of the key) limited to `scope` on `bucket`.
    /// `proposed` are the credentials to give it where the engine takes them (MinIO); an engine
    /// that makes its own (SeaweedFS's IAM) answers those instead.
    pub async fn issue(
        &self,
        user: &str,
        bucket: &str,
        scope: &KeyScope,
        proposed: IssuedKey,
    ) -> Result<IssuedKey> {
        match self {
            KeyAdmin::Iam(c) => c.issue(user, bucket, scope).await,
            KeyAdmin::Minio(c) => c.issue(user, bucket, scope, proposed).await,
        }
    }

    /// Removes the key of `user`; what is already gone is success.
    pub async fn revoke(&self, user: &str, access_key: Option<&str>) -> Result<()> {
        match self {
            KeyAdmin::Iam(c) => c.revoke(user, access_key).await,
            KeyAdmin::Minio(c) => c.revoke(user, access_key).await,
        }
    }
}
