//! Bucket routes: create, list, read, update, delete, start, stop.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::{Access, Caller};
use crate::error::{Error, Result};
use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::openapi::{Failed, Refused};
use kalpana_domain::lifecycle;
use kalpana_domain::model::{BucketRecord, BucketStatus};
use kalpana_domain::requests::CreateBucket;
use kalpana_domain::store::BucketQuery;

/// How long `?wait=true` waits for a create to leave CREATING.
const CREATE_WAIT: Duration = Duration::from_secs(300);

/// The JSON view of a bucket. `secretKey` is only set when a secret is handed out.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketView {
    id: String,
    name: String,
    description: Option<String>,
    user_id: String,
    team_id: Option<String>,
    workspace_id: Option<String>,
    engine: String,
    host: String,
    port: Option<u16>,
    console_port: Option<u16>,
    access_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_key: Option<String>,
    endpoint: Option<String>,
    console_url: Option<String>,
    region: String,
    versioning: bool,
    encryption: bool,
    public_access: bool,
    #[serde(rename = "maxSizeGB")]
    max_size_gb: Option<f64>,
    status: &'static str,
    status_message: Option<String>,
    /// What the bucket is in the middle of: `stopping`, `restarting`, or null.
    phase: Option<kalpana_domain::model::Phase>,
    object_count: u64,
    total_size_bytes: u64,
    /// The last recount found more bytes than `maxSizeGB` allows (written directly over S3).
    over_quota: bool,
    stats_synced_at: Option<String>,
    domain_id: Option<String>,
    subdomain: Option<String>,
    linked_host: Option<String>,
    container_id: Option<String>,
    volume_name: Option<String>,
    network_name: Option<String>,
    internal_host: Option<String>,
    /// `managed` or `external`.
    kind: kalpana_domain::model::BucketKind,
    /// The service of an external bucket.
    provider: Option<kalpana_domain::model::Provider>,
    /// The bucket's name on that service.
    external_bucket: Option<String>,
    /// Whether requests to it are path-style.
    path_style: bool,
    /// Purposes it is the default bucket for.
    default_for: Vec<String>,
    /// Snapshots on a schedule: its `everyHours` is how much a restore may lose.
    snapshot_policy: Option<kalpana_domain::model::SnapshotPolicy>,
    /// When its latest successful snapshot (that still exists) finished.
    latest_snapshot_at: Option<String>,
    /// How old that snapshot is, in seconds: a restore from it loses what was written since.
    latest_snapshot_age_secs: Option<u64>,
    /// The cluster node holding its volume (swarm runtime only).
    node: Option<String>,
    /// Its last evacuation from a lost node: `snapshotAt` is the snapshot its data came back
    /// from (whatever was written after it is lost); no `finishedAt` while it runs.
    evacuation: Option<kalpana_domain::model::Evacuation>,
    /// Seconds with no request after which it sleeps (0: never); managed buckets only.
    sleep_after_secs: Option<u64>,
    /// Awake, asleep or waking, and its last request and wake; managed buckets only.
    activity: Option<kalpana_domain::sleep::Activity>,
    created_at: String,
    updated_at: String,
}

