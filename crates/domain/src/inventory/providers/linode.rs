//! Linode object storage: `GET /v4/object-storage/buckets`, paged by `page` of `pages`.

use serde_json::{json, Value};

use super::{opt_string, record, string, Adapter, Listing};
use crate::inventory::model::{CloudProvider, InventoryRecord, ResourceKind};

/// Linode's API.
pub struct Linode;

impl Adapter for Linode {
    fn provider(&self) -> CloudProvider {
        CloudProvider::Linode
    }
    fn default_base_url(&self) -> &'static str {
        "https://api.linode.com"
    }
    fn check_path(&self) -> &'static str {
        "/v4/profile"
    }
    fn listings(&self) -> &'static [Listing] {
        &[Listing {
            kind: ResourceKind::Bucket,
            first_page: "/v4/object-storage/buckets?page=1&page_size=500",
            items: "data",
            next,
            map,
        }]
    }
}

/// The next page: `page + 1` while it is below `pages`.
fn next(page: &Value, url: &str) -> Result<Option<String>, String> {
    let (Some(at), Some(of)) = (page["page"].as_u64(), page["pages"].as_u64()) else {
        return Err("a page without `page` and `pages`".into());
    };
    if at >= of {
        return Ok(None);
    }
    let mut u = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let kept: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut q = u.query_pairs_mut();
        q.clear();
        q.append_pair("page", &(at + 1).to_string());
        for (k, v) in &kept {
            q.append_pair(k, v);
        }
    }
    Ok(Some(u.to_string()))
}

/// A Linode bucket as the seed maps it: the label is its id and name, status `active`.
pub fn map(bucket: &Value) -> Result<InventoryRecord, String> {
    let label = string(bucket, "label")?;
    let mut r = record(
        ResourceKind::Bucket,
        CloudProvider::Linode,
        label.clone(),
        label,
        string(bucket, "region")?,
        "active".to_string(),
        json!({ "bucket": bucket }),
    );
    r.cluster = opt_string(bucket, "cluster");
    r.hostname = opt_string(bucket, "hostname");
    r.s3_endpoint = opt_string(bucket, "s3_endpoint");
    r.size_bytes = Some(bucket["size"].as_u64().unwrap_or(0));
    r.object_count = Some(bucket["objects"].as_u64().unwrap_or(0));
    Ok(r)
}
