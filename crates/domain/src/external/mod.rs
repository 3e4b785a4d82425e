//! The external backend: buckets that live on AWS S3, Cloudflare R2 or another S3-compatible
//! service. The daemon keeps their credentials (the secret encrypted with the master key, never
//! answered, logged or published), reaches them only through the endpoint policy, and checks
//! them periodically: RUNNING while they answer, ERROR with the provider's words when not.
//! Nothing here ever deletes a remote object or the remote bucket.

use std::time::Instant;

use kalpana_s3_ops::{BucketClient, Endpoint, Presigner, RemoteOptions};

use crate::access::Caller;
use crate::context::Core;
use crate::error::{Error, Result};
use crate::events::{BucketEvent, EventKind};
use crate::external::endpoint_policy::{CheckedEndpoint, EndpointPolicy};
use crate::lifecycle;
use crate::model::{new_id, now, Backend, BucketRecord, BucketStatus, ExternalTarget, Provider};
use crate::requests::{CreateBucket, ExternalRequest};
use crate::validate;

pub mod endpoint_policy;

fn required<'a>(v: &'a Option<String>, what: &str) -> Result<&'a str> {
    v.as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::Invalid(format!("external.{what} is required")))
}

/// How long registering or re-checking an external bucket waits for it to answer.
const REACH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The policy of this daemon's configuration.
fn policy(state: &Core) -> EndpointPolicy {
    EndpointPolicy::new(state.config.external_allow.clone(), state.config.port_range)
}

/// What a request names: the target, its region, and the checked endpoint.
fn target_of(
    state: &Core,
    req: &ExternalRequest,
) -> Result<(ExternalTarget, String, CheckedEndpoint)> {
    let provider = req
        .provider
        .ok_or_else(|| Error::Invalid("external.provider is required: s3, r2 or other".into()))?;
    let bucket_name = required(&req.bucket_name, "bucketName")?.to_string();
    // Remote names follow S3's rules, which are looser than ours only in ways we do not need.
    if bucket_name.len() > 63 || bucket_name.chars().any(|c| c == '/' || c.is_control()) {
        return Err(Error::Invalid(
            "external.bucketName must be an S3 bucket name (at most 63 characters, no `/`)".into(),
        ));
    }
    let region = |default: &str| {
        req.region
            .clone()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    let (endpoint, region, path_style, account_id) = match provider {
        Provider::S3 => {
            let region = region("us-east-1");
            if !region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err(Error::Invalid(format!(
                    "external.region {region:?} is not an AWS region"
                )));
            }
            let endpoint = req
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
            (endpoint, region, req.path_style.unwrap_or(false), None)
        }
        Provider::R2 => {
            let account = required(&req.account_id, "accountId")?;
            if !account.chars().all(|c| c.is_ascii_alphanumeric()) || account.len() > 64 {
                return Err(Error::Invalid(
                    "external.accountId must be a Cloudflare account id (letters and digits)"
                        .into(),
                ));
            }
            if req.endpoint.is_some() {
                return Err(Error::Invalid(
                    "external.endpoint is derived from accountId for r2: leave it out".into(),
                ));
            }
            (
                format!("https://{account}.r2.cloudflarestorage.com"),
                "auto".to_string(),
                req.path_style.unwrap_or(true),
                Some(account.to_string()),
            )
        }
        Provider::Other => (
            required(&req.endpoint, "endpoint")?.to_string(),
            region("us-east-1"),
            req.path_style.unwrap_or(true),
            None,
        ),
    };
    let checked = policy(state).check(&endpoint)?;
    Ok((
        ExternalTarget {
            provider,
            endpoint: checked.origin.clone(),
            bucket_name,
            path_style,
            account_id,
        },
        region,
        checked,
    ))
}

fn remote_client(
    state: &Core,
    target: &ExternalTarget,
    checked: &CheckedEndpoint,
    endpoint: &Endpoint,
) -> BucketClient {
    BucketClient::remote(
        endpoint,
        &target.bucket_name,
        RemoteOptions {
            path_style: target.path_style,
            allow: policy(state).filter(checked),
        },
    )
}

