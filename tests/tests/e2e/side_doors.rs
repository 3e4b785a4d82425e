//! No way into a bucket but its own S3: no container on the bucket network can reach another
//! bucket's container at all, the host reaches nothing of it but S3 (the daemon's firewall resets
//! the rest), and behind that the engine's internal services still refuse anyone but the
//! container's own processes on loopback (no internal keys, no client certificate).

use std::process::Command;
use std::time::{Duration, Instant};

use kalpana_e2e::probe::{
    connects_from_netns, container_ip, container_pid, http_status_from_netns, open_ports,
    tls_client_from_netns,
};
use kalpana_e2e::{get_bytes, s3_client, Daemon, ENGINE_IMAGE, TEST_NETWORK};
use serde_json::json;

/// Every port SeaweedFS listens on inside a bucket container (S3, filer, master, volume server,
/// their gRPC ports, S3 gRPC, and the ports of the extras that are turned off).
const ENGINE_PORTS: [u16; 12] = [
    8333, 8888, 9333, 9340, 18888, 19333, 19340, 18333, 7333, 23646, 8181, 9101,
];

/// The engine's internal ports (filer, master, volume server, admin server and their gRPC ports)
/// that the host firewall resets when the host connects to them.
const HOST_REFUSED: [u16; 9] = [9333, 23646, 8888, 9340, 18888, 19333, 19340, 18333, 33646];

/// A throwaway container on the bucket network that only holds a network namespace to probe
/// from; removed when dropped.
struct Bystander(String);

impl Bystander {
    fn start() -> anyhow::Result<Self> {
        let name = format!("kalpana-test-bystander-{}", uuid::Uuid::new_v4().simple());
        let out = Command::new("docker")
            .args(["run", "-d", "--name", &name, "--network", TEST_NETWORK])
            .args(["--label", "kalpana.test=true", "--tmpfs", "/tmp"])
            .args(["--entrypoint", "/usr/bin/weed", ENGINE_IMAGE])
            .args([
                "master",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-mdir=/tmp",
            ])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "docker run bystander: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Bystander(name))
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

#[tokio::test]
async fn no_engine_port_of_a_bucket_is_reachable_from_another_container_and_only_s3_answers_the_host(
) -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (mallory, _) = d.new_user("mallory").await?;
    let (status, victim) = alice.create_bucket(json!({ "name": "victim" })).await?;
    assert_eq!(status, 201, "{victim}");
    assert_eq!(victim["status"], "RUNNING", "{victim}");
    let (status, attacker) = mallory.create_bucket(json!({ "name": "attacker" })).await?;
    assert_eq!(status, 201, "{attacker}");
    assert_eq!(attacker["status"], "RUNNING", "{attacker}");
    let victim_id = victim["id"].as_str().expect("id");
    let (status, _) = alice
        .put_object(victim_id, "secret.txt", b"alice only".to_vec(), None)
        .await?;
    assert_eq!(status, 201);

    let victim_name = format!("kalpana-bucket-{victim_id}");
    let attacker_name = format!("kalpana-bucket-{}", attacker["id"].as_str().expect("id"));
    let victim_ip = container_ip(&victim_name, TEST_NETWORK)?;

    // From inside the attacker's bucket container and from a bystander on the same network:
    // not one port of the victim's container opens, S3 included.
    let bystander = Bystander::start()?;
    let sources = [
        (
            "the attacker's bucket container",
            container_pid(&attacker_name)?,
        ),
        (
            "a container on the bucket network",
            container_pid(&bystander.0)?,
        ),
    ];
    // Blocked connections time out: probe every (source, port) at once.
    let reached: Vec<String> = std::thread::scope(|scope| {
        let probes: Vec<_> = sources
            .iter()
            .flat_map(|(from, pid)| ENGINE_PORTS.map(|port| (*from, *pid, port)))
            .map(|(from, pid, port)| {
                scope.spawn(move || match connects_from_netns(pid, victim_ip, port) {
                    Ok(false) => None,
                    Ok(true) => Some(format!("{from} reached {victim_ip}:{port}")),
                    Err(e) => Some(format!("probe from {from} failed: {e}")),
                })
            })
            .collect();
        probes
            .into_iter()
            .filter_map(|p| p.join().unwrap_or(Some("a probe panicked".into())))
            .collect()
    });
    assert!(reached.is_empty(), "{reached:?}");
    // The probe itself works: from the victim's own namespace its filer answers on loopback.
    assert!(
        connects_from_netns(container_pid(&victim_name)?, "127.0.0.1".parse()?, 8888)?,
        "the filer should listen on the container's loopback"
    );

    // From the host (where Traefik and the daemon reach containers): the host firewall lets
    // only the engine's S3 port take a new connection; everything else is reset at once, the
    // master's status pages and the admin server (which answer without any credential) included.
    let scan = Instant::now();
    let open = open_ports(victim_ip, 1..=u16::MAX, 512).await;
    println!(
        "host scan of {victim_ip}, ports 1-65535: open {open:?} in {:?}",
        scan.elapsed()
    );
    assert_eq!(open, [8333], "only S3 may open from the host");
    for port in HOST_REFUSED {
        let t = Instant::now();
        let res = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::new(victim_ip, port),
            Duration::from_secs(2),
        );
        let took = t.elapsed();
        println!("host connect to {victim_ip}:{port}: {res:?} after {took:?}");
        let err = res.expect_err("an engine port opened from the host");
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "port {port} should be reset, not dropped: {err}"
        );
        assert!(took < Duration::from_secs(1), "port {port}: {took:?}");
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    for url in [
        format!("http://{victim_ip}:9333/cluster/status"),
        format!("http://{victim_ip}:9333/"),
        format!("http://{victim_ip}:23646/health"),
        format!("http://{victim_ip}:23646/metrics"),
    ] {
        let t = Instant::now();
        match http.get(&url).send().await {
            Ok(resp) => panic!("GET {url} from the host answered {}", resp.status()),
            Err(e) => {
                println!("GET {url} from the host: {e} after {:?}", t.elapsed());
                assert!(e.is_connect(), "GET {url}: {e:?}");
            }
        }
    }

