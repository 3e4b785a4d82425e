//! The bucket settings the record holds and the S3 server must carry: versioning, anonymous
//! read, default encryption.

use kalpana_s3_ops::BucketClient;

use crate::error::Result;
use crate::model::BucketRecord;

/// Which bucket settings to write to the S3 server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    /// Versioning on/off.
    pub versioning: Option<bool>,
    /// Anonymous read on/off.
    pub public_access: Option<bool>,
    /// Default encryption on/off.
    pub encryption: Option<bool>,
}

impl Settings {
    /// Every setting as the record wants it.
    pub fn all_of(b: &BucketRecord) -> Self {
        Settings {
            versioning: Some(b.versioning),
            public_access: Some(b.public_access),
            encryption: Some(b.encryption),
        }
    }

    /// Only the settings that differ from a new S3 bucket's defaults (all off).
    pub fn enabled_in(b: &BucketRecord) -> Self {
        Settings {
            versioning: b.versioning.then_some(true),
            public_access: b.public_access.then_some(true),
            encryption: b.encryption.then_some(true),
        }
    }
}

/// Writes bucket settings to the S3 server inside the container.
pub async fn apply_settings(client: &BucketClient, s: Settings) -> Result<()> {
    if let Some(v) = s.versioning {
        client.set_versioning(v).await?;
    }
    if let Some(p) = s.public_access {
        client.set_public_read(p).await?;
    }
    if let Some(e) = s.encryption {
        client.set_default_encryption(e).await?;
    }
    Ok(())
}
