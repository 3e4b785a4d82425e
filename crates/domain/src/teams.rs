//! What a team member loses when they leave the team or are demoted: every credential of the
//! team's buckets they could have made or seen.
//!
//! Guarantees, for each managed bucket of the team: the root secret is rotated (the member may
//! have seen it when they made the bucket or rotated it); the scoped keys they made are revoked
//! and the containers they attached are detached (keys made before the daemon kept who made a
//! key are revoked too when the member could manage the bucket: they may have made them); and
//! every engine identity the daemon did not make itself (an IAM user made with the root secret,
//! a key a scoped key minted for itself) is removed from the engine, at once when the bucket
//! runs, otherwise as soon as it runs again. What could not be done now is named in the answer.

use serde::Serialize;

use crate::context::Core;
use crate::error::{Error, Result};
use crate::model::{BucketKind, Team};
use crate::store::BucketQuery;

/// A bucket whose root credentials were rotated because a member left its team.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotatedBucket {
    /// The bucket.
    pub bucket_id: String,
    /// Its name.
    pub name: String,
    /// The new secret key (shown only here).
    pub secret_key: String,
}

/// What ending a member's credentials did.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsEnded {
    /// Team buckets whose root secret was rotated, so the member's copy of it (and any presigned
    /// URL made with it) stops working; the new secrets are shown only here.
    pub rotated: Vec<RotatedBucket>,
    /// Team buckets that could not be rotated now (still being created, or Docker away), with
    /// why; rotate them with `POST /api/buckets/{id}/credentials/rotate`.
    pub not_rotated: Vec<String>,
    /// Scoped keys revoked (`bucket/key name (access key)`), the keys of detached containers
    /// among them.
    pub revoked_keys: Vec<String>,
}

/// Ends every credential of `team`'s buckets that `user_id` could have made or seen. `could_manage`
/// says whether their role let them manage the buckets (make keys) before the change.
pub async fn end_credentials(
    state: &Core,
    team: &Team,
    user_id: &str,
    could_manage: bool,
) -> Result<CredentialsEnded> {
    let buckets = state
        .store
        .list_buckets(&BucketQuery {
            team_id: Some(team.id.clone()),
            all: true,
            limit: usize::MAX,
            ..Default::default()
        })
        .await?;
    let mut ended = CredentialsEnded::default();
    for b in buckets.into_iter().filter(|b| !b.deleting) {
        if b.kind() == BucketKind::Managed {
            // Attachments first: a detach revokes the attachment's key as well.
            for a in b
                .attachments
                .iter()
                .filter(|a| a.created_by.as_deref().is_none_or(|u| u == user_id))
                .filter(|a| could_manage || a.created_by.is_some())
            {
                match crate::lifecycle::attachments::detach(state, &b.id, &a.id).await {
                    Ok(()) | Err(Error::NotFound(_)) => ended
                        .revoked_keys
                        .push(format!("{}/attachment {}", b.name, a.container_name)),
                    Err(e) => {
                        tracing::warn!(bucket = %b.id, attachment = %a.id, error = %e, "detaching a leaving member's container failed");
                    }
                }
            }
            for k in b.keys.iter().filter(|k| match &k.created_by {
                Some(by) => by == user_id,
                None => could_manage,
            }) {
                match crate::keys::revoke(state, &b.id, &k.id).await {
                    Ok(()) => ended
                        .revoked_keys
                        .push(format!("{}/{} ({})", b.name, k.name, k.access_key)),
                    Err(Error::NotFound(_)) => {}
                    Err(e) => {
                        tracing::warn!(bucket = %b.id, key = %k.id, error = %e, "revoking a leaving member's key failed");
                    }
                }
            }
        }
        // Identities the daemon did not make go first, before the rotation's container
        // replacement: they would work meanwhile.
        if b.kind() == BucketKind::Managed {
            if let Err(e) = crate::keys::sweep_soon(state, &b.id).await {
                // Recorded: the refresh sweeps once the engine answers.
                tracing::warn!(bucket = %b.id, error = %e, "removing identities the daemon did not make failed; retried when the bucket runs");
            }
        }
        match crate::lifecycle::rotate_credentials(state, &b.id).await {
            Ok((b, secret_key)) => ended.rotated.push(RotatedBucket {
                bucket_id: b.id,
                name: b.name,
                secret_key,
            }),
            Err(e) => {
                tracing::warn!(bucket = %b.id, error = %e, "rotation after a member left failed");
                ended
                    .not_rotated
                    .push(format!("{} ({}): {e}", b.name, b.id));
            }
        }
    }
    tracing::info!(team = %team.id, user = user_id, rotated = ended.rotated.len(),
        not_rotated = ended.not_rotated.len(), revoked = ended.revoked_keys.len(),
        "a member's credentials of the team's buckets were ended");
    Ok(ended)
}
