//! The cloud inventory: `/api/inventory/volumes`, `/buckets` and `/summary`.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::Result;
use crate::extract::QueryParams;
use crate::openapi::{Failed, Refused};
use kalpana_domain::inventory::listing::{self, Filter, InventoryBucket, Summary};
use kalpana_domain::inventory::model::InventoryRecord;

/// Filters and paging of an inventory listing.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InventoryQuery {
    /// Only this provider.
    provider: Option<String>,
    /// Only this region.
    region: Option<String>,
    /// Only this dock.
    dock_id: Option<String>,
    /// Page size (1-1000, default 100).
    limit: Option<usize>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

impl InventoryQuery {
    fn filter(self) -> Result<Filter> {
        Ok(Filter {
            provider: self.provider,
            region: self.region,
            dock_id: self.dock_id,
            after: self.cursor,
            limit: listing::limit(self.limit)?,
        })
    }
}

/// A page of volumes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumePage {
    volumes: Vec<InventoryRecord>,
    next_cursor: Option<String>,
}

/// A page of buckets.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryBucketPage {
    buckets: Vec<InventoryBucket>,
    next_cursor: Option<String>,
}

/// `GET /api/inventory/volumes`: block volumes of the docks the caller sees.
#[utoipa::path(
    get,
    path = "/api/inventory/volumes",
    tag = "inventory",
    operation_id = "inventory_volumes",
    params(InventoryQuery),
    responses(
        (status = 200, description = "a page of volumes", body = VolumePage),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn volumes(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<InventoryQuery>,
) -> Result<Json<VolumePage>> {
    let (volumes, next_cursor) = listing::volumes(&state, &caller, &q.filter()?).await?;
    Ok(Json(VolumePage {
        volumes,
        next_cursor,
    }))
}

/// `GET /api/inventory/buckets`: cloud buckets of the docks the caller sees and this daemon's
/// own buckets, each with its `source`.
#[utoipa::path(
    get,
    path = "/api/inventory/buckets",
    tag = "inventory",
    operation_id = "inventory_buckets",
    params(InventoryQuery),
    responses(
        (status = 200, description = "a page of buckets", body = InventoryBucketPage),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn buckets(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<InventoryQuery>,
) -> Result<Json<InventoryBucketPage>> {
    let (buckets, next_cursor) = listing::buckets(&state, &caller, &q.filter()?).await?;
    Ok(Json(InventoryBucketPage {
        buckets,
        next_cursor,
    }))
}

/// `GET /api/inventory/summary`: counts and sizes, per provider and region.
#[utoipa::path(
    get,
    path = "/api/inventory/summary",
    tag = "inventory",
    operation_id = "inventory_summary",
    responses(
        (status = 200, description = "the summary cards", body = Summary),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn summary(State(state): State<AppState>, caller: Caller) -> Result<Json<Summary>> {
    Ok(Json(listing::summary(&state, &caller).await?))
}