/// Lists the remote bucket with these credentials: 422 `external_unreachable` with the
/// provider's words when it does not answer, `endpoint_not_allowed` when the host resolves to
/// a refused address.
async fn reach(client: &BucketClient, target: &ExternalTarget) -> Result<()> {
    let answer = tokio::time::timeout(REACH_TIMEOUT, client.check_access())
        .await
        .map_err(|_| {
            Error::ExternalUnreachable(format!(
                "bucket {} at {} did not answer within {} s",
                target.bucket_name,
                target.endpoint,
                REACH_TIMEOUT.as_secs()
            ))
        })?;
    answer.map_err(|e| match e {
        kalpana_s3_ops::Error::NotAllowed(m) => Error::EndpointNotAllowed(m),
        other => Error::ExternalUnreachable(format!(
            "bucket {} at {} did not answer these credentials: {}",
            target.bucket_name,
            target.endpoint,
            provider_words(&other)
        )),
    })
}

/// Reaches `target` with the request's credentials; they are returned (key id, secret) once it
/// answered.
async fn reach_with(
    state: &Core,
    req: &ExternalRequest,
    target: &ExternalTarget,
    region: &str,
    checked: &CheckedEndpoint,
) -> Result<(String, String)> {
    let access_key = required(&req.access_key_id, "accessKeyId")?.to_string();
    let secret = required(&req.secret_access_key, "secretAccessKey")?.to_string();
    let endpoint = Endpoint {
        url: target.endpoint.clone(),
        region: region.to_string(),
        access_key: access_key.clone(),
        secret_key: secret.clone(),
    };
    reach(&remote_client(state, target, checked, &endpoint), target).await?;
    Ok((access_key, secret))
}

/// What the provider said, without the SDK's internals.
pub fn provider_words(e: &kalpana_s3_ops::Error) -> String {
    match e {
        kalpana_s3_ops::Error::S3 {
            status,
            code,
            message,
            ..
        } if message.is_empty() => format!("{code} (HTTP {status})"),
        kalpana_s3_ops::Error::S3 {
            status,
            code,
            message,
            ..
        } => format!("{code}: {message} (HTTP {status})"),
        kalpana_s3_ops::Error::Unreachable { .. } => {
            "the endpoint could not be reached (connection refused, timed out or TLS failed)"
                .to_string()
        }
        other => other.to_string(),
    }
}

/// Registers an external bucket once the daemon has reached it with the given credentials;
/// nothing is stored otherwise.
pub async fn create(state: &Core, caller: &Caller, req: CreateBucket) -> Result<BucketRecord> {
    validate::bucket_name(&req.name)?;
    crate::requests::may_create_in(caller, req.team_id.as_deref())?;
    for (set, field) in [
        (req.engine.is_some(), "engine"),
        (req.subdomain.is_some(), "subdomain"),
        (req.versioning.is_some(), "versioning"),
        (req.encryption.is_some(), "encryption"),
        (req.public_access.is_some(), "publicAccess"),
        (req.max_size_gb.is_some(), "maxSizeGB"),
        (req.sleep_after_secs.is_some(), "sleepAfterSecs"),
    ] {
        if set {
            return Err(Error::Invalid(format!(
                "{field} applies to managed buckets only: an external bucket's settings are its provider's"
            )));
        }
    }
    let ext = req.external.ok_or_else(|| {
        Error::Invalid(
            "an external bucket needs `external`: provider, bucketName, credentials".into(),
        )
    })?;
    let (target, region, checked) = target_of(state, &ext)?;
    let started = Instant::now();
    let (access_key, secret) = reach_with(state, &ext, &target, &region, &checked).await?;
    let record = BucketRecord {
        description: req.description,
        team_id: req.team_id,
        workspace_id: req.workspace_id,
        host: target.endpoint.clone(),
        access_key,
        secret_key_enc: state.master_key.encrypt(&secret)?,
        region,
        status: BucketStatus::Running,
        status_message: Some(format!("reached in {} ms", started.elapsed().as_millis())),
        provisioned: true,
        backend: Backend::External(target),
        ..BucketRecord::new(
            new_id(),
            req.name,
            caller.user.id.clone(),
            state.config.engine,
        )
    };
    state.store.insert_bucket(&record).await?;
    tracing::info!(bucket = %record.id, name = %record.name, endpoint = %record.host,
        remote = %crate::kinds::s3_bucket_name(&record), "external bucket registered");
    state
        .events
        .publish(BucketEvent::of(EventKind::Created, &record, None));
    Ok(record)
}

