//! `GET /api/buckets/{id}/connection`: how to reach a bucket from a client, with ready-to-paste
//! snippets. Never the secret: snippets carry a placeholder for it.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::app::AppState;
use crate::auth::{Access, Caller};
use crate::error::{Error, Result};
use crate::extract::PathParams;
use crate::openapi::{Failed, Refused};
use kalpana_domain::lifecycle;
use kalpana_domain::model::BucketRecord;

/// What stands for the secret key in snippets.
const SECRET_PLACEHOLDER: &str = "<your secret key>";

/// How to connect to a bucket.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionView {
    /// S3 endpoint clients use.
    endpoint: String,
    /// Endpoint inside the bucket's Docker network (attached containers), for managed buckets.
    internal_endpoint: Option<String>,
    /// Region to sign for.
    region: String,
    /// Bucket name on the S3 server.
    bucket: String,
    /// Path-style addressing.
    path_style: bool,
    /// Environment variables most S3 clients read (the secret as a placeholder).
    env: BTreeMap<String, String>,
    /// Ready-to-paste configuration per client.
    snippets: Snippets,
}

/// Snippets per client.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Snippets {
    aws_cli: String,
    rclone: String,
    boto3: String,
    s3cmd: String,
    /// An `.s3cfg` for s3cmd.
    s3cfg: String,
    /// The Rust SDK (aws-sdk-s3).
    rust_sdk: String,
}

fn snippets(b: &BucketRecord, endpoint: &str, bucket: &str, path_style: bool) -> Snippets {
    let host = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, h)| h)
        .trim_end_matches('/');
    let https = endpoint.starts_with("https://");
    let key = &b.access_key;
    let region = &b.region;
    Snippets {
        aws_cli: format!(
            "AWS_ACCESS_KEY_ID={key} AWS_SECRET_ACCESS_KEY='{SECRET_PLACEHOLDER}' AWS_REGION={region} \\\n  aws --endpoint-url {endpoint} s3 ls s3://{bucket}/"
        ),
        rclone: format!(
            "[{name}]\ntype = s3\nprovider = Other\nendpoint = {endpoint}\naccess_key_id = {key}\nsecret_access_key = {SECRET_PLACEHOLDER}\nregion = {region}\nforce_path_style = {path_style}\n",
            name = b.name
        ),
        boto3: format!(
            "import boto3\nfrom botocore.config import Config\ns3 = boto3.client(\"s3\", endpoint_url=\"{endpoint}\", region_name=\"{region}\",\n    aws_access_key_id=\"{key}\", aws_secret_access_key=\"{SECRET_PLACEHOLDER}\",\n    config=Config(s3={{\"addressing_style\": \"{style}\"}}))\nprint(s3.list_objects_v2(Bucket=\"{bucket}\").get(\"KeyCount\"))",
            style = if path_style { "path" } else { "virtual" }
        ),
        s3cmd: format!(
            "s3cmd --host={host} --host-bucket={host_bucket} --access_key={key} --secret_key='{SECRET_PLACEHOLDER}' --region={region}{tls} ls s3://{bucket}/",
            host_bucket = if path_style { host.to_string() } else { format!("%(bucket)s.{host}") },
            tls = if https { "" } else { " --no-ssl" }
        ),
        s3cfg: format!(
            "[default]\naccess_key = {key}\nsecret_key = {SECRET_PLACEHOLDER}\nhost_base = {host}\nhost_bucket = {host_bucket}\nbucket_location = {region}\nuse_https = {https}\n",
            host_bucket = if path_style { host.to_string() } else { format!("%(bucket)s.{host}") },
            https = if https { "True" } else { "False" }
        ),
        rust_sdk: format!(
            "let conf = aws_sdk_s3::Config::builder()\n    .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())\n    .endpoint_url(\"{endpoint}\")\n    .region(aws_sdk_s3::config::Region::new(\"{region}\"))\n    .credentials_provider(aws_sdk_s3::config::Credentials::new(\"{key}\", \"{SECRET_PLACEHOLDER}\", None, None, \"kalpana\"))\n    .force_path_style({path_style})\n    .build();\nlet s3 = aws_sdk_s3::Client::from_conf(conf);\nlet page = s3.list_objects_v2().bucket(\"{bucket}\").send().await?;"
        ),
    }
}

/// `GET /api/buckets/{id}/connection`.
#[utoipa::path(
    get,
    path = "/api/buckets/{id}/connection",
    tag = "buckets",
    operation_id = "bucket_connection",
    params(("id" = String, Path, description = "bucket id")),
    responses(
        (status = 200, description = "endpoints, environment and client snippets, without the secret", body = ConnectionView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn connection(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<ConnectionView>> {
    let b = lifecycle::authorized(&state, &caller, &id, Access::Read).await?;
    let endpoint = kalpana_domain::clients::public_endpoint(&state, &b)
        .ok_or_else(|| Error::Conflict(format!("bucket {} has no endpoint yet", b.name)))?;
    let bucket = kalpana_domain::kinds::s3_bucket_name(&b).to_string();
    let path_style = b.external().is_none_or(|x| x.path_style);
    let internal_endpoint = b
        .container()
        .and_then(|c| c.internal_host.as_ref())
        .map(|h| format!("http://{h}:{}", state.config.profile(b.engine).s3_port));
    let env = BTreeMap::from([
        ("AWS_ENDPOINT_URL".to_string(), endpoint.clone()),
        ("AWS_ACCESS_KEY_ID".to_string(), b.access_key.clone()),
        (
            "AWS_SECRET_ACCESS_KEY".to_string(),
            SECRET_PLACEHOLDER.to_string(),
        ),
        ("AWS_REGION".to_string(), b.region.clone()),
        ("S3_BUCKET".to_string(), bucket.clone()),
    ]);
    let snippets = snippets(&b, &endpoint, &bucket, path_style);
    Ok(Json(ConnectionView {
        endpoint,
        internal_endpoint,
        region: b.region.clone(),
        bucket,
        path_style,
        env,
        snippets,
    }))
}
