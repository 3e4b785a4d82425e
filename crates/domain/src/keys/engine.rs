//! The engine side of scoped keys: whichever way a bucket's engine makes them (SeaweedFS: `weed
//! shell` inside the container, its IAM API being off; MinIO: its admin API with the root
//! credentials), behind one set of operations.

use kalpana_manager_core::weed_shell::{self, WeedShell};
use kalpana_manager_core::KeyApi;
use kalpana_s3_ops::minio_admin::MinioAdmin;
use kalpana_s3_ops::scope::{EngineIdentity, IssuedKey, KeyScope};

use crate::context::Core;
use crate::error::{Error, Result};
use crate::lifecycle;
use crate::model::BucketRecord;

/// The key-making side of one running bucket's engine.
pub(crate) enum EngineKeys {
    /// SeaweedFS.
    Shell(WeedShell),
    /// MinIO.
    Minio(MinioAdmin),
}

/// Credentials of the daemon's making, for engines that take them.
fn fresh() -> IssuedKey {
    IssuedKey {
        access_key: crate::secrets::new_access_key(),
        secret_key: crate::secrets::new_secret_key(),
    }
}

/// Refuses a prefix the bucket's engine cannot scope a key to (400).
pub(crate) fn check_prefix(state: &Core, b: &BucketRecord, prefix: &str) -> Result<()> {
    match state.config.profile(b.engine).key_api {
        KeyApi::WeedShell => weed_shell::check_prefix(prefix).map_err(Error::Invalid),
        KeyApi::MinioAdmin => Ok(()),
    }
}

impl EngineKeys {
    /// The key side of bucket `b`'s engine.
    pub(crate) fn of(state: &Core, b: &BucketRecord) -> Result<Self> {
        let profile = state.config.profile(b.engine);
        Ok(match profile.key_api {
            KeyApi::WeedShell => {
                let binary = profile
                    .entrypoint
                    .as_ref()
                    .and_then(|e| e.first())
                    .map_or("weed", String::as_str);
                EngineKeys::Shell(WeedShell::new(state.runtime.clone(), &b.id, binary))
            }
            KeyApi::MinioAdmin => {
                let origin = lifecycle::internal_origin(state, b)?;
                EngineKeys::Minio(MinioAdmin::new(&lifecycle::endpoint_at(state, b, origin)?))
            }
        })
    }

    /// Makes a key for `user` (the engine-side name of the key) limited to `scope` on `bucket`.
    pub(crate) async fn issue(
        &self,
        user: &str,
        bucket: &str,
        scope: &KeyScope,
    ) -> Result<IssuedKey> {
        let issued = fresh();
        match self {
            EngineKeys::Shell(sh) => {
                let actions =
                    weed_shell::actions(bucket, scope.read, scope.write, scope.prefix.as_deref());
                sh.create(user, &issued.access_key, &issued.secret_key, &actions)
                    .await?;
                Ok(issued)
            }
            EngineKeys::Minio(m) => Ok(m.issue(user, bucket, scope, issued).await?),
        }
    }

    /// Makes sure `user` exists with the access key `access_key` and secret `secret_key` limited
    /// to `scope` on `bucket` (a key of the record that the engine lost, e.g. to a restore of
    /// older data); what is there already is kept.
    pub(crate) async fn reinstate(
        &self,
        user: &str,
        bucket: &str,
        scope: &KeyScope,
        access_key: &str,
        secret_key: &str,
    ) -> Result<()> {
        let given = IssuedKey {
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
        };
        match self {
            EngineKeys::Shell(sh) => {
                let actions =
                    weed_shell::actions(bucket, scope.read, scope.write, scope.prefix.as_deref());
                Ok(sh.create(user, access_key, secret_key, &actions).await?)
            }
            EngineKeys::Minio(m) => m
                .issue(user, bucket, scope, given)
                .await
                .map(drop)
                .map_err(Into::into),
        }
    }

    /// Removes the key of `user`; what is already gone is success.
    pub(crate) async fn revoke(&self, user: &str, access_key: Option<&str>) -> Result<()> {
        match self {
            EngineKeys::Shell(sh) => Ok(sh.delete_user(user).await?),
            EngineKeys::Minio(m) => Ok(m.revoke(user, access_key).await?),
        }
    }

    /// Replaces the access key `old` of `user`: the old one is refused from then on.
    pub(crate) async fn rotate(&self, user: &str, old: &str) -> Result<IssuedKey> {
        let issued = fresh();
        match self {
            EngineKeys::Shell(sh) => {
                sh.rotate(user, old, &issued.access_key, &issued.secret_key)
                    .await?;
                Ok(issued)
            }
            EngineKeys::Minio(m) => Ok(m.rotate(user, old, issued).await?),
        }
    }

    /// Every identity the engine keeps besides its root credentials.
    pub(crate) async fn identities(&self) -> Result<Vec<EngineIdentity>> {
        match self {
            EngineKeys::Shell(sh) => Ok(sh
                .identities()
                .await?
                .into_iter()
                .map(|i| EngineIdentity {
                    user: i.user,
                    access_keys: i.access_keys,
                })
                .collect()),
            EngineKeys::Minio(m) => Ok(m.identities().await?),
        }
    }

    /// Removes one access key of `user` (on MinIO, where a user is its key, the user).
    pub(crate) async fn delete_access_key(&self, user: &str, access_key: &str) -> Result<()> {
        match self {
            EngineKeys::Shell(sh) => Ok(sh.delete_access_key(user, access_key).await?),
            EngineKeys::Minio(m) => Ok(m.remove_user(access_key).await?),
        }
    }

    /// Removes `identity` and everything it holds.
    pub(crate) async fn remove_identity(&self, identity: &EngineIdentity) -> Result<()> {
        match self {
            EngineKeys::Shell(sh) => Ok(sh.delete_user(&identity.user).await?),
            EngineKeys::Minio(m) => {
                for k in &identity.access_keys {
                    m.remove_user(k).await?;
                }
                Ok(())
            }
        }
    }
}
