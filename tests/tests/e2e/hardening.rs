//! A created bucket container, inspected setting by setting: no privileges, every capability
//! dropped, no-new-privileges, read-only root, limits from the configuration, no published port
//! (the daemon listens on `KALPANA_BIND_IP` only), and the daemon's network only.

use kalpana_e2e::{docker_inspect, s3_client, Daemon, DaemonOptions, TEST_NETWORK};
use serde_json::{json, Value};

#[tokio::test]
async fn bucket_containers_are_hardened_limited_and_bound_as_configured() -> anyhow::Result<()> {
    let d = Daemon::start_with(DaemonOptions {
        env: vec![
            ("KALPANA_BIND_IP".into(), "127.0.0.2".into()),
            ("KALPANA_CONTAINER_MEMORY_MB".into(), "384".into()),
            ("KALPANA_CONTAINER_CPUS".into(), "0.5".into()),
            ("KALPANA_CONTAINER_PIDS".into(), "200".into()),
        ],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "locked" })).await?;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["status"], "RUNNING", "{b}");
    let id = b["id"].as_str().expect("id");
    let port = b["port"].as_u64().expect("port");
    let name = format!("kalpana-bucket-{id}");
    let inspect: Value = serde_json::from_str(&docker_inspect(&name, "{{json .}}")?)?;
    let hc = &inspect["HostConfig"];

    assert_eq!(hc["Privileged"], false, "privileged");
    assert_eq!(hc["CapDrop"], json!(["ALL"]), "capabilities dropped");
    // The engine needs no capability back.
    assert!(
        hc["CapAdd"].is_null() || hc["CapAdd"] == json!([]),
        "capabilities added: {}",
        hc["CapAdd"]
    );
    assert_eq!(hc["SecurityOpt"], json!(["no-new-privileges:true"]));
    assert_eq!(hc["ReadonlyRootfs"], true, "read-only root");
    assert_eq!(hc["Tmpfs"]["/tmp"], "rw,nosuid,nodev,size=64m", "scratch");
    assert_eq!(hc["Memory"], 384u64 * 1024 * 1024, "memory limit");
    assert_eq!(hc["NanoCpus"], 500_000_000u64, "CPU limit");
    assert_eq!(hc["PidsLimit"], 200, "pids limit");
    assert_eq!(hc["RestartPolicy"]["Name"], "unless-stopped");
    assert!(
        hc["Binds"].as_array().is_some_and(
            |b| b.len() == 1 && b[0] == format!("kalpana-bucket-{id}-data:/data").as_str()
        ),
        "only the data volume is mounted: {}",
        hc["Binds"]
    );
    assert_eq!(inspect["Mounts"].as_array().map(Vec::len), Some(1));

    // Docker publishes nothing: the daemon listens on the bucket's port, on the bind IP only.
    assert!(
        hc["PortBindings"]
            .as_object()
            .is_none_or(serde_json::Map::is_empty),
        "published: {}",
        hc["PortBindings"]
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.2", port as u16)).is_ok(),
        "the daemon listens on {port} at the bind IP"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port as u16)).is_err(),
        "port {port} answers on 127.0.0.1 too"
    );
    assert_eq!(
        b["endpoint"],
        format!("http://127.0.0.2:{port}").as_str(),
        "{b}"
    );

    // The daemon's network and no other.
    assert_eq!(hc["NetworkMode"], TEST_NETWORK);
    let networks = inspect["NetworkSettings"]["Networks"]
        .as_object()
        .expect("networks");
    assert_eq!(
        networks.keys().collect::<Vec<_>>(),
        vec![TEST_NETWORK],
        "networks"
    );

    // And with all that, it serves S3 on the bind IP.
    let s3 = s3_client(
        b["endpoint"].as_str().expect("endpoint"),
        b["accessKey"].as_str().expect("access key"),
        b["secretKey"].as_str().expect("secret key"),
    );
    let listed = s3.list_objects_v2().bucket("locked").send().await?;
    assert_eq!(listed.key_count(), Some(0));
    Ok(())
}