/// The view of `b`, with the routed endpoint when a base domain is configured.
pub fn view(state: &AppState, mut b: BucketRecord, secret_key: Option<String>) -> BucketView {
    state.pending_usage.overlay(&mut b);
    let routing = &state.config.routing;
    let endpoint = kalpana_domain::clients::public_endpoint(state, &b);
    let routed = lifecycle::routed_host(state, &b);
    let console_url = match (&routed, b.console_port) {
        (_, None) => None,
        (Some(host), Some(_)) => Some(routing.origin(&format!("console-{host}"))),
        (None, Some(port)) => Some(format!("http://{}:{port}", b.host)),
    };
    let kind = b.kind();
    let activity = kalpana_domain::sleep::activity(state, &b);
    let node = state.addresses.node(&b.id);
    let (container, external) = match b.backend {
        kalpana_domain::model::Backend::Managed(c) => (c, None),
        kalpana_domain::model::Backend::External(t) => (Default::default(), Some(t)),
    };
    BucketView {
        engine: match kind {
            kalpana_domain::model::BucketKind::Managed => b.engine.as_str().to_string(),
            kalpana_domain::model::BucketKind::External => "none".to_string(),
        },
        status: b.status.as_str(),
        endpoint,
        console_url,
        secret_key,
        id: b.id,
        name: b.name,
        description: b.description,
        user_id: b.user_id,
        team_id: b.team_id,
        workspace_id: b.workspace_id,
        host: b.host,
        port: b.port,
        console_port: b.console_port,
        access_key: b.access_key,
        region: b.region,
        versioning: b.versioning,
        encryption: b.encryption,
        public_access: b.public_access,
        max_size_gb: b.max_size_gb,
        status_message: b.status_message,
        phase: b.phase,
        object_count: b.object_count,
        total_size_bytes: b.total_size_bytes,
        over_quota: b.over_quota,
        stats_synced_at: b.stats_synced_at,
        domain_id: b.domain_id,
        subdomain: b.subdomain,
        linked_host: b.linked_host,
        container_id: container.container_id,
        volume_name: container.volume_name,
        network_name: container.network_name,
        internal_host: container.internal_host,
        kind,
        provider: external.as_ref().map(|x| x.provider),
        path_style: external.as_ref().is_none_or(|x| x.path_style),
        external_bucket: external.map(|x| x.bucket_name),
        default_for: b.default_for,
        snapshot_policy: b.snapshot_policy,
        latest_snapshot_age_secs: b
            .latest_snapshot_at
            .as_deref()
            .and_then(kalpana_domain::model::seconds_since),
        latest_snapshot_at: b.latest_snapshot_at,
        node,
        evacuation: b.evacuation,
        sleep_after_secs: activity.as_ref().map(|a| a.sleep_after_secs),
        activity,
        created_at: b.created_at,
        updated_at: b.updated_at,
    }
}

/// Query of `POST /api/buckets`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CreateQuery {
    /// Answer only once the bucket left CREATING (RUNNING or ERROR).
    #[serde(default)]
    wait: bool,
}

/// `POST /api/buckets`: 201 with the bucket and its `secretKey` (shown only here).
#[utoipa::path(
    post,
    path = "/api/buckets",
    tag = "buckets",
    operation_id = "create_bucket",
    params(CreateQuery),
    request_body = CreateBucket,
    responses(
        (status = 201, description = "the bucket, with its secretKey (shown only here)", body = BucketView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<CreateQuery>,
    JsonBody(req): JsonBody<CreateBucket>,
) -> Result<(StatusCode, Json<BucketView>)> {
    let created = kalpana_domain::backend::create(&state, &caller, req).await?;
    let mut record = created.record;
    if let (true, Some(handle)) = (q.wait, created.provisioning) {
        // The provisioning task goes on even if this request is dropped or times out.
        let _ = tokio::time::timeout(CREATE_WAIT, handle).await;
        if let Some(latest) = state.store.get_bucket(&record.id).await? {
            record = latest;
        }
    }
    Ok((
        StatusCode::CREATED,
        Json(view(&state, record, created.secret)),
    ))
}

/// Query of `GET /api/buckets`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    workspace_id: Option<String>,
    team_id: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// A page of buckets.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketPage {
    buckets: Vec<BucketView>,
    next_cursor: Option<String>,
}

/// `GET /api/buckets`: the caller's buckets and their teams'.
#[utoipa::path(
    get,
    path = "/api/buckets",
    tag = "buckets",
    operation_id = "list_buckets",
    params(ListQuery),
    responses(
        (status = 200, description = "a page of the caller's and their teams' buckets", body = BucketPage),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<BucketPage>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::BadRequest("limit must be between 1 and 1000".into()));
    }
    let status = q
        .status
        .as_deref()
        .map(|s| {
            BucketStatus::parse(s).ok_or_else(|| {
                Error::BadRequest(format!(
                    "status {s:?} is not one of CREATING, RUNNING, STOPPED, ERROR"
                ))
            })
        })
        .transpose()?;
    let query = BucketQuery {
        owner: Some(caller.user.id.clone()),
        teams: caller.teams.clone(),
        all: false,
        workspace_id: q.workspace_id,
        team_id: q.team_id,
        status,
        after: q.cursor,
        limit: limit + 1,
    };
    let mut rows: Vec<BucketRecord> = state
        .store
        .list_buckets(&query)
        .await?
        .into_iter()
        // The store matches by owner or team; a team bucket made by someone no longer in its
        // team matches by owner but is not theirs to see.
        .filter(|b| !b.deleting && caller.can_see(b))
        .collect();
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|b| b.id.clone())
    } else {
        None
    };
    Ok(Json(BucketPage {
        buckets: rows.into_iter().map(|b| view(&state, b, None)).collect(),
        next_cursor,
    }))
}

