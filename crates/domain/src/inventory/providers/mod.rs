//! Provider adapters: one file per provider says where its API is, how a token is checked, how
//! its listings page and how each resource maps to the universal records. The HTTP here is
//! shared: bearer auth, bounded waits on 429 `Retry-After`, timeouts, and errors in words.

use std::time::Duration;

use serde_json::Value;

use super::model::{CloudProvider, InventoryRecord, ResourceKind};

pub mod digitalocean;
pub mod linode;
pub mod vultr;

/// What a provider answered when it would not or could not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The token was refused (401/403).
    #[error("{provider} refused the token ({status}): {message}")]
    Refused {
        provider: &'static str,
        /// HTTP status.
        status: u16,
        /// The provider's words.
        message: String,
    },
    /// Any other failed answer.
    #[error("{provider} answered {status}: {message}")]
    Failed {
        provider: &'static str,
        /// HTTP status.
        status: u16,
        /// The provider's words.
        message: String,
    },
    /// No answer.
    #[error("{provider} is unreachable: {message}")]
    Unreachable {
        provider: &'static str,
        /// What failed.
        message: String,
    },
    /// An answer that is not what the provider documents.
    #[error("{provider} answered something unexpected: {message}")]
    Garbage {
        provider: &'static str,
        /// What was wrong.
        message: String,
    },
}

/// One listing of a provider: a resource kind, its first page and how to read a page.
pub struct Listing {
    /// What it lists.
    pub kind: ResourceKind,
    /// Path and query of the first page, under the provider's base URL.
    pub first_page: &'static str,
    /// The field of a page holding the array of resources.
    pub items: &'static str,
    /// The URL of the page after `page` (fetched from `url`), or none at the end.
    pub next: fn(page: &Value, url: &str) -> Result<Option<String>, String>,
    /// The universal record of one resource (id, dock and time are the sync's to fill).
    pub map: fn(item: &Value) -> Result<InventoryRecord, String>,
}

/// A provider's API.
pub trait Adapter: Send + Sync {
    /// Which provider.
    fn provider(&self) -> CloudProvider;
    /// The public API's origin.
    fn default_base_url(&self) -> &'static str;
    /// The cheap authenticated read that checks a token.
    fn check_path(&self) -> &'static str;
    /// What a sync lists.
    fn listings(&self) -> &'static [Listing];
}

/// The adapter of `provider`.
pub fn adapter(provider: CloudProvider) -> &'static dyn Adapter {
    match provider {
        CloudProvider::Vultr => &vultr::Vultr,
        CloudProvider::Digitalocean => &digitalocean::DigitalOcean,
        CloudProvider::Linode => &linode::Linode,
    }
}

/// Longest wait one 429 may ask for before the sync gives up.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Most 429s one sync waits out.
pub const MAX_RATE_LIMITED: u64 = 10;
/// Most pages one listing follows (a provider that never ends is garbage).
pub const MAX_PAGES: u64 = 100_000;
/// Longest provider message kept in an error.
const MAX_MESSAGE: usize = 300;

/// An authenticated client of one provider account.
pub struct ProviderClient {
    http: reqwest::Client,
    provider: &'static str,
    base: String,
    token: String,
    /// 429s waited out so far.
    pub rate_limited: u64,
}

impl ProviderClient {
    /// A client of `adapter`'s API at `base` with `token`.
    pub fn new(http: reqwest::Client, adapter: &dyn Adapter, base: &str, token: String) -> Self {
        ProviderClient {
            http,
            provider: adapter.provider().as_str(),
            base: base.trim_end_matches('/').to_string(),
            token,
            rate_limited: 0,
        }
    }

