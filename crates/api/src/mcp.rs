//! `kalpana-buckets mcp`: a Model Context Protocol server on stdio (the official Rust SDK,
//! `rmcp`) that lets an AI agent use buckets through the REST API, acting with `KALPANA_URL` and
//! `KALPANA_TOKEN` (give an agent its own user's token: it sees what that user sees, nothing
//! more). Tools: `list_buckets`, `list_objects`, `read_object` (text, or base64 past a size cap),
//! `write_object`, `delete_object`, `presign_download`, `presign_upload`, `bucket_stats`.
//! A refused call is a tool result with `isError` and the API's own message, never a crash.

use std::sync::Arc;

use base64::Engine;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, InitializeResult,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler, ServiceExt};
use serde_json::{json, Value};

/// Largest object `read_object` returns whole (larger ones are cut at this size, and said so).
const READ_CAP: u64 = 1024 * 1024;

/// The agent's way into the REST API.
#[derive(Clone)]
pub struct Agent {
    http: reqwest::Client,
    url: String,
    token: String,
}

/// Runs the server on stdin/stdout until the client closes it.
pub async fn run(url: String, token: String) -> anyhow::Result<()> {
    let agent = Agent {
        http: reqwest::Client::new(),
        url: url.trim_end_matches('/').to_string(),
        token,
    };
    let running = agent.serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    Ok(())
}

fn schema(v: Value) -> Arc<JsonObject> {
    Arc::new(v.as_object().cloned().unwrap_or_default())
}

fn tools() -> Vec<Tool> {
    let id = json!({ "type": "string", "description": "bucket id (from list_buckets)" });
    let key = json!({ "type": "string", "description": "object key" });
    vec![
        Tool::new(
            "list_buckets",
            "The buckets this token may use: id, name, status, endpoint, object count, size.",
            schema(json!({ "type": "object", "properties": {} })),
        ),
        Tool::new(
            "list_objects",
            "One page of a bucket's objects (up to 1000); pass nextCursor back for the next.",
            schema(json!({ "type": "object", "required": ["bucketId"], "properties": {
                "bucketId": id, "prefix": { "type": "string" }, "cursor": { "type": "string" } } })),
        ),
        Tool::new(
            "read_object",
            "An object's content: text when it is UTF-8, base64 otherwise; at most 1 MiB (a larger object is cut, and the answer says so).",
            schema(json!({ "type": "object", "required": ["bucketId", "key"], "properties": {
                "bucketId": id, "key": key } })),
        ),
        Tool::new(
            "write_object",
            "Stores an object from `text`, or from `base64` for binary content.",
            schema(json!({ "type": "object", "required": ["bucketId", "key"], "properties": {
                "bucketId": id, "key": key, "text": { "type": "string" },
                "base64": { "type": "string" }, "contentType": { "type": "string" } } })),
        ),
        Tool::new(
            "delete_object",
            "Deletes an object (also fine when it is not there).",
            schema(json!({ "type": "object", "required": ["bucketId", "key"], "properties": {
                "bucketId": id, "key": key } })),
        ),
        Tool::new(
            "presign_download",
            "A URL anyone can GET the object with until it expires (expiresIn seconds, default 3600).",
            schema(json!({ "type": "object", "required": ["bucketId", "key"], "properties": {
                "bucketId": id, "key": key, "expiresIn": { "type": "integer" } } })),
        ),
        Tool::new(
            "presign_upload",
            "A URL anyone can PUT the object to until it expires.",
            schema(json!({ "type": "object", "required": ["bucketId", "key"], "properties": {
                "bucketId": id, "key": key, "expiresIn": { "type": "integer" },
                "contentType": { "type": "string" }, "contentLength": { "type": "integer" } } })),
        ),
        Tool::new(
            "bucket_stats",
            "Object count and bytes of a bucket, and its container's resources.",
            schema(json!({ "type": "object", "required": ["bucketId"], "properties": {
                "bucketId": id } })),
        ),
    ]
}

/// A key as one percent-encoded path segment.
fn segment(key: &str) -> String {
    percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// What a tool call failed of, in words for the agent.
struct Refusal(String);

impl From<reqwest::Error> for Refusal {
    fn from(e: reqwest::Error) -> Self {
        Refusal(format!("the Kalpana API could not be reached: {e}"))
    }
}

/// The API's own words for a refused request.
async fn refusal(resp: reqwest::Response) -> Refusal {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    Refusal(format!(
        "{} ({status})",
        body["error"]["message"]
            .as_str()
            .unwrap_or("the request was refused")
    ))
}

fn arg<'a>(args: &'a JsonObject, name: &str) -> Result<&'a str, Refusal> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal(format!("`{name}` is required")))
}

