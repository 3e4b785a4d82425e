//! Vultr block storage: `GET /v2/blocks`, paged by the `meta.links.next` cursor.

use serde_json::{json, Value};

use super::{number, opt_string, record, string, Adapter, Listing};
use crate::inventory::model::{CloudProvider, InventoryRecord, ResourceKind};

/// Vultr's API.
pub struct Vultr;

impl Adapter for Vultr {
    fn provider(&self) -> CloudProvider {
        CloudProvider::Vultr
    }
    fn default_base_url(&self) -> &'static str {
        "https://api.vultr.com"
    }
    fn check_path(&self) -> &'static str {
        "/v2/account"
    }
    fn listings(&self) -> &'static [Listing] {
        &[Listing {
            kind: ResourceKind::Volume,
            first_page: "/v2/blocks?per_page=100",
            items: "blocks",
            next,
            map,
        }]
    }
}

/// The next page: the same listing with `cursor` set to `meta.links.next` (empty at the end).
fn next(page: &Value, url: &str) -> Result<Option<String>, String> {
    let cursor = page["meta"]["links"]["next"].as_str().unwrap_or("");
    if cursor.is_empty() {
        return Ok(None);
    }
    let mut u = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let per_page = u
        .query_pairs()
        .find(|(k, _)| k == "per_page")
        .map(|(_, v)| v.into_owned());
    {
        let mut q = u.query_pairs_mut();
        q.clear();
        if let Some(p) = per_page {
            q.append_pair("per_page", &p);
        }
        q.append_pair("cursor", cursor);
    }
    Ok(Some(u.to_string()))
}

/// A Vultr block as the seed maps it.
pub fn map(block: &Value) -> Result<InventoryRecord, String> {
    let id = string(block, "id")?;
    let name = opt_string(block, "label").unwrap_or_else(|| id.clone());
    let mut r = record(
        ResourceKind::Volume,
        CloudProvider::Vultr,
        id,
        name,
        string(block, "region")?,
        string(block, "status")?,
        json!({ "block": block }),
    );
    r.size_gb = Some(number(block, "size_gb")?);
    r.attached_to_instance = opt_string(block, "attached_to_instance");
    r.attached_to_instance_label = opt_string(block, "attached_to_instance_label");
    r.mount_id = opt_string(block, "mount_id");
    r.block_type = opt_string(block, "block_type");
    Ok(r)
}
