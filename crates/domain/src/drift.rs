//! Settings drift: versioning, public read and default encryption changed directly over S3 (by
//! anyone holding the bucket's keys) are put back to what the record says. The record is the
//! one place a bucket's settings are decided (`PATCH /api/buckets/{id}`); every correction is an
//! event and a log line saying what was found.

use kalpana_s3_ops::settings::ObservedSettings;

use crate::context::Core;
use crate::error::Result;
use crate::events::{BucketEvent, EventKind};
use crate::lifecycle::{self, Settings};
use crate::model::{BucketRecord, BucketStatus};

/// The settings of `b` that differ on the server, as corrections to write.
fn corrections(b: &BucketRecord, seen: ObservedSettings) -> (Settings, Vec<String>) {
    let mut fix = Settings::default();
    let mut what = Vec::new();
    let word = |on: bool| if on { "on" } else { "off" };
    for (setting, found, wanted, slot) in [
        (
            "versioning",
            seen.versioning,
            b.versioning,
            &mut fix.versioning,
        ),
        (
            "public access",
            seen.public_read,
            b.public_access,
            &mut fix.public_access,
        ),
        (
            "default encryption",
            seen.encryption,
            b.encryption,
            &mut fix.encryption,
        ),
    ] {
        if found != wanted {
            *slot = Some(wanted);
            what.push(format!(
                "{setting} (found {}, wanted {})",
                word(found),
                word(wanted)
            ));
        }
    }
    (fix, what)
}

/// Reads a running bucket's settings from its server and re-applies the record's where they
/// differ. Returns whether anything was corrected. Holds the bucket's lock and reads the record
/// afresh, so a `PATCH` in flight (which writes the server first) is never undone.
pub async fn enforce(state: &Core, id: &str) -> Result<bool> {
    let Some(b) = state.lock_bucket_if(id).await? else {
        return Ok(false);
    };
    // Nothing changes a sleeping bucket's settings: a client would have woken it.
    if b.status != BucketStatus::Running || b.deleting || state.sleep.sleeping(id) {
        return Ok(false);
    }
    let b = &b;
    let client = crate::clients::s3(state, b)?;
    let seen = client.observed_settings().await?;
    let (fix, what) = corrections(b, seen);
    if what.is_empty() {
        return Ok(false);
    }
    lifecycle::apply_settings(&client, fix).await?;
    let message = format!(
        "settings changed directly over S3 were put back: {}",
        what.join(", ")
    );
    tracing::warn!(bucket = %b.id, "{message}");
    state
        .events
        .publish(BucketEvent::of(EventKind::Settings, b, Some(message)));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_differs_is_corrected_and_named() {
        let mut b = crate::store::suite::bucket("u1", "photos", &[40001]);
        b.versioning = true;
        let seen = ObservedSettings {
            versioning: true,
            public_read: true,
            encryption: false,
        };
        let (fix, what) = corrections(&b, seen);
        assert_eq!(fix.versioning, None);
        assert_eq!(fix.public_access, Some(false));
        assert_eq!(fix.encryption, None);
        assert_eq!(
            what,
            vec!["public access (found on, wanted off)".to_string()]
        );
        b.public_access = true;
        assert!(corrections(&b, seen).1.is_empty());
    }
}
