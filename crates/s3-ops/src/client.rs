//! One aws-sdk-s3 client per bucket endpoint.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::Client;
use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns, ResolveDnsError};
use aws_smithy_types::timeout::TimeoutConfig;

use crate::error::{Error, NotAllowed, Result};

/// Where and how to reach one bucket's S3 server. `Debug` leaves the secret out.
#[derive(Clone)]
pub struct Endpoint {
    /// Base URL, e.g. `http://127.0.0.1:40001`; never with an explicit default port, which
    /// breaks signatures.
    pub url: String,
    /// Region to sign for.
    pub region: String,
    pub access_key: String,
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

/// Decides whether the daemon may connect to an address (the endpoint policy of external
/// buckets). Applied to every address a host name resolves to, at connect time, so a name that
/// resolves elsewhere later (DNS rebinding) is still checked.
pub type AddressFilter = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// How to reach a bucket on a service the daemon does not run.
#[derive(Clone)]
pub struct RemoteOptions {
    /// Path-style requests (`<endpoint>/<bucket>/<key>`) rather than virtual-hosted ones.
    pub path_style: bool,
    /// Addresses the client may connect to.
    pub allow: AddressFilter,
}

/// Resolves host names with the system resolver and keeps only the addresses the filter allows.
#[derive(Clone)]
struct FilteringResolver(AddressFilter);

impl std::fmt::Debug for FilteringResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FilteringResolver")
    }
}

impl ResolveDns for FilteringResolver {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        let allow = self.0.clone();
        let name = name.to_string();
        DnsFuture::new(async move {
            let found: Vec<IpAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map_err(ResolveDnsError::new)?
                .map(|a| a.ip())
                .collect();
            let allowed: Vec<IpAddr> = found.iter().copied().filter(|ip| allow(*ip)).collect();
            if allowed.is_empty() {
                return Err(ResolveDnsError::new(NotAllowed(name, found)));
            }
            Ok(allowed)
        })
    }
}

impl BucketClient {
    /// A client for `bucket` at `endpoint`: path-style, static credentials, checksums only where
    /// the operation requires them (other S3 servers reject the SDK's default trailers).
    pub fn new(endpoint: &Endpoint, bucket: &str) -> Self {
        Self::build(endpoint, bucket, true, None)
    }

    /// A client for a bucket on another service: addressing as asked, and connections only to
    /// addresses `options.allow` accepts (checked on each resolution, at connect time).
    pub fn remote(endpoint: &Endpoint, bucket: &str, options: RemoteOptions) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build_with_resolver(FilteringResolver(options.allow));
        Self::build(endpoint, bucket, options.path_style, Some(http))
    }

    fn build(
        endpoint: &Endpoint,
        bucket: &str,
        path_style: bool,
        http: Option<aws_smithy_runtime_api::client::http::SharedHttpClient>,
    ) -> Self {
        let creds = endpoint.credentials();
        let mut conf = aws_sdk_s3::Config::builder();
        if let Some(http) = http {
            conf = conf.http_client(http);
        }
        let conf = conf
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&endpoint.url)
            .region(Region::new(endpoint.region.clone()))
            .credentials_provider(creds)
            .force_path_style(path_style)
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

    /// Deletes the (empty) bucket; one already gone is success.
    pub async fn delete_bucket(&self) -> Result<()> {
        match self
            .client
            .delete_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match Error::from_sdk("DeleteBucket", &self.endpoint, e) {
                Error::S3 { status: 404, .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Checks the bucket answers these credentials with a listing (what every client needs):
    /// the error says why not.
    pub async fn check_access(&self) -> Result<()> {
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| Error::from_sdk("ListObjectsV2", &self.endpoint, e))?;
        Ok(())
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