/// `GET /api/buckets/{id}`.
#[utoipa::path(
    get,
    path = "/api/buckets/{id}",
    tag = "buckets",
    operation_id = "get_bucket",
    params(("id" = String, Path, description = "bucket id")),
    responses(
        (status = 200, description = "the bucket", body = BucketView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<BucketView>> {
    let b = lifecycle::visible(&state, &caller, &id).await?;
    Ok(Json(view(&state, b, None)))
}

/// `PATCH /api/buckets/{id}`: description, quota, S3 settings, snapshot policy and workspace; for an external bucket,
/// description and `external` (new credentials, checked before anything is stored). Settings are written to a
/// running bucket's S3 server before the record, so a failure changes nothing; a stopped
/// bucket gets them when it starts.
#[utoipa::path(
    patch,
    path = "/api/buckets/{id}",
    tag = "buckets",
    operation_id = "update_bucket",
    params(("id" = String, Path, description = "bucket id")),
    request_body = lifecycle::UpdateBucket,
    responses(
        (status = 200, description = "the bucket", body = BucketView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(req): JsonBody<lifecycle::UpdateBucket>,
) -> Result<Json<BucketView>> {
    let b = lifecycle::update(&state, &caller, &id, req).await?;
    Ok(Json(view(&state, b, None)))
}

/// Query of `DELETE /api/buckets/{id}`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteQuery {
    #[serde(default)]
    delete_volume: bool,
}

/// `DELETE /api/buckets/{id}`: 204; `?deleteVolume=true` drops the data too.
#[utoipa::path(
    delete,
    path = "/api/buckets/{id}",
    tag = "buckets",
    operation_id = "delete_bucket",
    params(("id" = String, Path, description = "bucket id"), DeleteQuery),
    responses(
        (status = 204, description = "deleted"),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    QueryParams(q): QueryParams<DeleteQuery>,
) -> Result<StatusCode> {
    let b = lifecycle::authorized(&state, &caller, &id, Access::Manage).await?;
    kalpana_domain::backend::delete(&state, &b, q.delete_volume).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/buckets/{id}/start`.
#[utoipa::path(
    post,
    path = "/api/buckets/{id}/start",
    tag = "buckets",
    operation_id = "start_bucket",
    params(("id" = String, Path, description = "bucket id")),
    responses(
        (status = 200, description = "the bucket", body = BucketView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<BucketView>> {
    lifecycle::authorized(&state, &caller, &id, Access::Manage).await?;
    let b = lifecycle::start(&state, &id).await?;
    Ok(Json(view(&state, b, None)))
}

/// `POST /api/buckets/{id}/stop`.
#[utoipa::path(
    post,
    path = "/api/buckets/{id}/stop",
    tag = "buckets",
    operation_id = "stop_bucket",
    params(("id" = String, Path, description = "bucket id")),
    responses(
        (status = 200, description = "the bucket", body = BucketView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn stop(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<BucketView>> {
    lifecycle::authorized(&state, &caller, &id, Access::Manage).await?;
    let b = lifecycle::stop(&state, &id).await?;
    Ok(Json(view(&state, b, None)))
}

/// `POST /api/buckets/{id}/credentials/rotate`: the bucket with its new `secretKey` (shown only
/// here). The old secret stops working once the container is replaced.
#[utoipa::path(
    post,
    path = "/api/buckets/{id}/credentials/rotate",
    tag = "buckets",
    params(("id" = String, Path, description = "bucket id")),
    responses(
        (status = 200, description = "the bucket with its new secretKey (shown only here)", body = BucketView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn rotate_credentials(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<BucketView>> {
    lifecycle::authorized(&state, &caller, &id, Access::Manage).await?;
    let (b, secret) = lifecycle::rotate_credentials(&state, &id).await?;
    Ok(Json(view(&state, b, Some(secret))))
}
