//! The cluster's node agents: enrolment (an admin asks for a node's token), and the routes
//! the agents call with it — reports (`POST /api/fleet/stats`, their heartbeat), jobs, upload
//! URLs, progress and outcomes. An agent's token speaks for its own node only: a report or a
//! job of another node is refused as if it did not exist.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kalpana_domain::config::RuntimeKind;
use kalpana_domain::secrets::{valid_node_id, NODE_TOKEN_PREFIX};
use kalpana_manager_core::node_hub::REPORT_EVERY;
use kalpana_manager_core::node_protocol::{
    JobDone, JobProgress, NodeReport, PartRequest, PartUrl, ReportAck, MAX_REPORT_BYTES,
    MAX_SAMPLES,
};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::openapi::{Failed, Refused};

/// The agent of one node, authenticated by that node's token.
pub struct NodeCaller(pub String);

impl FromRequestParts<AppState> for NodeCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        if state.config.runtime != RuntimeKind::Swarm {
            return Err(Error::NotFound("route"));
        }
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| t.starts_with(NODE_TOKEN_PREFIX))
            .ok_or(Error::Unauthorized)?;
        state
            .master_key
            .node_of_token(token)
            .map(NodeCaller)
            .ok_or(Error::Unauthorized)
    }
}

/// A node's enrolment token, shown once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeToken {
    /// The Swarm node id.
    node_id: String,
    /// The token its agent dials in with (`KALPANA_NODE_TOKEN_FILE`).
    token: String,
}

/// `POST /api/nodes/{nodeId}/token`: the enrolment token of a node of the cluster (admins).
#[utoipa::path(
    post,
    path = "/api/nodes/{nodeId}/token",
    tag = "fleet",
    operation_id = "nodeToken",
    params(("nodeId" = String, Path, description = "the Swarm node id (docker node ls -q)")),
    responses(
        (status = 200, description = "the token, shown once", body = NodeToken),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn token(
    State(state): State<AppState>,
    caller: Caller,
    Path(node_id): Path<String>,
) -> Result<Json<NodeToken>> {
    caller.require_admin()?;
    if state.config.runtime != RuntimeKind::Swarm {
        return Err(Error::Conflict(
            "this daemon runs buckets on one Docker engine (KALPANA_RUNTIME=docker): it has no nodes to enrol".into(),
        ));
    }
    if !valid_node_id(&node_id) {
        return Err(Error::BadRequest(
            "a node id is 1-64 lower-case letters and digits (docker node ls -q)".into(),
        ));
    }
    let known = state.runtime.hosts().await?.iter().any(|h| h.id == node_id);
    if !known {
        return Err(Error::NotFound("node"));
    }
    tracing::info!(node = %node_id, "node enrolment token issued");
    Ok(Json(NodeToken {
        token: state.master_key.node_token(&node_id),
        node_id,
    }))
}

/// `POST /api/fleet/stats`: a node agent's report (its heartbeat).
pub async fn report(
    State(state): State<AppState>,
    NodeCaller(node): NodeCaller,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<ReportAck>> {
    let body = body.map_err(too_large)?;
    if body.len() > MAX_REPORT_BYTES {
        return Err(Error::BodyTooLarge(format!(
            "a report is limited to {MAX_REPORT_BYTES} bytes"
        )));
    }
    let report: NodeReport = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("not a node report: {e}")))?;
    if report.node_id != node {
        return Err(Error::Forbidden(
            "a node's token reports for that node only".into(),
        ));
    }
    if report.containers.len() > MAX_SAMPLES {
        return Err(Error::BadRequest(format!(
            "a report carries at most {MAX_SAMPLES} container samples"
        )));
    }
    // A node speaks for the buckets on it only (by node id: host names need not be unique):
    // samples of any other bucket are dropped.
    let host = match state.nodes.name(&node) {
        Some(h) => Some(h),
        // Names are learnt from the manager's node list, which this asks for again.
        None => {
            if let Err(e) = state.runtime.hosts().await {
                tracing::debug!(error = %e, "listing the Swarm's nodes failed");
            }
            state.nodes.name(&node)
        }
    };
    let mut report = report;
    report
        .containers
        .retain(|c| state.addresses.node_id(&c.bucket_id).as_deref() == Some(node.as_str()));
    // The node's lease is renewed in the store before the heartbeat is acknowledged: an agent
    // that hears nothing back fences its node (KALPANA_FENCE_SECS).
    // The host name as the Swarm manager knows it (never as the agent says it).
    let hostname = host.clone();
    kalpana_domain::node_loss::heartbeat(&state.core, &node, hostname, report.engine_ok).await?;
    state.nodes.report(&node, report);
    Ok(Json(ReportAck {
        node_id: node,
        report_every_secs: REPORT_EVERY.as_secs(),
    }))
}

/// A body over the limit (or one that failed) as the API's JSON error.
fn too_large(e: BytesRejection) -> Error {
    Error::BodyTooLarge(format!(
        "an agent's body is limited to {MAX_REPORT_BYTES} bytes ({e})"
    ))
}

/// How long the next-job poll may wait.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wait {
    wait_secs: Option<u64>,
}

/// `GET /api/node/jobs`: the node's next job, waiting up to `waitSecs` (30 at most); 204 when
/// none came.
pub async fn next_job(
    State(state): State<AppState>,
    NodeCaller(node): NodeCaller,
    QueryParams(wait): QueryParams<Wait>,
) -> Response {
    let wait = Duration::from_secs(wait.wait_secs.unwrap_or(20).min(30));
    match state.nodes.next_job(&node, wait).await {
        Some(job) => Json(job).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// `POST /api/node/jobs/{job}/parts`: the upload URL of one part of the job's archive.
pub async fn part(
    State(state): State<AppState>,
    NodeCaller(node): NodeCaller,
    PathParams(job): PathParams<String>,
    JsonBody(req): JsonBody<PartRequest>,
) -> Result<Json<PartUrl>> {
    let url = state.nodes.part_url(&node, &job, req.part)?;
    Ok(Json(PartUrl { url }))
}

/// `POST /api/node/jobs/{job}/progress`: more bytes moved.
pub async fn progress(
    State(state): State<AppState>,
    NodeCaller(node): NodeCaller,
    PathParams(job): PathParams<String>,
    JsonBody(p): JsonBody<JobProgress>,
) -> Result<StatusCode> {
    state.nodes.progress(&node, &job, p.bytes)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/node/jobs/{job}/done`: how the job ended.
pub async fn done(
    State(state): State<AppState>,
    NodeCaller(node): NodeCaller,
    PathParams(job): PathParams<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<StatusCode> {
    let body = body.map_err(too_large)?;
    if body.len() > MAX_REPORT_BYTES {
        return Err(Error::BodyTooLarge(format!(
            "an outcome is limited to {MAX_REPORT_BYTES} bytes"
        )));
    }
    let done: JobDone = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("not a job outcome: {e}")))?;
    state.nodes.finish(&node, &job, done)?;
    Ok(StatusCode::NO_CONTENT)
}
