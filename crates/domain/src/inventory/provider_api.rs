//! Reaching a provider's API: where it is, the HTTP client that calls it, and the error its
//! answers become.

use std::time::Duration;

use crate::context::Core;
use crate::error::{Error, Result};

use super::model::CloudProvider;
use super::providers::{adapter, ProviderError};

/// The base URL of a provider's API (configured, or the public one).
pub fn base_url(state: &Core, provider: CloudProvider) -> String {
    state
        .config
        .provider_urls
        .iter()
        .find(|(p, _)| *p == provider)
        .map(|(_, u)| u.clone())
        .unwrap_or_else(|| adapter(provider).default_base_url().to_string())
}

/// The HTTP client provider calls use: no redirects (the token goes to the API's host only).
pub(super) fn http() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error::Internal(format!("HTTP client: {e}")))
}

/// The API's error for a provider's answer.
pub(super) fn provider_error(e: ProviderError) -> Error {
    match e {
        ProviderError::Refused { .. } => Error::ProviderRefused(e.to_string()),
        _ => Error::ProviderFailed(e.to_string()),
    }
}
