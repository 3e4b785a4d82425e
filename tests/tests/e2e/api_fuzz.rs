//! The OpenAPI document against the live daemon: schemathesis (from PyPI, installed by
//! `.ci/build-test-images`) generates requests for every operation from `/api/openapi.json`, as
//! the admin, and fails on any 5xx answer and on any answer the document does not describe.

use std::process::Command;

use kalpana_e2e::cloud::{Cloud, StandIn};
use kalpana_e2e::{Daemon, DaemonOptions};
use serde_json::json;

/// The schemathesis CLI through the interpreter, so no console-script shim on PATH is needed.
fn schemathesis() -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "schemathesis.cli"]);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() -> anyhow::Result<()> {
    let version = Command::new("schemathesis").arg("--version").output();
    let Ok(version) = version.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()) else {
        anyhow::bail!(
            "schemathesis is not installed: run `.ci/build-test-images` (it pip-installs it) or `python3 -m pip install schemathesis`"
        );
    };
    // Cloud provider stand-ins, so dock routes reach an API that answers (random tokens: 401).
    let mut clouds = Vec::new();
    for cloud in [Cloud::Vultr, Cloud::DigitalOcean, Cloud::Linode] {
        clouds.push(StandIn::start(cloud, "fuzz-token", 3, 2).await?);
    }
    let d = Daemon::start_with(DaemonOptions {
        env: clouds
            .iter()
            .map(|s| (s.cloud.url_var(), s.url.clone()))
            .collect(),
        ..Default::default()
    })
    .await?;
    let admin = d.admin();

    // The document covers the routes the issue names, each with its error answers.
    let (status, doc) = d.anonymous().send("GET", "/api/openapi.json", None).await?;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let operations: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|p| p.as_object().map_or(0, |m| m.len()))
        .sum();
    assert_eq!(operations, 77, "operations in the document");
    assert!(doc["components"]["responses"]["Refused"]["content"]["application/json"].is_object());
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("operation") {
            let public = matches!(
                path.as_str(),
                "/healthz" | "/readyz" | "/metrics" | "/api/openapi.json"
            );
            if !public {
                for class in ["4XX", "5XX"] {
                    assert!(
                        op["responses"][class]["$ref"].is_string(),
                        "{method} {path} documents no {class} error body"
                    );
                }
            }
        }
    }

    // Real ids for the bucket routes: objects against one running bucket, lifecycle calls
    // (stop, rotate, delete, …) against another.
    let (status, a) = admin
        .create_bucket(json!({ "name": "fuzz-objects" }))
        .await?;
    assert_eq!(status, 201, "{a}");
    let (status, b) = admin
        .create_bucket(json!({ "name": "fuzz-lifecycle" }))
        .await?;
    assert_eq!(status, 201, "{b}");
    let a_id = a["id"].as_str().expect("id");
    let b_id = b["id"].as_str().expect("id");
    let (status, _) = admin
        .put_object(a_id, "doc.txt", b"hello".to_vec(), Some("text/plain"))
        .await?;
    assert_eq!(status, 201);
    let config = d.data_dir.join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[operations]]
include-path-regex = "^/api/buckets/\\{{id\\}}/(objects|presigned|stats)"
parameters = {{ "path.id" = "{a_id}" }}

[[operations]]
include-path-regex = "^/api/buckets/\\{{id\\}}(/(start|stop|credentials|domain))?$"
parameters = {{ "path.id" = "{b_id}" }}
"#
        ),
    )?;
    let out = schemathesis()
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{}/api/openapi.json", d.url)])
        .args(["-H", &format!("Authorization: Bearer {}", d.admin_token)])
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
            // An event stream never ends; tests/e2e/auth.rs reads it.
            "--exclude-path",
            "/api/events",
            "--max-examples",
            "15",
            "--workers",
            "1",
            "--seed",
            "20261123",
            "--request-timeout",
            "60",
            "--no-color",
        ])
        .current_dir(&d.data_dir)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let cases = stdout
        .lines()
        .find_map(|l| {
            let l = l.trim();
            l.split_once(" generated")
                .and_then(|(n, _)| n.trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    println!("{version}: {cases} test cases against {operations} operations");
    assert!(
        out.status.success(),
        "schemathesis failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(cases > 500, "only {cases} cases ran:\n{stdout}");
    Ok(())
}
