//! S3 clients of a bucket: the aws-sdk-s3 client, and bare SigV4 headers for hosts only a
//! routed test can reach.

use anyhow::Result;

/// An aws-sdk-s3 client for a bucket's returned endpoint and credentials.
pub fn s3_client(endpoint: &str, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
    let creds = aws_credential_types::Credentials::new(access_key, secret_key, None, None, "test");
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// [`s3_client`] with retries off: one refused connection or 5xx is an error the test sees.
pub fn s3_client_no_retries(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
) -> aws_sdk_s3::Client {
    let conf = s3_client(endpoint, access_key, secret_key)
        .config()
        .to_builder()
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// [`s3_client_no_retries`] for a routed endpoint whose host the system resolver does not know
/// (`http://<bucket>.<test domain>:<port>`): every host name resolves to `ip`, so the SDK
/// connects there and still sends (and signs) the routed Host.
pub fn s3_client_to(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
    ip: std::net::IpAddr,
) -> aws_sdk_s3::Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build_with_resolver(FixedResolver(ip));
    let conf = s3_client_no_retries(endpoint, access_key, secret_key)
        .config()
        .to_builder()
        .http_client(http)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Resolves every name to one address.
#[derive(Debug, Clone)]
struct FixedResolver(std::net::IpAddr);

impl aws_smithy_runtime_api::client::dns::ResolveDns for FixedResolver {
    fn resolve_dns<'a>(
        &'a self,
        _name: &'a str,
    ) -> aws_smithy_runtime_api::client::dns::DnsFuture<'a> {
        aws_smithy_runtime_api::client::dns::DnsFuture::ready(Ok(vec![self.0]))
    }
}

/// The whole body of an object, read over S3.
pub async fn get_bytes(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Vec<u8>> {
    let got = s3.get_object().bucket(bucket).key(key).send().await?;
    Ok(got.body.collect().await?.into_bytes().to_vec())
}

/// SigV4 headers for an S3 request to `url` (header signing, unsigned payload), for clients that
/// must reach a host the system resolver does not know (routed test hosts).
pub fn sign_s3(
    method: &str,
    url: &str,
    access_key: &str,
    secret_key: &str,
) -> Result<Vec<(String, String)>> {
    use aws_sigv4::http_request::{
        sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
        SigningSettings, UriPathNormalizationMode,
    };
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(access_key, secret_key, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(std::time::SystemTime::now())
        .settings(settings)
        .build()?
        .into();
    let req = SignableRequest::new(
        method,
        url,
        std::iter::empty(),
        SignableBody::UnsignedPayload,
    )?;
    let (instructions, _) = sign(req, &params)?.into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}
