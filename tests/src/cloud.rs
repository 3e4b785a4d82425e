//! Stand-ins for the cloud providers' APIs, which cannot be reached from these machines. Each
//! answers like the provider's documented API: bearer auth checked on every request (401 with
//! the provider's error shape otherwise), its account read, and its listing paged its own way —
//! Vultr `meta.links.next` cursors, DigitalOcean absolute `links.pages.next` URLs, Linode
//! `page`/`pages` — with the seeds' JSON per resource. Faults on demand: one 429 with
//! `Retry-After`, a failing page, a page of garbage.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// Which provider a stand-in plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    /// Vultr blocks.
    Vultr,
    /// DigitalOcean volumes.
    DigitalOcean,
    /// Linode buckets.
    Linode,
}

impl Cloud {
    /// The daemon's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Cloud::Vultr => "vultr",
            Cloud::DigitalOcean => "digitalocean",
            Cloud::Linode => "linode",
        }
    }

    /// The daemon's variable naming its base URL.
    pub fn url_var(self) -> String {
        format!("KALPANA_PROVIDER_URL_{}", self.name().to_ascii_uppercase())
    }

    /// Resource `i` as the provider answers it (the seeds' objects, numbered).
    pub fn resource(self, i: usize) -> Value {
        let region = if i.is_multiple_of(2) { "lax" } else { "ewr" };
        match self {
            Cloud::Vultr => json!({
                "id": format!("blk-{i:05}"),
                "date_created": "2025-11-14T18:12:48+00:00",
                "cost": 1,
                "pending_charges": 0.01,
                "status": "active",
                "size_gb": 10 + i % 5,
                "region": region,
                "attached_to_instance": if i.is_multiple_of(3) { format!("inst-{i}") } else { String::new() },
                "attached_to_instance_ip": "",
                "attached_to_instance_label": if i.is_multiple_of(3) { format!("web-{i}") } else { String::new() },
                "label": format!("sdtest-{i}"),
                "mount_id": format!("{region}-ae6c4452b9{i:05}"),
                "block_type": "high_perf",
                "os_id": 0,
                "snapshot_id": "0",
                "bootable": false
            }),
            Cloud::DigitalOcean => json!({
                "id": format!("3b6381a6-c187-11f0-a93d-{i:012}"),
                "name": format!("sd-test-do-{i}"),
                "created_at": "2025-11-14T18:25:00Z",
                "description": "",
                "droplet_ids": [529967704u64 + i as u64],
                "region": { "name": "Atlanta 1", "slug": "atl1", "available": false },
                "size_gigabytes": 10,
                "filesystem_type": "ext4",
                "filesystem_label": "",
                "tags": null
            }),
            Cloud::Linode => json!({
                "hostname": format!("sdtest-{i}.us-sea-1.linodeobjects.com"),
                "label": format!("sdtest-{i}"),
                "created": "2025-11-14T18:14:48",
                "region": "us-sea",
                "cluster": "us-sea-1",
                "size": 1000 * i as u64,
                "objects": i as u64,
                "endpoint_type": "E1",
                "s3_endpoint": "us-sea-1.linodeobjects.com"
            }),
        }
    }
}

/// What a stand-in holds and does; tests change it between syncs.
#[derive(Debug, Default)]
pub struct Account {
    /// The token it accepts.
    pub token: String,
    /// Its resources as the provider answers them.
    pub resources: Vec<Value>,
    /// Most resources per page.
    pub page_size: usize,
    /// The next listing request gets a 429 with this `Retry-After`, once.
    pub rate_limit_once: Option<u64>,
    /// Listing pages (0-based) that answer 500.
    pub failing_page: Option<usize>,
    /// Listing pages (0-based) that answer something that is not JSON.
    pub garbage_page: Option<usize>,
    /// Requests answered, by path.
    pub requests: Vec<String>,
    /// Requests that came without the right bearer token.
    pub unauthorised: usize,
}

