//! The error type of s3-ops.

/// Anything that can go wrong talking S3 to a bucket's server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached or did not answer in time.
    #[error("the S3 server at {endpoint} is unreachable: {message}")]
    Unreachable {
        /// The endpoint we talked to.
        endpoint: String,
        /// What failed.
        message: String,
    },
    /// The endpoint's host resolved only to addresses the caller's policy refuses.
    #[error("{0}")]
    NotAllowed(String),
    /// The body of an upload failed (the client went away, a limit cut it short).
    #[error("reading the upload body failed: {0}")]
    Body(String),
    /// A request could not be built or presigned (bad expiry, bad input).
    #[error("could not build the S3 request: {0}")]
    Build(String),
    /// The server answered with an S3 error.
    #[error("S3 {op} failed ({status}): {code}: {message}")]
    S3 {
        /// The operation.
        op: &'static str,
        /// HTTP status of the answer.
        status: u16,
        /// The S3 error code.
        code: String,
        /// The S3 error message.
        message: String,
    },
}

/// Result with [`Error`] as default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Turns an SDK error into ours, keeping the S3 code and HTTP status.
    pub(crate) fn from_sdk<E>(
        op: &'static str,
        endpoint: &str,
        err: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> Self
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
        match &err {
            SdkError::ServiceError(ctx) => {
                let e = ctx.err();
                Error::S3 {
                    op,
                    status: ctx.raw().status().as_u16(),
                    code: e.code().unwrap_or("Unknown").to_string(),
                    message: e.message().unwrap_or_default().to_string(),
                }
            }
            _ => {
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
                while let Some(e) = source {
                    if let Some(refused) = e.downcast_ref::<NotAllowed>() {
                        return Error::NotAllowed(refused.to_string());
                    }
                    source = e.source();
                }
                Error::Unreachable {
                    endpoint: endpoint.to_string(),
                    message: DisplayErrorContext(&err).to_string(),
                }
            }
        }
    }

    /// The S3 error code, if the server gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::S3 { code, .. } => Some(code),
            Error::Unreachable { .. } | Error::NotAllowed(_) | Error::Body(_) | Error::Build(_) => {
                None
            }
        }
    }
}

/// A host name that resolved only to addresses the endpoint policy refuses.
#[derive(Debug)]
pub struct NotAllowed(pub(crate) String, pub(crate) Vec<std::net::IpAddr>);

impl std::fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} resolves to {:?}, which the endpoint policy does not allow",
            self.0, self.1
        )
    }
}

impl std::error::Error for NotAllowed {}