impl Agent {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    /// Sends a request; the JSON answer, or the API's error message.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, Refusal> {
        let resp = req.send().await?;
        if !resp.status().is_success() {
            return Err(refusal(resp).await);
        }
        Ok(resp.json().await.unwrap_or(Value::Null))
    }

    async fn call(&self, name: &str, args: &JsonObject) -> Result<Value, Refusal> {
        use reqwest::Method;
        match name {
            "list_buckets" => {
                let page = self.send(self.request(Method::GET, "/api/buckets")).await?;
                let buckets: Vec<Value> = page["buckets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|b| {
                        json!({ "id": b["id"], "name": b["name"], "status": b["status"],
                            "kind": b["kind"], "endpoint": b["endpoint"],
                            "objectCount": b["objectCount"], "totalSizeBytes": b["totalSizeBytes"] })
                    })
                    .collect();
                Ok(json!({ "buckets": buckets }))
            }
            "list_objects" => {
                let id = arg(args, "bucketId")?;
                let query: Vec<String> = ["prefix", "cursor"]
                    .into_iter()
                    .filter_map(|q| {
                        args.get(q)
                            .and_then(Value::as_str)
                            .map(|v| format!("{q}={}", segment(v)))
                    })
                    .collect();
                let path = format!("/api/buckets/{}/objects?{}", segment(id), query.join("&"));
                self.send(self.request(Method::GET, &path)).await
            }
            "read_object" => {
                let (id, key) = (arg(args, "bucketId")?, arg(args, "key")?);
                let resp = self
                    .request(
                        Method::GET,
                        &format!("/api/buckets/{}/objects/{}", segment(id), segment(key)),
                    )
                    .header("Range", format!("bytes=0-{}", READ_CAP - 1))
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    return Err(refusal(resp).await);
                }
                let total = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.rsplit('/').next())
                    .and_then(|v| v.parse::<u64>().ok());
                let content_type = resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let bytes = resp.bytes().await?;
                let truncated = total.is_some_and(|t| t > bytes.len() as u64);
                Ok(match std::str::from_utf8(&bytes) {
                    Ok(text) => json!({ "key": key, "contentType": content_type, "text": text,
                        "size": total.unwrap_or(bytes.len() as u64), "truncated": truncated }),
                    Err(_) => json!({ "key": key, "contentType": content_type,
                        "base64": base64::engine::general_purpose::STANDARD.encode(&bytes),
                        "size": total.unwrap_or(bytes.len() as u64), "truncated": truncated }),
                })
            }
            "write_object" => {
                let (id, key) = (arg(args, "bucketId")?, arg(args, "key")?);
                let body = match (
                    args.get("text").and_then(Value::as_str),
                    args.get("base64").and_then(Value::as_str),
                ) {
                    (Some(t), None) => t.as_bytes().to_vec(),
                    (None, Some(b)) => base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .map_err(|_| Refusal("`base64` is not valid base64".into()))?,
                    _ => return Err(Refusal("give exactly one of `text` and `base64`".into())),
                };
                let mut req = self
                    .request(
                        Method::PUT,
                        &format!("/api/buckets/{}/objects/{}", segment(id), segment(key)),
                    )
                    .body(body);
                if let Some(ct) = args.get("contentType").and_then(Value::as_str) {
                    req = req.header("Content-Type", ct);
                }
                self.send(req).await
            }
            "delete_object" => {
                let (id, key) = (arg(args, "bucketId")?, arg(args, "key")?);
                let resp = self
                    .request(
                        Method::DELETE,
                        &format!("/api/buckets/{}/objects/{}", segment(id), segment(key)),
                    )
                    .send()
                    .await?;
                if resp.status().is_success() {
                    return Ok(json!({ "deleted": key }));
                }
                Err(refusal(resp).await)
            }
            "presign_download" | "presign_upload" => {
                let id = arg(args, "bucketId")?;
                let mut body = json!({ "key": arg(args, "key")? });
                for f in ["expiresIn", "contentType", "contentLength"] {
                    if let Some(v) = args.get(f) {
                        body[f] = v.clone();
                    }
                }
                let route = if name == "presign_download" {
                    "presigned-download"
                } else {
                    "presigned-upload"
                };
                self.send(
                    self.request(
                        Method::POST,
                        &format!("/api/buckets/{}/{route}", segment(id)),
                    )
                    .json(&body),
                )
                .await
            }
            "bucket_stats" => {
                let id = arg(args, "bucketId")?;
                self.send(self.request(Method::GET, &format!("/api/buckets/{}/stats", segment(id))))
                    .await
            }
            other => Err(Refusal(format!("there is no tool {other:?}"))),
        }
    }
}

impl ServerHandler for Agent {
    fn get_info(&self) -> InitializeResult {
        let mut info = InitializeResult::new(ServerCapabilities::builder().enable_tools().build());
        info.instructions = Some(
            "Kalpana Buckets: S3 buckets this token may use. Start with list_buckets; objects are addressed by bucketId and key.".into(),
        );
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let result = match self.call(&request.name, &args).await {
            Ok(v) => CallToolResult::success(vec![ContentBlock::text(v.to_string())]),
            Err(Refusal(why)) => CallToolResult::error(vec![ContentBlock::text(why)]),
        };
        Ok(result.into())
    }
}
