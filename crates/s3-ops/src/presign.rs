//! Presigned URLs: requests anyone can make without credentials until they expire. Signed with
//! SigV4 in the query string directly (no SDK client per URL), for the origin clients will use.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    sign, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode,
};
use aws_smithy_runtime_api::client::identity::Identity;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::client::Endpoint;
use crate::error::{Error, Result};

/// Everything but SigV4's unreserved characters is encoded.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same for a key in a path, where `/` stays as it is.
const PATH: &AsciiSet = &QUERY.remove(b'/');

/// The longest lifetime S3 accepts for a presigned URL.
pub const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// A presigned request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    /// The URL, for the origin the presigner was built with.
    pub url: String,
    /// HTTP method.
    pub method: String,
    /// Headers the caller must send as they are, because they are signed.
    pub headers: Vec<(String, String)>,
}

/// Presigns requests for one bucket at one origin (path-style).
#[derive(Debug, Clone)]
pub struct Presigner {
    origin: String,
    bucket: String,
    region: String,
    identity: Identity,
    virtual_hosted: bool,
}

impl Presigner {
    /// A presigner for `bucket` at `endpoint.url`, which must be the origin clients will use:
    /// SigV4 signs the Host header.
    pub fn new(endpoint: &Endpoint, bucket: &str) -> Self {
        let creds = endpoint.credentials();
        Presigner {
            origin: endpoint.url.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
            region: endpoint.region.clone(),
            identity: creds.into(),
            virtual_hosted: false,
        }
    }

    /// A presigner for a bucket addressed virtual-hosted style (`<bucket>.<endpoint host>`), as
    /// AWS S3 and R2 prefer.
    pub fn virtual_hosted(endpoint: &Endpoint, bucket: &str) -> Self {
        Presigner {
            virtual_hosted: true,
            ..Self::new(endpoint, bucket)
        }
    }

    /// A presigned GET of `key`, valid for `expires`.
    pub fn presign_get(&self, key: &str, expires: Duration) -> Result<Presigned> {
        self.presign("GET", key, expires, None, None, &[])
    }

    /// A presigned PUT of `key`, valid for `expires`; with a content type the upload must send
    /// it, and with a content length the upload must be exactly that long (the server checks
    /// the signed `Content-Length`, so a quota can bound what the URL stores).
    pub fn presign_put(
        &self,
        key: &str,
        expires: Duration,
        content_type: Option<&str>,
        content_length: Option<u64>,
    ) -> Result<Presigned> {
        let length = content_length.map(|l| l.to_string());
        self.presign("PUT", key, expires, content_type, length.as_deref(), &[])
    }

    /// A presigned PUT of part `part` of multipart upload `upload_id` of `key`, valid for
    /// `expires`: the uploader sends that part and nothing else.
    pub fn presign_upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part: i32,
        expires: Duration,
    ) -> Result<Presigned> {
        let part = part.to_string();
        self.presign(
            "PUT",
            key,
            expires,
            None,
            None,
            &[("partNumber", part.as_str()), ("uploadId", upload_id)],
        )
    }

    fn presign(
        &self,
        method: &str,
        key: &str,
        expires: Duration,
        content_type: Option<&str>,
        content_length: Option<&str>,
        query: &[(&str, &str)],
    ) -> Result<Presigned> {
        if expires.is_zero() || expires > MAX_EXPIRY {
            return Err(Error::Build(format!(
                "expiry must be between 1 s and {} s",
                MAX_EXPIRY.as_secs()
            )));
        }
        let key = utf8_percent_encode(key, PATH);
        let url = match self.origin.split_once("://") {
            Some((scheme, host)) if self.virtual_hosted => {
                format!("{scheme}://{}.{host}/{key}", self.bucket)
            }
            _ => format!("{}/{}/{key}", self.origin, self.bucket),
        };
        let mut url = url;
        for (i, (name, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&utf8_percent_encode(name, QUERY).to_string());
            url.push('=');
            url.push_str(&utf8_percent_encode(value, QUERY).to_string());
        }
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires);
        // S3 signs the path as sent: no double encoding, no normalisation.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| Error::Build(e.to_string()))?
            .into();
        let headers: Vec<(&str, &str)> = content_length
            .map(|l| ("content-length", l))
            .into_iter()
            .chain(content_type.map(|ct| ("content-type", ct)))
            .collect();
        let signable = SignableRequest::new(
            method,
            url.as_str(),
            headers.iter().copied(),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| Error::Build(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| Error::Build(e.to_string()))?
            .into_parts();
        let mut out = url;
        for (name, value) in instructions.params().iter() {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(&utf8_percent_encode(name, QUERY).to_string());
            out.push('=');
            out.push_str(&utf8_percent_encode(value, QUERY).to_string());
        }
        Ok(Presigned {
            url: out,
            method: method.to_string(),
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presigner() -> Presigner {
        Presigner::new(
            &Endpoint {
                url: "http://photos.buckets.example.test:8080".into(),
                region: "us-east-1".into(),
                access_key: "AKIDEXAMPLE".into(),
                secret_key: "secret".into(),
            },
            "photos",
        )
    }

    #[test]
    fn get_url_is_path_style_for_the_origin_with_expiry() {
        let p = presigner()
            .presign_get("dir/a b+ü.txt", Duration::from_secs(3600))
            .expect("presign");
        assert!(
            p.url.starts_with(
                "http://photos.buckets.example.test:8080/photos/dir/a%20b%2B%C3%BC.txt?"
            ),
            "{}",
            p.url
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Expires=3600",
            "X-Amz-SignedHeaders=host",
            "X-Amz-Credential=AKIDEXAMPLE%2F",
            "X-Amz-Signature=",
        ] {
            assert!(p.url.contains(part), "{part} missing in {}", p.url);
        }
        assert!(!p.url.contains("secret"));
        assert_eq!(p.method, "GET");
    }

    #[test]
    fn put_signs_the_content_type_and_bounds_expiry() {
        let p = presigner()
            .presign_put("k", Duration::from_secs(60), Some("text/plain"), Some(5))
            .expect("presign");
        assert!(
            p.url
                .contains("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost"),
            "{}",
            p.url
        );
        assert_eq!(
            p.headers,
            vec![
                ("content-length".into(), "5".into()),
                ("content-type".into(), "text/plain".into())
            ]
        );
        assert!(presigner().presign_get("k", Duration::ZERO).is_err());
        assert!(presigner()
            .presign_get("k", MAX_EXPIRY + Duration::from_secs(1))
            .is_err());
        assert!(presigner().presign_get("k", MAX_EXPIRY).is_ok());
    }
}
