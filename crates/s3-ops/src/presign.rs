//! Presigned URLs: requests anyone can make without credentials until they expire.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;

use crate::client::BucketClient;
use crate::error::{Error, Result};

/// A presigned request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    /// The URL, for the host the client was built with.
    pub url: String,
    /// HTTP method.
    pub method: String,
    /// Headers the caller must send as they are, because they are signed.
    pub headers: Vec<(String, String)>,
}

fn config(expires: Duration) -> Result<PresigningConfig> {
    PresigningConfig::expires_in(expires).map_err(|e| Error::Presign(e.to_string()))
}

impl BucketClient {
    /// A presigned GET of `key`, valid for `expires`.
    pub async fn presign_get(&self, key: &str, expires: Duration) -> Result<Presigned> {
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config(expires)?)
            .await
            .map_err(|e| Error::Presign(e.to_string()))?;
        Ok(Presigned {
            url: req.uri().to_string(),
            method: req.method().to_string(),
            headers: Vec::new(),
        })
    }

    /// A presigned PUT of `key`, valid for `expires`; with a content type the upload must send it.
    pub async fn presign_put(
        &self,
        key: &str,
        expires: Duration,
        content_type: Option<&str>,
    ) -> Result<Presigned> {
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .set_content_type(content_type.map(String::from))
            .presigned(config(expires)?)
            .await
            .map_err(|e| Error::Presign(e.to_string()))?;
        Ok(Presigned {
            url: req.uri().to_string(),
            method: req.method().to_string(),
            headers: req
                .headers()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }
}