    /// The absolute URL of a path under the base.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn garbage(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::Garbage {
            provider: self.provider,
            message: message.into(),
        }
    }

    /// GETs `url` (which must be under the base: a provider's `next` link elsewhere is refused,
    /// so the token never goes to another host) and parses the JSON answer, waiting out 429s.
    pub async fn get(&mut self, url: &str) -> Result<Value, ProviderError> {
        if !url.starts_with(&format!("{}/", self.base)) {
            return Err(self.garbage("a page link points outside the provider's API"));
        }
        loop {
            let resp = self
                .http
                .get(url)
                .bearer_auth(&self.token)
                .header(reqwest::header::ACCEPT, "application/json")
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .map_err(|e| ProviderError::Unreachable {
                    provider: self.provider,
                    // Without the URL: it may carry a cursor, never the token, but stay short.
                    message: e.without_url().to_string(),
                })?;
            let status = resp.status().as_u16();
            if status == 429 {
                let wait = retry_after(resp.headers());
                self.rate_limited += 1;
                if self.rate_limited > MAX_RATE_LIMITED || wait > MAX_RETRY_AFTER {
                    return Err(ProviderError::Failed {
                        provider: self.provider,
                        status,
                        message: format!(
                            "rate limited {} times (last asked to wait {} s); try later",
                            self.rate_limited,
                            wait.as_secs()
                        ),
                    });
                }
                tracing::info!(
                    provider = self.provider,
                    wait_secs = wait.as_secs_f64(),
                    "provider rate limit; waiting as it asked"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            let body = resp.bytes().await.map_err(|e| ProviderError::Unreachable {
                provider: self.provider,
                message: e.without_url().to_string(),
            })?;
            let json: Option<Value> = serde_json::from_slice(&body).ok();
            if !(200..300).contains(&status) {
                let message = json.as_ref().map(provider_message).unwrap_or_default();
                let message = if message.is_empty() {
                    "no reason given".to_string()
                } else {
                    message
                };
                return Err(if status == 401 || status == 403 {
                    ProviderError::Refused {
                        provider: self.provider,
                        status,
                        message,
                    }
                } else {
                    ProviderError::Failed {
                        provider: self.provider,
                        status,
                        message,
                    }
                });
            }
            return json.ok_or_else(|| self.garbage("the answer is not JSON"));
        }
    }

    /// Every resource of every listing of `adapter`, following every page.
    pub async fn list_all(
        &mut self,
        adapter: &dyn Adapter,
        mut on_page: impl FnMut(u64, usize),
    ) -> Result<(Vec<InventoryRecord>, u64), ProviderError> {
        let mut out = Vec::new();
        let mut pages = 0u64;
        for listing in adapter.listings() {
            let mut url = self.url(listing.first_page);
            let mut seen = std::collections::HashSet::new();
            loop {
                if !seen.insert(url.clone()) || seen.len() as u64 > MAX_PAGES {
                    return Err(self.garbage("the page links go round in a circle"));
                }
                let page = self.get(&url).await?;
                pages += 1;
                let items = page[listing.items].as_array().ok_or_else(|| {
                    self.garbage(format!("a page without the `{}` array", listing.items))
                })?;
                for item in items {
                    out.push((listing.map)(item).map_err(|m| self.garbage(m))?);
                }
                on_page(pages, out.len());
                match (listing.next)(&page, &url).map_err(|m| self.garbage(m))? {
                    Some(next) => url = next,
                    None => break,
                }
            }
        }
        Ok((out, pages))
    }
}

/// The wait a 429 asks for: `Retry-After` in seconds (an HTTP date or nothing means 1 s).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
        .unwrap_or(Duration::from_secs(1))
}

/// The provider's own words from an error body: Vultr `error`, DigitalOcean `message`, Linode
/// `errors[].reason`.
fn provider_message(body: &Value) -> String {
    let text = body["error"]
        .as_str()
        .or_else(|| body["message"].as_str())
        .map(str::to_string)
        .or_else(|| {
            body["errors"].as_array().map(|errs| {
                errs.iter()
                    .filter_map(|e| e["reason"].as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        })
        .unwrap_or_default();
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE)
        .collect()
}

/// A required string field.
pub(crate) fn string(item: &Value, field: &str) -> Result<String, String> {
    item[field]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("a resource without the string `{field}`"))
}

/// An optional string field; empty is none.
pub(crate) fn opt_string(item: &Value, field: &str) -> Option<String> {
    item[field]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A required whole number field.
pub(crate) fn number(item: &Value, field: &str) -> Result<u64, String> {
    item[field]
        .as_u64()
        .ok_or_else(|| format!("a resource without the whole number `{field}`"))
}

/// A record with every optional field empty.
pub(crate) fn record(
    kind: ResourceKind,
    provider: CloudProvider,
    provider_resource_id: String,
    name: String,
    region: String,
    status: String,
    full_api_data: Value,
) -> InventoryRecord {
    InventoryRecord {
        id: String::new(),
        kind,
        dock_id: String::new(),
        provider,
        provider_resource_id,
        name,
        region,
        status,
        size_gb: None,
        attached_to_instance: None,
        attached_to_instance_label: None,
        mount_id: None,
        block_type: None,
        filesystem_type: None,
        cluster: None,
        hostname: None,
        s3_endpoint: None,
        size_bytes: None,
        object_count: None,
        full_api_data,
        updated_at: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn provider_words_are_found_in_each_error_shape() {
        assert_eq!(
            provider_message(&json!({"error": "Invalid API token.", "status": 401})),
            "Invalid API token."
        );
        assert_eq!(
            provider_message(
                &json!({"id": "unauthorized", "message": "Unable to authenticate you"})
            ),
            "Unable to authenticate you"
        );
        assert_eq!(
            provider_message(&json!({"errors": [{"reason": "Invalid Token"}]})),
            "Invalid Token"
        );
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), Duration::from_secs(1));
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().expect("header"));
        assert_eq!(retry_after(&h), Duration::from_secs(2));
    }
}

#[cfg(test)]
mod seed_tests;
