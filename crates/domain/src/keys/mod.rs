//! Scoped access keys of managed buckets: `read`, `write` or `read-write`, optionally under a
//! key prefix and until an expiry. The engine enforces them (SeaweedFS makes each one an identity
//! with actions, made by `weed shell` inside the container; MinIO a user with a canned policy
//! through its admin API; see `engine`), so a client holding a key never needs the bucket's root
//! credentials and the daemon is not in its path. Identities the daemon did not make (made with
//! the root credentials, or by a key for itself) are removed when a team member leaves or is
//! demoted and after a restore (`sweep_foreign`).
//!
//! Guarantees: the secret is encrypted at rest and answered once. A revoked key is removed from
//! the engine at once when the bucket runs, otherwise as soon as it runs again; an expired key
//! is revoked by the periodic refresh (every 1–2 s), so it is refused within 5 s of expiring
//! while the daemon runs. Keys live in the engine's data (on the bucket's volume), so they
//! survive stop/start, root-credential rotation and container replacement.

use std::time::Duration;

use kalpana_s3_ops::scope::KeyScope;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::context::{Core, Locked};
use crate::error::{Error, Result};
use crate::events::{BucketEvent, EventKind};
use crate::model::{new_id, now, BucketRecord, BucketStatus, KeyAccess, PendingRevoke, ScopedKey};

mod engine;

use engine::EngineKeys;

/// Most keys one bucket holds.
pub const MAX_KEYS: usize = 100;
/// Longest lifetime a key may be given (a year).
pub const MAX_EXPIRY: Duration = Duration::from_secs(365 * 24 * 3600);

/// A key to make.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The user who asks for it (and sees its secret).
    pub created_by: String,
    /// Free text.
    pub name: String,
    /// What it may do.
    pub access: KeyAccess,
    /// Only keys under this prefix.
    pub prefix: Option<String>,
    /// Lifetime.
    pub expires_in: Option<Duration>,
}

fn scope(access: KeyAccess, prefix: Option<String>) -> KeyScope {
    KeyScope {
        read: matches!(access, KeyAccess::Read | KeyAccess::ReadWrite),
        write: matches!(access, KeyAccess::Write | KeyAccess::ReadWrite),
        prefix,
    }
}

/// Checks a request before anything is made.
pub fn validate(req: &NewKey) -> Result<()> {
    if req.name.trim().is_empty() || req.name.len() > 64 || req.name.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "name must be 1-64 characters without control characters".into(),
        ));
    }
    if let Some(p) = &req.prefix {
        if p.is_empty()
            || p.len() > 512
            || p.starts_with('/')
            || p.chars()
                .any(|c| c.is_control() || c == '*' || c == '?' || c == '\\')
        {
            return Err(Error::Invalid(
                "prefix must be 1-512 bytes, not starting with `/`, without control characters, `*`, `?` or `\\`".into(),
            ));
        }
    }
    if let Some(d) = req.expires_in {
        if d.is_zero() || d > MAX_EXPIRY {
            return Err(Error::Invalid(format!(
                "expiresIn must be between 1 and {} seconds",
                MAX_EXPIRY.as_secs()
            )));
        }
    }
    Ok(())
}

/// Refuses keys on a bucket the daemon does not run (external buckets have their provider's).
fn require_keys(b: &BucketRecord) -> Result<()> {
    crate::kinds::require_managed(b, "scoped keys")
}

/// Makes a key on a RUNNING bucket; returns it and its secret (shown once). Nothing is left in
/// the engine when the record cannot be written.
pub async fn create(state: &Core, id: &str, req: NewKey) -> Result<(ScopedKey, String)> {
    validate(&req)?;
    let (mut b, _awake) = crate::sleep::lock_awake(state, id).await?;
    require_keys(&b)?;
    if let Some(p) = &req.prefix {
        engine::check_prefix(state, &b, p)?;
    }
    if b.status != BucketStatus::Running {
        return Err(Error::Conflict(format!(
            "bucket {} is not running: start it to make keys",
            b.name
        )));
    }
    if b.keys.len() >= MAX_KEYS {
        return Err(Error::LimitReached(format!(
            "bucket {} already holds {MAX_KEYS} keys: revoke one first",
            b.name
        )));
    }
    let key_id = new_id();
    let user = format!("kb-{key_id}");
    let admin = EngineKeys::of(state, &b)?;
    let issued = admin
        .issue(&user, &b.name, &scope(req.access, req.prefix.clone()))
        .await?;
    let expires_at = req.expires_in.map(|d| {
        (OffsetDateTime::now_utc() + d)
            .format(&Rfc3339)
            .unwrap_or_else(|_| now())
    });
    let key = ScopedKey {
        id: key_id,
        name: req.name,
        access_key: issued.access_key.clone(),
        secret_key_enc: state.master_key.encrypt(&issued.secret_key)?,
        access: req.access,
        prefix: req.prefix,
        expires_at,
        created_at: now(),
        created_by: Some(req.created_by),
        rotated: None,
    };
    b.keys.push(key.clone());
    if let Err(e) = b.save().await {
        let _ = admin.revoke(&user, Some(&issued.access_key)).await;
        return Err(e);
    }
    tracing::info!(bucket = %b.id, key = %key.id, access_key = %key.access_key, access = ?key.access,
        prefix = ?key.prefix, expires_at = ?key.expires_at, "scoped key made");
    state.events.publish(BucketEvent::of(
        EventKind::Key,
        &b,
        Some(format!("key {} ({}) made", key.name, key.access_key)),
    ));
    Ok((key, issued.secret_key))
}

