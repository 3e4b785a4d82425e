//! DigitalOcean volumes: `GET /v2/volumes`, paged by the absolute `links.pages.next` URL.

use serde_json::{json, Value};

use super::{number, opt_string, record, string, Adapter, Listing};
use crate::inventory::model::{CloudProvider, InventoryRecord, ResourceKind};

/// DigitalOcean's API.
pub struct DigitalOcean;

impl Adapter for DigitalOcean {
    fn provider(&self) -> CloudProvider {
        CloudProvider::Digitalocean
    }
    fn default_base_url(&self) -> &'static str {
        "https://api.digitalocean.com"
    }
    fn check_path(&self) -> &'static str {
        "/v2/account"
    }
    fn listings(&self) -> &'static [Listing] {
        &[Listing {
            kind: ResourceKind::Volume,
            first_page: "/v2/volumes?per_page=200",
            items: "volumes",
            next,
            map,
        }]
    }
}

/// The next page's URL as the provider gives it (checked to be under the base before use).
fn next(page: &Value, _url: &str) -> Result<Option<String>, String> {
    Ok(page["links"]["pages"]["next"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string))
}

/// A DigitalOcean volume as the seed maps it: status `active` (volumes have none), the first
/// droplet as the attached instance, the region's slug (or name).
pub fn map(volume: &Value) -> Result<InventoryRecord, String> {
    let region = &volume["region"];
    let region = opt_string(region, "slug")
        .or_else(|| opt_string(region, "name"))
        .unwrap_or_else(|| "unknown".to_string());
    let mut r = record(
        ResourceKind::Volume,
        CloudProvider::Digitalocean,
        string(volume, "id")?,
        string(volume, "name")?,
        region,
        "active".to_string(),
        json!({ "volume": volume }),
    );
    r.size_gb = Some(number(volume, "size_gigabytes")?);
    r.attached_to_instance = volume["droplet_ids"]
        .as_array()
        .and_then(|ids| ids.first())
        .map(|id| match id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    r.filesystem_type = opt_string(volume, "filesystem_type");
    Ok(r)
}
