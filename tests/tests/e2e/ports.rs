//! Port allocation under concurrency and exhaustion; ports another process holds (a new bucket
//! moves to other ports; a provisioned one's port is the daemon's for life, and one held while
//! the daemon was down is taken back once free); the range reserved from the kernel's ephemeral
//! ports.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kalpana_e2e::{
    docker_exists, docker_inspect, get_bytes, s3_client, strip_colours, Daemon, DaemonOptions,
};
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

/// The bucket record as the API answers it now.
async fn bucket(api: &kalpana_e2e::Api, id: &str) -> anyhow::Result<serde_json::Value> {
    let (status, b) = api.send("GET", &format!("/api/buckets/{id}"), None).await?;
    anyhow::ensure!(status == 200, "GET bucket {id}: {status} {b}");
    Ok(b)
}

/// The log lines of `d` that contain `needle`.
fn log_lines(d: &Daemon, needle: &str) -> Vec<String> {
    d.log()
        .lines()
        .map(strip_colours)
        .filter(|l| l.contains(needle))
        .collect()
}

#[tokio::test]
async fn a_new_bucket_whose_port_is_taken_before_its_container_starts_runs_on_other_ports(
) -> anyhow::Result<()> {
    let mut d = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_FAULT_POINT".into(), "provision.container".into())],
        ..Default::default()
    })
    .await?;
    let (status, user) = d
        .admin()
        .send("POST", "/api/users", Some(json!({ "name": "alice" })))
        .await?;
    assert_eq!(status, 201, "{user}");
    let token = user["token"].as_str().expect("token").to_string();
    // Answered at once (CREATING, its port chosen); the daemon dies once the container is made
    // and recorded, before it starts.
    let (status, b) = d
        .api(&token)
        .send("POST", "/api/buckets", Some(json!({ "name": "contested" })))
        .await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let old_port = b["port"].as_u64().expect("port") as u16;
    let secret = b["secretKey"].as_str().expect("secret").to_string();
    let ended = d.wait_exit(Duration::from_secs(60)).await?;
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(ended.signal(), Some(9), "daemon ended with {ended}");
    }
    let container = format!("kalpana-bucket-{id}");
    assert_eq!(docker_inspect(&container, "{{.State.Status}}")?, "created");
    // Another process takes the port meanwhile, and keeps it.
    let holder = std::net::TcpListener::bind(("127.0.0.1", old_port))?;

    d.set_env("KALPANA_FAULT_POINT", None);
    d.spawn().await?;
    let alice = d.api(&token);
    let started = Instant::now();
    let b = loop {
        let b = bucket(&alice, &id).await?;
        if b["status"] != "CREATING" {
            break b;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "still CREATING after 60 s: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let new_port = b["port"].as_u64().unwrap_or(0) as u16;
    println!(
        "port {old_port} taken: after the restart the bucket is {} on port {new_port} in {:?} ({:?}); log: {:?}",
        b["status"],
        started.elapsed(),
        b["statusMessage"],
        log_lines(&d, "is taken")
    );
    assert_eq!(b["status"], "RUNNING", "{b}");
    assert_ne!(new_port, old_port, "{b}");
    assert!((d.port_range.0..=d.port_range.1).contains(&new_port), "{b}");
    assert_eq!(holder.local_addr()?.port(), old_port, "still held by us");
    let endpoint = b["endpoint"].as_str().expect("endpoint");
    assert!(endpoint.ends_with(&format!(":{new_port}")), "{endpoint}");
    let s3 = s3_client(
        endpoint,
        b["accessKey"].as_str().expect("access key"),
        &secret,
    );
    s3.put_object()
        .bucket("contested")
        .key("k.txt")
        .body(b"on the new port".to_vec().into())
        .send()
        .await?;
    assert_eq!(
        get_bytes(&s3, "contested", "k.txt").await?,
        b"on the new port"
    );
    drop(holder);
    Ok(())
}

#[tokio::test]
async fn a_buckets_port_is_the_daemons_for_life_and_one_held_at_a_restart_is_taken_back_once_free(
) -> anyhow::Result<()> {
    let mut d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let token = alice.raw().2.expect("token").to_string();
    let (status, b) = alice.create_bucket(json!({ "name": "parked" })).await?;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["status"], "RUNNING", "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let port = b["port"].as_u64().expect("port") as u16;
    let s3 = s3_client(
        b["endpoint"].as_str().expect("endpoint"),
        b["accessKey"].as_str().expect("access key"),
        b["secretKey"].as_str().expect("secret"),
    );
    let (status, _) = alice
        .put_object(&id, "kept.txt", b"kept".to_vec(), None)
        .await?;
    assert_eq!(status, 201);
    let taken = || std::net::TcpListener::bind(("127.0.0.1", port)).is_err();

    // Running, stopped, asleep: nobody else can take its port.
    assert!(taken(), "running: the daemon listens on the port");
    for action in ["stop", "start", "sleep"] {
        let (status, v) = alice
            .send("POST", &format!("/api/buckets/{id}/{action}"), None)
            .await?;
        assert_eq!(status, 200, "{action}: {v}");
        assert!(taken(), "after {action}: the port is still the daemon's");
    }

    // While the daemon is down another process takes it; the daemon comes back, says so, and
    // listens again as soon as it is free.
    d.kill();
    let holder = std::net::TcpListener::bind(("127.0.0.1", port))?;
    d.spawn().await?;
    let alice = d.api(&token);
    let started = Instant::now();
    while log_lines(&d, "cannot listen on the bucket's port").is_empty() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "no log line about the held port"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(holder);
    let freed = Instant::now();
    let got = loop {
        match get_bytes(&s3, "parked", "kept.txt").await {
            Ok(got) => break got,
            Err(e) => anyhow::ensure!(
                freed.elapsed() < Duration::from_secs(30),
                "not served 30 s after its port was freed: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "served again {:?} after its port was freed",
        freed.elapsed()
    );
    assert_eq!(got, b"kept");
    assert_eq!(
        bucket(&alice, &id).await?["port"].as_u64(),
        Some(u64::from(port))
    );
    Ok(())
}

/// A sysctl file's whole text, read in one `read` call: the kernel answers a read of
/// `ip_local_reserved_ports` at a non-zero offset with end of file, so reading it in pieces
/// (as `std::fs::read_to_string` does, 32 bytes first) cuts it.
fn read_sysctl(path: &str) -> anyhow::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; 1 << 16];
    let n = std::fs::File::open(path)?.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// `ip_local_reserved_ports` / `ip_local_port_range` style text as (first, last) ranges.
fn port_ranges(text: &str) -> Vec<(u16, u16)> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .filter_map(|t| match t.split_once('-') {
            Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
            None => t.parse().ok().map(|p| (p, p)),
        })
        .collect()
}

#[tokio::test]
async fn the_daemons_port_range_is_reserved_from_the_kernels_ephemeral_ports() -> anyhow::Result<()>
{
    const RESERVED: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";
    let ephemeral = read_sysctl("/proc/sys/net/ipv4/ip_local_port_range")?;
    let mut it = ephemeral
        .split_whitespace()
        .filter_map(|t| t.parse::<u16>().ok());
    let (lo, hi) = (it.next().expect("start"), it.next().expect("end"));
    let covered = |text: &str, (a, b): (u16, u16)| {
        let ranges = port_ranges(text);
        (a..=b).all(|p| ranges.iter().any(|(x, y)| (*x..=*y).contains(&p)))
    };
    // Four daemons in turn, each on a range of its own (in the part of this process's slice no
    // other test daemon uses, apart by a port so the kernel keeps them as separate entries):
    // the list of reserved ports grows past what a short read of it shows.
    let base = kalpana_e2e::port_base() + 375;
    for i in 0..4u16 {
        let range = (base + i * 6, base + i * 6 + 4);
        assert!(
            range.0 <= hi && lo <= range.1,
            "{range:?} should overlap the kernel's ephemeral ports {lo}-{hi}"
        );
        let before = read_sysctl(RESERVED)?;
        println!(
            "ip_local_reserved_ports read whole: {:?}; read by std::fs::read_to_string: {:?}",
            before.trim(),
            std::fs::read_to_string(RESERVED)?.trim()
        );
        let d = Daemon::start_with(DaemonOptions {
            port_range: Some(format!("{}-{}", range.0, range.1)),
            ..Default::default()
        })
        .await?;
        let after = read_sysctl(RESERVED)?;
        let said: Vec<String> = log_lines(&d, "kalpana_api::server")
            .into_iter()
            .filter(|l| l.contains("reserved"))
            .collect();
        println!(
            "ephemeral {lo}-{hi}; daemon range {}-{}; reserved before {:?}, after {:?}; log {said:?}",
            range.0,
            range.1,
            before.trim(),
            after.trim()
        );
        // Whatever was reserved before is still reserved.
        for r in port_ranges(&before) {
            assert!(covered(&after, r), "{r:?} lost: {after}");
        }
        assert!(
            covered(&after, range),
            "{}-{} is not in ip_local_reserved_ports {:?}; daemon log: {said:?}",
            range.0,
            range.1,
            after.trim()
        );
        let expected = if covered(&before, range) {
            "bucket ports are reserved from the kernel's ephemeral ports"
        } else {
            "bucket ports added to net.ipv4.ip_local_reserved_ports"
        };
        assert!(
            said.iter().any(|l| l.contains(expected)),
            "the log should say {expected:?}: {said:?}"
        );
    }
    Ok(())
}
