//! Bucket settings applied inside the S3 server: versioning, anonymous read, default encryption.

use aws_sdk_s3::types::{
    BucketVersioningStatus, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};

use crate::client::BucketClient;
use crate::error::{Error, Result};

impl BucketClient {
    /// Enables versioning, or suspends it (S3 cannot turn it off once enabled).
    pub async fn set_versioning(&self, enabled: bool) -> Result<()> {
        let status = if enabled {
            BucketVersioningStatus::Enabled
        } else {
            BucketVersioningStatus::Suspended
        };
        self.client
            .put_bucket_versioning()
            .bucket(&self.bucket)
            .versioning_configuration(VersioningConfiguration::builder().status(status).build())
            .send()
            .await
            .map_err(|e| Error::from_sdk("PutBucketVersioning", &self.endpoint, e))?;
        Ok(())
    }

    /// Lets anonymous clients GET objects (a bucket policy), or removes that policy.
    pub async fn set_public_read(&self, public: bool) -> Result<()> {
        if public {
            self.client
                .put_bucket_policy()
                .bucket(&self.bucket)
                .policy(public_read_policy(&self.bucket))
                .send()
                .await
                .map_err(|e| Error::from_sdk("PutBucketPolicy", &self.endpoint, e))?;
            return Ok(());
        }
        let deleted = self
            .client
            .delete_bucket_policy()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| Error::from_sdk("DeleteBucketPolicy", &self.endpoint, e));
        absent_is_fine(deleted)
    }

    /// Sets default server-side encryption (SSE-S3, AES-256) or removes it.
    pub async fn set_default_encryption(&self, on: bool) -> Result<()> {
        if on {
            let rule = ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(
                    ServerSideEncryptionByDefault::builder()
                        .sse_algorithm(ServerSideEncryption::Aes256)
                        .build()
                        .map_err(|e| Error::Build(e.to_string()))?,
                )
                .build();
            let conf = ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .map_err(|e| Error::Build(e.to_string()))?;
            self.client
                .put_bucket_encryption()
                .bucket(&self.bucket)
                .server_side_encryption_configuration(conf)
                .send()
                .await
                .map_err(|e| Error::from_sdk("PutBucketEncryption", &self.endpoint, e))?;
            return Ok(());
        }
        let deleted = self
            .client
            .delete_bucket_encryption()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| Error::from_sdk("DeleteBucketEncryption", &self.endpoint, e));
        absent_is_fine(deleted)
    }
}

/// Bucket settings as the S3 server holds them now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObservedSettings {
    /// Versioning is enabled (suspended or never enabled: false).
    pub versioning: bool,
    /// A bucket policy is set.
    pub public_read: bool,
    /// Default encryption is set.
    pub encryption: bool,
}

impl BucketClient {
    /// Reads versioning, policy and default encryption back from the S3 server (three requests).
    pub async fn observed_settings(&self) -> Result<ObservedSettings> {
        let versioning = self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| Error::from_sdk("GetBucketVersioning", &self.endpoint, e))?
            .status()
            .is_some_and(|s| *s == BucketVersioningStatus::Enabled);
        let policy = self
            .client
            .get_bucket_policy()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| Error::from_sdk("GetBucketPolicy", &self.endpoint, e));
        let public_read = match policy {
            Ok(p) => p.policy().is_some_and(|p| !p.trim().is_empty()),
            Err(Error::S3 { status: 404, .. }) => false,
            Err(e) => return Err(e),
        };
        let encryption = match self
            .client
            .get_bucket_encryption()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| Error::from_sdk("GetBucketEncryption", &self.endpoint, e))
        {
            Ok(e) => e
                .server_side_encryption_configuration()
                .is_some_and(|c| !c.rules().is_empty()),
            Err(Error::S3 { status: 404, .. }) => false,
            Err(e) => return Err(e),
        };
        Ok(ObservedSettings {
            versioning,
            public_read,
            encryption,
        })
    }
}

/// A delete of something that was not there (404) leaves what we wanted.
fn absent_is_fine<T>(result: Result<T>) -> Result<()> {
    match result {
        Ok(_) | Err(Error::S3 { status: 404, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The policy that lets anyone GET the bucket's objects (and nothing else).
pub fn public_read_policy(bucket: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "KalpanaPublicRead",
            "Effect": "Allow",
            "Principal": "*",
            "Action": ["s3:GetObject"],
            "Resource": [format!("arn:aws:s3:::{bucket}/*")]
        }]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_policy_grants_only_get_object_on_this_bucket() {
        let p: serde_json::Value =
            serde_json::from_str(&public_read_policy("photos")).expect("json");
        let st = &p["Statement"][0];
        assert_eq!(st["Principal"], "*");
        assert_eq!(st["Action"], serde_json::json!(["s3:GetObject"]));
        assert_eq!(st["Resource"], serde_json::json!(["arn:aws:s3:::photos/*"]));
    }
}