/// Revokes a key: removed from the engine at once when the bucket runs, otherwise when it runs
/// again (the record remembers it).
pub async fn revoke(state: &Core, id: &str, key_id: &str) -> Result<()> {
    let (mut b, _awake) = crate::sleep::lock_awake(state, id).await?;
    let Some(pos) = b.keys.iter().position(|k| k.id == key_id) else {
        return Err(Error::NotFound("key"));
    };
    let key = b.keys.remove(pos);
    b.revoke_pending.push(PendingRevoke {
        user: key.engine_user(),
        access_key: key.access_key.clone(),
    });
    b.save().await?;
    tracing::info!(bucket = %b.id, key = %key.id, access_key = %key.access_key, "scoped key revoked");
    state.events.publish(BucketEvent::of(
        EventKind::Key,
        &b,
        Some(format!("key {} ({}) revoked", key.name, key.access_key)),
    ));
    if b.status == BucketStatus::Running {
        remove_pending(state, &mut b).await?;
    }
    Ok(())
}

/// Removes revoked keys from the engine of a running bucket. Caller holds the bucket's lock.
pub(crate) async fn remove_pending(state: &Core, b: &mut Locked) -> Result<()> {
    if b.revoke_pending.is_empty() {
        return Ok(());
    }
    let admin = EngineKeys::of(state, b)?;
    let mut left = Vec::new();
    for p in std::mem::take(&mut b.revoke_pending) {
        if let Err(e) = admin.revoke(&p.user, Some(&p.access_key)).await {
            tracing::warn!(bucket = %b.id, access_key = %p.access_key, error = %e, "removing a revoked key from the engine failed; will retry");
            left.push(p);
        }
    }
    b.revoke_pending = left;
    b.write().await
}

/// Replaces the secret of key `key_id` of RUNNING bucket `id`: the engine gets a new access key
/// for the key's user and forgets the old one at once. Returns the key and its new secret
/// (shown once). `reason` is recorded on the key and told in the event.
pub async fn rotate(
    state: &Core,
    id: &str,
    key_id: &str,
    reason: &str,
) -> Result<(ScopedKey, String)> {
    let (mut b, _awake) = crate::sleep::lock_awake(state, id).await?;
    require_keys(&b)?;
    if b.status != BucketStatus::Running {
        return Err(Error::Conflict(format!(
            "bucket {} is not running: start it to rotate its keys",
            b.name
        )));
    }
    let key = rotate_locked(state, &mut b, key_id, reason).await?;
    b.write().await?;
    Ok(key)
}

/// [`rotate`] with the bucket's lock held and its record loaded; the caller writes the record.
async fn rotate_locked(
    state: &Core,
    b: &mut BucketRecord,
    key_id: &str,
    reason: &str,
) -> Result<(ScopedKey, String)> {
    let admin = EngineKeys::of(state, b)?;
    let key = b
        .keys
        .iter_mut()
        .find(|k| k.id == key_id)
        .ok_or(Error::NotFound("key"))?;
    let issued = admin.rotate(&key.engine_user(), &key.access_key).await?;
    let old = std::mem::replace(&mut key.access_key, issued.access_key.clone());
    key.secret_key_enc = state.master_key.encrypt(&issued.secret_key)?;
    key.rotated = Some(crate::model::KeyRotation {
        at: now(),
        reason: reason.to_string(),
    });
    let key = key.clone();
    b.updated_at = now();
    tracing::info!(bucket = %b.id, key = %key.id, old_access_key = %old, access_key = %key.access_key, reason, "scoped key rotated");
    state.events.publish(BucketEvent::of(
        EventKind::Key,
        b,
        Some(format!(
            "key {} rotated ({old} → {}): {reason}",
            key.name, key.access_key
        )),
    ));
    Ok((key, issued.secret_key))
}