/// A running stand-in.
pub struct StandIn {
    /// Which provider.
    pub cloud: Cloud,
    /// Its base URL.
    pub url: String,
    /// Its state.
    pub account: Arc<Mutex<Account>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = (Cloud, Arc<Mutex<Account>>, String);

impl StandIn {
    /// Starts a stand-in of `cloud` with `count` resources, `page_size` a page, accepting `token`.
    pub async fn start(cloud: Cloud, token: &str, count: usize, page_size: usize) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let account = Arc::new(Mutex::new(Account {
            token: token.to_string(),
            resources: (0..count).map(|i| cloud.resource(i)).collect(),
            page_size: page_size.max(1),
            ..Default::default()
        }));
        let (account_path, list_path) = match cloud {
            Cloud::Vultr => ("/v2/account", "/v2/blocks"),
            Cloud::DigitalOcean => ("/v2/account", "/v2/volumes"),
            Cloud::Linode => ("/v4/profile", "/v4/object-storage/buckets"),
        };
        let app = Router::new()
            .route(account_path, get(account_read))
            .route(list_path, get(listing))
            .with_state((cloud, account.clone(), url.clone()));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(StandIn {
            cloud,
            url,
            account,
            task,
        })
    }

    /// Changes the account.
    pub fn with<T>(&self, f: impl FnOnce(&mut Account) -> T) -> T {
        let mut a = self.account.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut a)
    }
}

/// The provider's 401, in its own shape.
fn refused(cloud: Cloud) -> Response {
    let body = match cloud {
        Cloud::Vultr => json!({ "error": "Invalid API token.", "status": 401 }),
        Cloud::DigitalOcean => {
            json!({ "id": "unauthorized", "message": "Unable to authenticate you" })
        }
        Cloud::Linode => json!({ "errors": [{ "reason": "Invalid Token" }] }),
    };
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// Counts the request; a refusal unless it carries the account's token.
fn authorised(cloud: Cloud, a: &mut Account, headers: &HeaderMap, path: &str) -> Option<Response> {
    a.requests.push(path.to_string());
    let want = format!("Bearer {}", a.token);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str()) {
        None
    } else {
        a.unauthorised += 1;
        Some(refused(cloud))
    }
}

async fn account_read(State((cloud, account, _)): State<Shared>, headers: HeaderMap) -> Response {
    let mut a = account.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = authorised(cloud, &mut a, &headers, "account") {
        return r;
    }
    Json(json!({ "account": { "email": "ops@example.com" } })).into_response()
}

async fn listing(
    State((cloud, account, base)): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let mut a = account.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = authorised(cloud, &mut a, &headers, "list") {
        return r;
    }
    if let Some(secs) = a.rate_limit_once.take() {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
            Json(json!({ "error": "Rate limit reached" })),
        )
            .into_response();
    }
    let size = a.page_size;
    let total = a.resources.len();
    let pages = total.div_ceil(size).max(1);
    // Each provider's way of saying which page: a cursor, a page number.
    let index = match cloud {
        Cloud::Vultr => q
            .get("cursor")
            .and_then(|c| c.strip_prefix("page:"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        _ => q
            .get("page")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(1)
            .saturating_sub(1),
    };
    if a.failing_page == Some(index) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "message": "Server was unable to give you a response." })),
        )
            .into_response();
    }
    if a.garbage_page == Some(index) {
        return (StatusCode::OK, "<html>maintenance</html>").into_response();
    }
    let items: Vec<Value> = a
        .resources
        .iter()
        .skip(index * size)
        .take(size)
        .cloned()
        .collect();
    let last = index + 1 >= pages;
    let body = match cloud {
        Cloud::Vultr => json!({
            "blocks": items,
            "meta": { "total": total, "links": {
                "next": if last { String::new() } else { format!("page:{}", index + 1) },
                "prev": if index == 0 { String::new() } else { format!("page:{}", index - 1) },
            } }
        }),
        Cloud::DigitalOcean => {
            let mut pages_links = json!({});
            if !last {
                pages_links["next"] = json!(format!(
                    "{base}/v2/volumes?page={}&per_page={size}",
                    index + 2
                ));
                pages_links["last"] =
                    json!(format!("{base}/v2/volumes?page={pages}&per_page={size}"));
            }
            json!({ "volumes": items, "links": { "pages": pages_links }, "meta": { "total": total } })
        }
        Cloud::Linode => json!({
            "data": items, "page": index + 1, "pages": pages, "results": total
        }),
    };
    Json(body).into_response()
}
