//! Port allocation under concurrency and exhaustion.

use std::collections::HashSet;

use kalpana_e2e::{docker_exists, Daemon, DaemonOptions};
use serde_json::json;

#[tokio::test]
async fn twenty_concurrent_creates_get_distinct_free_ports() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    // Another process listens on one port of the range: it must never be handed out.
    let busy = std::net::TcpListener::bind(("127.0.0.1", d.port_range.0 + 3))?;
    let busy_port = busy.local_addr()?.port();
    let (alice, _) = d.new_user("alice").await?;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let api = alice.clone();
        tasks.push(tokio::spawn(async move {
            api.create_bucket(json!({ "name": format!("many-{i}") }))
                .await
        }));
    }
    let mut ports = HashSet::new();
    for t in tasks {
        let (status, b) = t.await??;
        assert_eq!(status, 201, "{b}");
        assert_eq!(b["status"], "RUNNING", "{b}");
        let port = b["port"].as_u64().expect("port") as u16;
        assert_ne!(
            port, busy_port,
            "a port another process listens on was handed out"
        );
        assert!(ports.insert(port), "port {port} handed out twice");
    }
    assert_eq!(ports.len(), 20);
    drop(busy);
    Ok(())
}

#[tokio::test]
async fn twenty_concurrent_creates_of_one_name_have_one_winner() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let api = alice.clone();
        tasks.push(tokio::spawn(async move {
            api.send("POST", "/api/buckets", Some(json!({ "name": "contested" })))
                .await
        }));
    }
    let mut created = 0;
    let mut conflicts = 0;
    for t in tasks {
        let (status, body) = t.await??;
        match status {
            201 => created += 1,
            409 => {
                conflicts += 1;
                assert_eq!(body["error"]["code"], "conflict");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((created, conflicts), (1, 19));
    let (_, list) = alice.send("GET", "/api/buckets", None).await?;
    assert_eq!(list["buckets"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn exhausted_range_is_503_leaves_nothing_and_ports_return_on_delete() -> anyhow::Result<()> {
    let base = kalpana_e2e::port_base() + 399;
    let d = Daemon::start_with(DaemonOptions {
        port_range: Some(format!("{base}-{base}")),
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let (status, first) = alice.create_bucket(json!({ "name": "only-one" })).await?;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["port"].as_u64(), Some(u64::from(base)));
    let (status, body) = alice
        .send(
            "POST",
            "/api/buckets",
            Some(json!({ "name": "one-too-many" })),
        )
        .await?;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no free host ports"),
        "{body}"
    );
    let (_, list) = alice.send("GET", "/api/buckets", None).await?;
    assert_eq!(
        list["buckets"].as_array().map(Vec::len),
        Some(1),
        "nothing left of the refused create"
    );
    let names = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label=kalpana.instance={}", d.instance),
        ])
        .output()?;
    assert_eq!(String::from_utf8_lossy(&names.stdout).lines().count(), 1);

    // Deleting the first gives its port back.
    let id = first["id"].as_str().expect("id");
    let status = alice.delete_bucket(id, true).await?;
    assert_eq!(status, 204);
    assert!(!docker_exists("container", &format!("kalpana-bucket-{id}")));
    let (status, second) = alice
        .create_bucket(json!({ "name": "one-too-many" }))
        .await?;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["status"], "RUNNING");
    assert_eq!(second["port"].as_u64(), Some(u64::from(base)));
    Ok(())
}
