//! Reading the inventory: volumes and buckets of the docks the caller sees (buckets together
//! with this daemon's own), a page at a time, and the summary cards.

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::{CloudProvider, InventoryQuery, InventoryRecord, ResourceKind};
use crate::access::Caller;
use crate::context::Core;
use crate::error::{Error, Result};
use crate::model::BucketRecord;
use crate::store::BucketQuery;

/// Largest page.
pub const MAX_LIMIT: usize = 1000;

/// Filters of a listing.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this provider (`vultr`, `digitalocean`, `linode`; for buckets also `kalpana` for
    /// managed ones and `s3`, `r2`, `other` for external ones).
    pub provider: Option<String>,
    /// Only this region.
    pub region: Option<String>,
    /// Only this dock (then only cloud records).
    pub dock_id: Option<String>,
    /// Only ids after this one.
    pub after: Option<String>,
    /// Page size.
    pub limit: usize,
}

/// One entry of the bucket inventory.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryBucket {
    /// `cloud` (synced from a dock), `managed` (a container of this daemon) or `external` (an
    /// S3, R2 or other bucket registered here).
    pub source: &'static str,
    /// Id (the bucket's id for this daemon's buckets).
    pub id: String,
    /// The dock it came from (cloud only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dock_id: Option<String>,
    /// `linode`…, `kalpana` for managed buckets, `s3`, `r2` or `other` for external ones.
    pub provider: String,
    /// The provider's id of it.
    pub provider_resource_id: String,
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Status.
    pub status: String,
    /// Linode cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Linode hostname.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// S3 endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Number of objects.
    pub object_count: u64,
    /// The provider's whole object (cloud only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_api_data: Option<serde_json::Value>,
    /// Last change.
    pub updated_at: String,
}

impl From<InventoryRecord> for InventoryBucket {
    fn from(r: InventoryRecord) -> Self {
        InventoryBucket {
            source: "cloud",
            id: r.id,
            dock_id: Some(r.dock_id),
            provider: r.provider.as_str().to_string(),
            provider_resource_id: r.provider_resource_id,
            name: r.name,
            region: r.region,
            status: r.status,
            cluster: r.cluster,
            hostname: r.hostname,
            s3_endpoint: r.s3_endpoint,
            size_bytes: r.size_bytes.unwrap_or(0),
            object_count: r.object_count.unwrap_or(0),
            full_api_data: Some(r.full_api_data),
            updated_at: r.updated_at,
        }
    }
}

/// The docks the caller sees, or the one asked for (404 when not visible).
async fn dock_ids(state: &Core, caller: &Caller, only: Option<&str>) -> Result<Vec<String>> {
    match only {
        Some(id) => Ok(vec![super::visible(state, caller, id).await?.id]),
        None => Ok(super::list(state, caller)
            .await?
            .into_iter()
            .map(|d| d.id)
            .collect()),
    }
}

fn cloud_provider(p: Option<&str>) -> Result<Option<Option<CloudProvider>>> {
    // Outer none: no filter; inner none: a provider that is not a cloud's (no cloud records).
    Ok(p.map(|p| CloudProvider::ALL.into_iter().find(|c| c.as_str() == p)))
}

/// A page of volumes.
pub async fn volumes(
    state: &Core,
    caller: &Caller,
    f: &Filter,
) -> Result<(Vec<InventoryRecord>, Option<String>)> {
    let mut rows = cloud(state, caller, ResourceKind::Volume, f, f.limit + 1).await?;
    Ok(page(&mut rows, f.limit, |r| r.id.clone()))
}

async fn cloud(
    state: &Core,
    caller: &Caller,
    kind: ResourceKind,
    f: &Filter,
    limit: usize,
) -> Result<Vec<InventoryRecord>> {
    let provider = match cloud_provider(f.provider.as_deref())? {
        None => None,
        Some(Some(p)) => Some(p),
        Some(None) => return Ok(Vec::new()),
    };
    let dock_ids = dock_ids(state, caller, f.dock_id.as_deref()).await?;
    if dock_ids.is_empty() {
        return Ok(Vec::new());
    }
    state
        .store
        .list_inventory(&InventoryQuery {
            kind,
            dock_ids,
            provider,
            region: f.region.clone(),
            after: f.after.clone(),
            limit,
        })
        .await
}

fn page<T>(rows: &mut Vec<T>, limit: usize, id: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(&id)
    } else {
        None
    };
    (std::mem::take(rows), next)
}

