//! The MCP server (`kalpana-buckets mcp`) driven by the official MCP client (rmcp) over stdio, as
//! an agent's host would: it acts through the REST API with one user's token.

use std::process::Stdio;
use std::time::Duration;

use kalpana_e2e::{daemon_binary, Daemon};
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use rmcp::ServiceExt;
use serde_json::{json, Value};
use tokio::process::Command;

/// A session of the official MCP client (rmcp) with `kalpana-buckets mcp` as its child process.
struct Session(rmcp::service::RunningService<rmcp::RoleClient, ()>);

impl Session {
    async fn start(url: &str, token: &str) -> anyhow::Result<Self> {
        let mut cmd = Command::new(daemon_binary()?);
        cmd.arg("mcp")
            .env("KALPANA_URL", url)
            .env("KALPANA_TOKEN", token)
            .stderr(Stdio::null());
        let client = ().serve(TokioChildProcess::new(cmd)?).await?;
        let tools = client
            .peer_info()
            .is_some_and(|i| i.capabilities.tools.is_some());
        anyhow::ensure!(tools, "the server offers no tools");
        Ok(Session(client))
    }

    async fn tool_names(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .0
            .list_all_tools()
            .await?
            .into_iter()
            .map(|t| t.name.to_string())
            .collect())
    }

    /// Calls a tool: its JSON answer, or Err with its error text.
    async fn tool(&mut self, name: &str, args: Value) -> anyhow::Result<Result<Value, String>> {
        let args = args.as_object().cloned().unwrap_or_default();
        let r = self
            .0
            .call_tool(CallToolRequestParams::new(name.to_string()).with_arguments(args))
            .await?;
        let text = r
            .content
            .first()
            .and_then(|c| c.as_text())
            .map(|t| t.text.clone())
            .unwrap_or_default();
        if r.is_error == Some(true) {
            return Ok(Err(text));
        }
        Ok(Ok(serde_json::from_str(&text)?))
    }
}

#[tokio::test]
async fn an_agent_uses_its_users_buckets_through_mcp_and_nothing_else() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let alice_token = alice.raw().2.expect("token").to_string();
    let (mallory, _) = d.new_user("mallory").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "notes" })).await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let (status, m) = mallory.create_bucket(json!({ "name": "secret" })).await?;
    assert_eq!(status, 201, "{m}");
    let mid = m["id"].as_str().expect("id").to_string();

    let mut s = Session::start(&d.url, &alice_token).await?;
    let names = s.tool_names().await?;
    for want in [
        "list_buckets",
        "list_objects",
        "read_object",
        "write_object",
        "delete_object",
        "presign_download",
        "presign_upload",
        "bucket_stats",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }

    let listed = s
        .tool("list_buckets", json!({}))
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(
        listed["buckets"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(listed["buckets"][0]["id"], id.as_str());

    let wrote = s
        .tool(
            "write_object",
            json!({ "bucketId": id, "key": "today/summary.md", "text": "# Done\n" }),
        )
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(wrote["size"], 7, "{wrote}");
    let bin = s
        .tool(
            "write_object",
            json!({ "bucketId": id, "key": "blob.bin", "base64": "AP8A/w==" }),
        )
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(bin["size"], 4, "{bin}");
    let read = s
        .tool(
            "read_object",
            json!({ "bucketId": id, "key": "today/summary.md" }),
        )
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(read["text"], "# Done\n", "{read}");
    let read = s
        .tool("read_object", json!({ "bucketId": id, "key": "blob.bin" }))
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(read["base64"], "AP8A/w==", "{read}");
    let page = s
        .tool(
            "list_objects",
            json!({ "bucketId": id, "prefix": "today/" }),
        )
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(page["objects"][0]["key"], "today/summary.md", "{page}");
    let url = s
        .tool(
            "presign_download",
            json!({ "bucketId": id, "key": "today/summary.md" }),
        )
        .await?
        .map_err(anyhow::Error::msg)?;
    let got = reqwest::get(url["url"].as_str().expect("url")).await?;
    assert_eq!(got.text().await?, "# Done\n");
    let stats = s
        .tool("bucket_stats", json!({ "bucketId": id }))
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(stats["objectCount"], 2, "{stats}");
    s.tool(
        "delete_object",
        json!({ "bucketId": id, "key": "blob.bin" }),
    )
    .await?
    .map_err(anyhow::Error::msg)?;

    // Another user's bucket, a bad key, a missing argument: tool errors, and the server goes on.
    let refused = s
        .tool("read_object", json!({ "bucketId": mid, "key": "x" }))
        .await?
        .expect_err("another user's bucket");
    assert!(refused.contains("not found"), "{refused}");
    let bad = s
        .tool(
            "write_object",
            json!({ "bucketId": id, "key": "../up", "text": "x" }),
        )
        .await?
        .expect_err("a bad key");
    assert!(bad.contains("400"), "{bad}");
    let missing = s
        .tool("read_object", json!({ "bucketId": id }))
        .await?
        .expect_err("no key");
    assert!(missing.contains("`key` is required"), "{missing}");
    let still = s.tool("list_buckets", json!({})).await?;
    assert!(still.is_ok());
    tokio::time::timeout(Duration::from_secs(5), s.0.cancel()).await??;
    Ok(())
}
