//! The MCP server (`kalpana-buckets mcp`) as an agent's client would use it: JSON-RPC over its
//! stdin/stdout, acting through the REST API with one user's token.

use std::process::Stdio;
use std::time::Duration;

use kalpana_e2e::{daemon_binary, Daemon};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

struct Session {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    next: u64,
}

impl Session {
    async fn start(url: &str, token: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(daemon_binary()?)
            .arg("mcp")
            .env("KALPANA_URL", url)
            .env("KALPANA_TOKEN", token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut s = Session {
            child,
            stdin,
            lines,
            next: 1,
        };
        let init = s
            .request(
                "initialize",
                json!({ "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": { "name": "kalpana-test", "version": "1" } }),
            )
            .await?;
        anyhow::ensure!(init["capabilities"]["tools"].is_object(), "{init}");
        s.notify("notifications/initialized").await?;
        Ok(s)
    }

    async fn send(&mut self, msg: Value) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{msg}\n").as_bytes()).await?;
        Ok(self.stdin.flush().await?)
    }

    async fn notify(&mut self, method: &str) -> anyhow::Result<()> {
        self.send(json!({ "jsonrpc": "2.0", "method": method }))
            .await
    }

    async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next;
        self.next += 1;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await?;
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
                .await??
                .ok_or_else(|| anyhow::anyhow!("the MCP server closed stdout"))?;
            let msg: Value = serde_json::from_str(&line)?;
            if msg["id"] == id {
                anyhow::ensure!(msg["error"].is_null(), "{method}: {msg}");
                return Ok(msg["result"].clone());
            }
        }
    }

    /// Calls a tool: its JSON answer, or Err with its error text.
    async fn tool(&mut self, name: &str, args: Value) -> anyhow::Result<Result<Value, String>> {
        let r = self
            .request("tools/call", json!({ "name": name, "arguments": args }))
            .await?;
        let text = r["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if r["isError"] == true {
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
    let tools = s.request("tools/list", json!({})).await?;
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
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
        assert!(names.contains(&want), "{want} missing from {names:?}");
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
    drop(s.stdin);
    let _ = tokio::time::timeout(Duration::from_secs(5), s.child.wait()).await;
    Ok(())
}