/// This daemon's bucket as an inventory entry.
fn own(b: &BucketRecord) -> InventoryBucket {
    let (source, provider, endpoint) = match b.external() {
        Some(x) => (
            "external",
            serde_json::to_value(x.provider)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "other".into()),
            Some(x.endpoint.clone()),
        ),
        _ => ("managed", "kalpana".to_string(), None),
    };
    InventoryBucket {
        source,
        id: b.id.clone(),
        dock_id: None,
        provider,
        provider_resource_id: b.id.clone(),
        name: b.name.clone(),
        region: b.region.clone(),
        status: b.status.as_str().to_string(),
        cluster: None,
        hostname: None,
        s3_endpoint: endpoint,
        size_bytes: b.total_size_bytes,
        object_count: b.object_count,
        full_api_data: None,
        updated_at: b.updated_at.clone(),
    }
}

/// The caller's own buckets (managed and external) matching the filter, in id order.
async fn own_buckets(state: &Core, caller: &Caller, f: &Filter) -> Result<Vec<InventoryBucket>> {
    if f.dock_id.is_some() {
        return Ok(Vec::new());
    }
    let rows = state
        .store
        .list_buckets(&BucketQuery {
            owner: Some(caller.user.id.clone()),
            teams: caller.teams.clone(),
            after: f.after.clone(),
            limit: usize::MAX,
            ..Default::default()
        })
        .await?;
    Ok(rows
        .iter()
        .filter(|b| caller.can_see(b) && !b.deleting)
        .map(own)
        .filter(|e| f.provider.as_ref().is_none_or(|p| &e.provider == p))
        .filter(|e| f.region.as_ref().is_none_or(|r| &e.region == r))
        .collect())
}

/// A page of buckets: cloud ones and this daemon's, in one id order.
pub async fn buckets(
    state: &Core,
    caller: &Caller,
    f: &Filter,
) -> Result<(Vec<InventoryBucket>, Option<String>)> {
    let mut rows: Vec<InventoryBucket> = cloud(state, caller, ResourceKind::Bucket, f, f.limit + 1)
        .await?
        .into_iter()
        .map(InventoryBucket::from)
        .collect();
    rows.extend(own_buckets(state, caller, f).await?);
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(page(&mut rows, f.limit, |e| e.id.clone()))
}

/// Counts and sizes of one provider in one region.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SummaryRow {
    /// Provider.
    pub provider: String,
    /// Region.
    pub region: String,
    /// How many.
    pub count: u64,
    /// Total size in GB (volumes).
    pub size_gb: u64,
    /// Total size in bytes (buckets).
    pub size_bytes: u64,
    /// Total objects (buckets).
    pub object_count: u64,
}

/// The summary cards.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Docks the caller sees.
    pub docks: u64,
    /// Block volumes.
    pub volumes: u64,
    /// Their total size in GB.
    pub volume_gb: u64,
    /// Buckets (cloud and this daemon's).
    pub buckets: u64,
    /// Their total size in bytes.
    pub bucket_bytes: u64,
    /// Their total objects.
    pub bucket_objects: u64,
    /// Volumes per provider and region.
    pub volumes_by_region: Vec<SummaryRow>,
    /// Buckets per provider and region.
    pub buckets_by_region: Vec<SummaryRow>,
}

/// The summary of everything the caller sees.
pub async fn summary(state: &Core, caller: &Caller) -> Result<Summary> {
    let all = Filter {
        limit: usize::MAX - 1,
        ..Default::default()
    };
    let docks = dock_ids(state, caller, None).await?.len() as u64;
    let vols = cloud(state, caller, ResourceKind::Volume, &all, usize::MAX).await?;
    let (bucks, _) = buckets(state, caller, &all).await?;
    let mut s = Summary {
        docks,
        ..Default::default()
    };
    let mut by: BTreeMap<(String, String), SummaryRow> = BTreeMap::new();
    for v in &vols {
        s.volumes += 1;
        s.volume_gb += v.size_gb.unwrap_or(0);
        let row = by
            .entry((v.provider.as_str().to_string(), v.region.clone()))
            .or_default();
        row.count += 1;
        row.size_gb += v.size_gb.unwrap_or(0);
    }
    s.volumes_by_region = rows(by);
    let mut by: BTreeMap<(String, String), SummaryRow> = BTreeMap::new();
    for b in &bucks {
        s.buckets += 1;
        s.bucket_bytes += b.size_bytes;
        s.bucket_objects += b.object_count;
        let row = by
            .entry((b.provider.clone(), b.region.clone()))
            .or_default();
        row.count += 1;
        row.size_bytes += b.size_bytes;
        row.object_count += b.object_count;
    }
    s.buckets_by_region = rows(by);
    Ok(s)
}

fn rows(by: BTreeMap<(String, String), SummaryRow>) -> Vec<SummaryRow> {
    by.into_iter()
        .map(|((provider, region), mut row)| {
            row.provider = provider;
            row.region = region;
            row
        })
        .collect()
}

/// Checks a page size.
pub fn limit(asked: Option<usize>) -> Result<usize> {
    match asked {
        None => Ok(100),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(Error::Invalid(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        ))),
    }
}