    // Inside the container the engine's own locks still hold: from its own network namespace,
    // to its address on the bucket network (not loopback: that traffic never crosses the
    // bridge, so no firewall sees it), the internal HTTP services refuse every request without
    // the bucket's internal keys, reads and destructive ones alike, and the gRPC ports refuse
    // anyone without the container's own client certificate.
    let victim_pid = container_pid(&victim_name)?;
    let filer = format!("http://{victim_ip}:8888/buckets/victim/secret.txt");
    for (method, url) in [
        ("GET", filer.clone()),
        ("PUT", filer.clone()),
        ("DELETE", filer.clone()),
        (
            "GET",
            format!("http://{victim_ip}:9333/dir/lookup?volumeId=1"),
        ),
        (
            "GET",
            format!("http://{victim_ip}:9333/col/delete?collection=victim"),
        ),
        ("GET", format!("http://{victim_ip}:9340/1,01")),
    ] {
        let body = (method == "PUT").then_some("overwritten");
        let status = http_status_from_netns(victim_pid, method, &url, body)?;
        println!("{method} {url} from the victim's own namespace: {status}");
        assert_eq!(status, 401, "{method} {url} from inside the container");
    }
    // (Not a lock of the engine's, for the record: the master's status page, which the
    // firewall keeps from everyone else.)
    let status = http_status_from_netns(
        victim_pid,
        "GET",
        &format!("http://{victim_ip}:9333/cluster/status"),
        None,
    )?;
    println!("GET /cluster/status from the victim's own namespace: {status}");
    for port in [18888, 19333, 19340, 18333, 33646] {
        let text = tls_client_from_netns(victim_pid, victim_ip, port)?;
        assert!(
            text.contains("alert certificate required"),
            "gRPC port {port} accepted a TLS client without a certificate: {text}"
        );
    }
    // S3 on the bucket's own published port still works, and the object is untouched.
    let s3 = s3_client(
        victim["endpoint"].as_str().expect("endpoint"),
        victim["accessKey"].as_str().expect("access key"),
        victim["secretKey"].as_str().expect("secret"),
    );
    assert_eq!(get_bytes(&s3, "victim", "secret.txt").await?, b"alice only");
    Ok(())
}
