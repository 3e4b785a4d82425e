//! One aws-sdk-s3 client per bucket endpoint.

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::Client;
use aws_smithy_types::timeout::TimeoutConfig;

use crate::error::{Error, Result};

/// Where and how to reach one bucket's S3 server. `Debug` leaves the secret out.
#[derive(Clone)]
pub struct Endpoint {
    /// Base URL, e.g. `http://127.0.0.1:40001`; never with an explicit default port, which
    /// breaks signatures.
    pub url: String,
    /// Region to sign for.
    pub region: String,
    /// Access key.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

impl Endpoint {
    /// The endpoint's static credentials.
    pub(crate) fn credentials(&self) -> Credentials {
        Credentials::new(&self.access_key, &self.secret_key, None, None, "kalpana")
    }
}

/// An S3 client bound to one bucket on one server.
#[derive(Debug, Clone)]
pub struct BucketClient {
    pub(crate) client: Client,
    pub(crate) endpoint: String,
    pub(crate) bucket: String,
}

impl BucketClient {
    /// A client for `bucket` at `endpoint`: path-style, static credentials, checksums only where
    /// the operation requires them (other S3 servers reject the SDK's default trailers).
    pub fn new(endpoint: &Endpoint, bucket: &str) -> Self {
        let creds = endpoint.credentials();
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&endpoint.url)
            .region(Region::new(endpoint.region.clone()))
            .credentials_provider(creds)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .build(),
            )
            .build();
        BucketClient {
            client: Client::from_conf(conf),
            endpoint: endpoint.url.clone(),
            bucket: bucket.to_string(),
        }
    }

    /// The bucket this client works on.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket; one that already exists and is ours is success, so a retried
    /// provisioning step is harmless.
    pub async fn create_bucket(&self) -> Result<()> {
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = Error::from_sdk("CreateBucket", &self.endpoint, e);
                match err.code() {
                    Some("BucketAlreadyOwnedByYou") | Some("BucketAlreadyExists") => Ok(()),
                    _ => Err(err),
                }
            }
        }
    }

    /// Whether the bucket exists and our credentials can see it.
    pub async fn bucket_exists(&self) -> Result<bool> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let err = Error::from_sdk("HeadBucket", &self.endpoint, e);
                match err {
                    Error::S3 { status: 404, .. } => Ok(false),
                    other => Err(other),
                }
            }
        }
    }
}