/// Brings a running bucket's engine identities in line with its record: every key of the
/// record is there with its current access key and secret (put back when the engine lost it, as
/// a restore of older data does: the daemon keeps every key's secret, encrypted), and every
/// identity the daemon did not make is removed: users that are not one of the bucket's keys,
/// and access keys of its keys' users other than the one recorded (an old one, or one a key
/// minted itself). The bucket's root credentials are never touched. Returns what was removed,
/// in words. Caller holds the bucket's lock.
pub(crate) async fn sweep_foreign(state: &Core, b: &BucketRecord) -> Result<Vec<String>> {
    let admin = EngineKeys::of(state, b)?;
    let identities = admin.identities().await?;
    for k in &b.keys {
        let present = identities
            .iter()
            .any(|i| i.user == k.engine_user() && i.access_keys.contains(&k.access_key));
        if !present {
            let secret = state.master_key.decrypt(&k.secret_key_enc)?;
            admin
                .reinstate(
                    &k.engine_user(),
                    &b.name,
                    &scope(k.access, k.prefix.clone()),
                    &k.access_key,
                    &secret,
                )
                .await?;
            tracing::info!(bucket = %b.id, key = %k.id, access_key = %k.access_key, "a key of the record the engine did not hold was put back");
        }
    }
    let mut removed = Vec::new();
    for identity in identities {
        if identity.access_keys.contains(&b.access_key) {
            continue;
        }
        match b.keys.iter().find(|k| k.engine_user() == identity.user) {
            Some(known) => {
                for extra in identity
                    .access_keys
                    .iter()
                    .filter(|k| **k != known.access_key)
                {
                    admin.delete_access_key(&identity.user, extra).await?;
                    removed.push(format!("access key {extra} of key {}", known.name));
                }
            }
            None => {
                admin.remove_identity(&identity).await?;
                removed.push(format!(
                    "engine user {} ({})",
                    identity.user,
                    identity.access_keys.join(", ")
                ));
            }
        }
    }
    if !removed.is_empty() {
        tracing::warn!(bucket = %b.id, removed = ?removed, "identities the daemon did not make were removed from the engine");
        state.events.publish(BucketEvent::of(
            EventKind::Key,
            b,
            Some(format!(
                "identities the daemon did not make were removed: {}",
                removed.join("; ")
            )),
        ));
    }
    Ok(removed)
}

/// Removes the identities the daemon did not make from bucket `b`'s engine now if it runs, or
/// records that they are to be removed when it runs again. Caller holds the bucket's lock.
pub(crate) async fn sweep_locked(state: &Core, b: &mut Locked) -> Result<()> {
    if b.status == BucketStatus::Running {
        match sweep_foreign(state, b).await {
            Ok(_) if !b.sweep_identities => return Ok(()),
            Ok(_) => b.sweep_identities = false,
            Err(e) => {
                tracing::warn!(bucket = %b.id, error = %e, "removing identities the daemon did not make failed; retried by the key refresh");
                b.sweep_identities = true;
            }
        }
    } else {
        b.sweep_identities = true;
    }
    b.save().await
}

/// Whether a key has expired at `now`.
pub fn expired(k: &ScopedKey, now: OffsetDateTime) -> bool {
    k.expires_at
        .as_deref()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .is_some_and(|t| t <= now)
}

/// Whether a bucket's record shows key work for the periodic refresh.
pub fn due(b: &BucketRecord) -> bool {
    b.status == BucketStatus::Running
        && (!b.revoke_pending.is_empty()
            || b.sweep_identities
            || b.rotate_leaked
            || b.keys.iter().any(|k| expired(k, OffsetDateTime::now_utc())))
}

/// Revokes expired keys and removes revoked ones from the engine of a running bucket.
pub async fn enforce(state: &Core, id: &str) -> Result<()> {
    // An expired key must not be served by the next wake: the bucket wakes to lose it.
    let _awake = match state.store.get_bucket(id).await? {
        Some(b) => crate::sleep::awake_for_operation(state, &b).await?,
        None => return Ok(()),
    };
    let Some(mut b) = state.lock_bucket_if(id).await? else {
        return Ok(());
    };
    if b.status != BucketStatus::Running {
        return Ok(());
    }
    let at = OffsetDateTime::now_utc();
    let (gone, kept): (Vec<ScopedKey>, Vec<ScopedKey>) =
        b.keys.drain(..).partition(|k| expired(k, at));
    b.keys = kept;
    for k in &gone {
        tracing::info!(bucket = %b.id, key = %k.id, access_key = %k.access_key, "scoped key expired; revoking it");
        state.events.publish(BucketEvent::of(
            EventKind::Key,
            &b,
            Some(format!("key {} ({}) expired", k.name, k.access_key)),
        ));
        b.revoke_pending.push(PendingRevoke {
            user: k.engine_user(),
            access_key: k.access_key.clone(),
        });
    }
    if !gone.is_empty() {
        b.write().await?;
    }
    remove_pending(state, &mut b).await?;
    if b.rotate_leaked {
        rotate_leaked(state, &mut b).await?;
    }
    if b.sweep_identities {
        sweep_foreign(state, &b).await?;
        b.sweep_identities = false;
        b.save().await?;
    }
    Ok(())
}

