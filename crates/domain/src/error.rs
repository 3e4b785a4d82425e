//! The one error type of the domain, in its own words: what went wrong with a bucket, a key, a
//! team or a store, never an HTTP status. The api crate decides, in one place, what each means
//! to a client.

/// Everything that can go wrong in the domain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request breaks a rule (a name, a key, a size, a combination of settings).
    #[error("{0}")]
    Invalid(String),
    /// The caller sees the thing but their role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// No such thing, or one the caller may not see.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// It conflicts with how things are (a name or host taken, a bucket in the wrong state).
    #[error("{0}")]
    Conflict(String),
    /// The bucket's quota would be exceeded.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The operation is not one this kind of bucket has.
    #[error("{operation} is not supported on {kind} buckets: bucket {bucket} lives on a service the daemon does not run")]
    NotSupported {
        /// The bucket's kind.
        kind: &'static str,
        /// What was asked.
        operation: String,
        /// The bucket's name.
        bucket: String,
    },
    /// An external bucket did not answer its credentials.
    #[error("{0}")]
    ExternalUnreachable(String),
    /// An endpoint the endpoint policy refuses.
    #[error("{0}")]
    EndpointNotAllowed(String),
    /// The requested range lies outside the object.
    #[error("the requested range is not satisfiable for an object of this size")]
    RangeNotSatisfiable,
    /// A domain's DNS record does not prove control of it.
    #[error("{0}")]
    VerificationFailed(String),
    /// The caller holds as much of something as one user may.
    #[error("{0}")]
    LimitReached(String),
    /// Understood but not possible (a feature the engine lacks, an archive that is gone).
    #[error("{0}")]
    Unprocessable(String),
    /// Something the domain depends on is away or exhausted.
    #[error("{0}")]
    Unavailable(String),
    /// A sleeping bucket already holds as many requests as it may while it wakes.
    #[error("{0}")]
    WakeQueueFull(String),
    /// A cloud provider refused a dock's token.
    #[error("{0}")]
    ProviderRefused(String),
    /// A cloud provider failed or answered something it does not document.
    #[error("{0}")]
    ProviderFailed(String),
    /// The body of an upload stalled or arrived too slowly.
    #[error("{0}")]
    BodyTimedOut(String),
    /// The body of an upload broke off.
    #[error("{0}")]
    BodyFailed(String),
    /// The container runtime failed.
    #[error(transparent)]
    Runtime(#[from] kalpana_manager_core::Error),
    /// A bucket's S3 server failed.
    #[error(transparent)]
    S3(#[from] kalpana_s3_ops::Error),
    /// The store failed in a way that is not the caller's doing.
    #[error("store: {0}")]
    Store(String),
    /// Anything else.
    #[error("internal: {0}")]
    Internal(String),
}

/// Result with [`Error`] as default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The runtime said it cannot be reached at all.
    pub fn is_runtime_down(&self) -> bool {
        matches!(self, Error::Runtime(e) if e.is_unavailable())
    }
}