/// Replaces an external bucket's credentials (and, if given, where it is), once the daemon has
/// reached it with the new ones. Caller holds the bucket's lock.
pub async fn replace_credentials(
    state: &Core,
    b: &mut BucketRecord,
    req: &ExternalRequest,
) -> Result<()> {
    let current = b
        .external()
        .cloned()
        .ok_or_else(|| Error::Invalid("`external` applies to external buckets only".into()))?;
    let merged = ExternalRequest {
        provider: req.provider.or(Some(current.provider)),
        bucket_name: req.bucket_name.clone().or(Some(current.bucket_name)),
        region: req.region.clone().or(Some(b.region.clone())),
        endpoint: match (req.endpoint.clone(), current.provider) {
            (Some(e), _) => Some(e),
            (None, Provider::R2) => None,
            (None, _) => Some(current.endpoint),
        },
        account_id: req.account_id.clone().or(current.account_id),
        access_key_id: req.access_key_id.clone(),
        secret_access_key: req.secret_access_key.clone(),
        path_style: req.path_style.or(Some(current.path_style)),
    };
    let (target, region, checked) = target_of(state, &merged)?;
    let (access_key, secret) = reach_with(state, &merged, &target, &region, &checked).await?;
    b.host = target.endpoint.clone();
    b.backend = Backend::External(target);
    b.region = region;
    b.access_key = access_key;
    b.secret_key_enc = state.master_key.encrypt(&secret)?;
    b.status = BucketStatus::Running;
    b.status_message = Some("credentials replaced and checked".into());
    state.s3_clients.forget(&b.id);
    tracing::info!(bucket = %b.id, endpoint = %b.host, "external bucket credentials replaced");
    Ok(())
}

/// The endpoint and credentials of an external bucket.
fn endpoint_of(state: &Core, b: &BucketRecord) -> Result<(ExternalTarget, Endpoint)> {
    let target = b
        .external()
        .cloned()
        .ok_or_else(|| Error::Internal(format!("external bucket {} has no target", b.id)))?;
    Ok((
        target.clone(),
        Endpoint {
            url: target.endpoint,
            region: b.region.clone(),
            access_key: b.access_key.clone(),
            secret_key: state.master_key.decrypt(&b.secret_key_enc)?,
        },
    ))
}

/// The (cached) client of an external bucket.
pub fn client(state: &Core, b: &BucketRecord) -> Result<BucketClient> {
    let origin = b.external().map(|x| x.endpoint.clone()).unwrap_or_default();
    state
        .s3_clients
        .get_or_make(&b.id, &origin, &b.access_key, || {
            let (target, endpoint) = endpoint_of(state, b)?;
            let checked = policy(state).check(&target.endpoint)?;
            Ok(remote_client(state, &target, &checked, &endpoint))
        })
}

/// A presigner for an external bucket, addressed as its client is.
pub fn presigner(state: &Core, b: &BucketRecord) -> Result<Presigner> {
    let (target, endpoint) = endpoint_of(state, b)?;
    Ok(if target.path_style {
        Presigner::new(&endpoint, &target.bucket_name)
    } else {
        Presigner::virtual_hosted(&endpoint, &target.bucket_name)
    })
}

/// Forgets an external bucket's registration. Its remote objects and bucket stay.
pub async fn forget(state: &Core, id: &str) -> Result<()> {
    let Some(b) = state.lock_bucket_if(id).await? else {
        return Ok(());
    };
    state.store.delete_bucket(id).await?;
    state.s3_clients.forget(id);
    state.pending_usage.take(id);
    tracing::info!(bucket = %id, name = %b.name, "external bucket forgotten; its remote objects stay");
    state
        .events
        .publish(BucketEvent::of(EventKind::Deleted, &b, None));
    Ok(())
}

/// Checks an external bucket still answers: RUNNING when it does, ERROR with the provider's
/// words when not (each change an event and a log line).
pub async fn check(state: &Core, id: &str) -> Result<()> {
    let Some(b) = state.store.get_bucket(id).await? else {
        return Ok(());
    };
    let client = client(state, &b)?;
    let result = client.check_access().await;
    let Some(mut b) = state.lock_bucket_if(id).await? else {
        return Ok(());
    };
    match result {
        Ok(()) if b.status != BucketStatus::Running => {
            lifecycle::set_status(
                state,
                &mut b,
                BucketStatus::Running,
                Some(format!("answering again at {}", now())),
                None,
            )
            .await
        }
        Err(e) => {
            let message = format!("the provider did not answer: {}", provider_words(&e));
            if b.status == BucketStatus::Error && b.status_message.as_deref() == Some(&message) {
                return Ok(());
            }
            lifecycle::set_status(state, &mut b, BucketStatus::Error, Some(message), None).await
        }
        Ok(()) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_not_in_debug_output() {
        let req = ExternalRequest {
            access_key_id: Some("AKID".into()),
            secret_access_key: Some("very-secret-value".into()),
            ..Default::default()
        };
        let shown = format!("{req:?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(shown.contains("AKID"));
    }
}