/// Why the secrets of a bucket with archives of format 1 are replaced.
pub const LEAKED: &str = "snapshot archives taken before archives were sealed hold the engine's secrets in clear: the secret was replaced; get a working one with POST /api/buckets/{id}/keys/{keyId}/rotate";

/// Replaces what a plain archive of the bucket gave away: every scoped key's secret (the engine
/// forgets the old ones at once) and, through a container replacement, the engine's internal CA
/// and node certificate (the generation is bumped: reconcile replaces the container, which gets
/// fresh certificates). The engine's JWT keys and the root secret are not on the volume and were
/// not in any archive. Caller holds the bucket's lock; the bucket runs.
async fn rotate_leaked(state: &Core, b: &mut Locked) -> Result<()> {
    let ids: Vec<String> = b.keys.iter().map(|k| k.id.clone()).collect();
    for id in &ids {
        rotate_locked(state, b, id, LEAKED).await?;
        // Written after each key: a failure part-way leaves the record true to the engine.
        b.write().await?;
    }
    b.rotate_leaked = false;
    b.leaked_rotated_at = Some(now());
    b.generation += 1;
    b.save().await?;
    tracing::warn!(bucket = %b.id, keys = ids.len(), generation = b.generation,
        "secrets given away by plain snapshot archives replaced; the container is replaced for new internal certificates");
    state.events.publish(BucketEvent::of(
        EventKind::Credentials,
        b,
        Some(format!(
            "plain snapshot archives held this bucket's engine secrets: {} scoped key secret(s) replaced, internal certificates renewed",
            ids.len()
        )),
    ));
    state.reconciler.request(&b.id);
    Ok(())
}

/// Asks for the engine identities the daemon did not make to be removed from bucket `id`: at
/// once when it runs (and Docker answers), otherwise when it runs again. Caller must not hold
/// the bucket's lock.
pub async fn sweep_soon(state: &Core, id: &str) -> Result<()> {
    {
        let Some(mut b) = state.lock_bucket_if(id).await? else {
            return Ok(());
        };
        if b.kind() != crate::model::BucketKind::Managed || b.deleting {
            return Ok(());
        }
        b.sweep_identities = true;
        b.save().await?;
    }
    enforce(state, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> NewKey {
        NewKey {
            created_by: "u1".into(),
            name: "agent".into(),
            access: KeyAccess::Read,
            prefix: None,
            expires_in: None,
        }
    }

    #[test]
    fn requests_are_checked() {
        assert!(validate(&req()).is_ok());
        for bad in [
            NewKey {
                name: " ".into(),
                ..req()
            },
            NewKey {
                prefix: Some("/abs".into()),
                ..req()
            },
            NewKey {
                prefix: Some("a*".into()),
                ..req()
            },
            NewKey {
                expires_in: Some(Duration::ZERO),
                ..req()
            },
            NewKey {
                expires_in: Some(MAX_EXPIRY + Duration::from_secs(1)),
                ..req()
            },
        ] {
            assert!(matches!(validate(&bad), Err(Error::Invalid(_))), "{bad:?}");
        }
    }

    #[test]
    fn expiry_is_read_from_the_record() {
        let key = |at: Option<&str>| ScopedKey {
            id: "k".into(),
            name: "n".into(),
            access_key: "AK".into(),
            secret_key_enc: "x".into(),
            access: KeyAccess::Read,
            prefix: None,
            expires_at: at.map(str::to_string),
            created_at: now(),
            created_by: None,
            rotated: None,
        };
        let t = OffsetDateTime::parse("2026-01-01T00:00:00Z", &Rfc3339).expect("time");
        assert!(expired(&key(Some("2025-12-31T23:59:59Z")), t));
        assert!(!expired(&key(Some("2026-01-01T00:00:01Z")), t));
        assert!(!expired(&key(None), t));
    }

    #[test]
    fn access_maps_to_the_engine_scope() {
        assert_eq!(
            scope(KeyAccess::ReadWrite, Some("p/".into())),
            KeyScope {
                read: true,
                write: true,
                prefix: Some("p/".into())
            }
        );
        assert!(!scope(KeyAccess::Write, None).read);
        assert!(!scope(KeyAccess::Read, None).write);
    }
}
