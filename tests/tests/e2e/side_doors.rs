//! No way into a bucket but its own S3: no container on the bucket network can reach another
//! bucket's container at all, and the engine's internal services refuse anyone outside the
//! container (no internal keys, no client certificate).

use std::process::Command;

use kalpana_e2e::probe::{connects_from_netns, container_ip, container_pid};
use kalpana_e2e::{get_bytes, s3_client, Daemon, ENGINE_IMAGE, TEST_NETWORK};
use serde_json::json;

/// Every port SeaweedFS listens on inside a bucket container (S3, filer, master, volume server,
/// their gRPC ports, S3 gRPC, and the ports of the extras that are turned off).
const ENGINE_PORTS: [u16; 12] = [
    8333, 8888, 9333, 9340, 18888, 19333, 19340, 18333, 7333, 23646, 8181, 9101,
];

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

    // From the host (where Traefik and the daemon reach containers): the engine's internal
    // HTTP services refuse every request without the bucket's internal keys, reads and the
    // destructive ones alike, and its gRPC ports refuse anyone without the container's own
    // client certificate.
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
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
        let resp = http
            .request(reqwest::Method::from_bytes(method.as_bytes())?, &url)
            .body("overwritten")
            .send()
            .await?;
        assert_eq!(resp.status(), 401, "{method} {url}");
    }
    for port in [18888, 19333, 19340, 18333, 33646] {
        // TLS 1.3 sends the refusal after the handshake: keep the client open a moment.
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "sleep 1 | timeout 10 openssl s_client -connect {victim_ip}:{port} 2>&1"
            ))
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("alert certificate required"),
            "gRPC port {port} accepted a TLS client without a certificate: {text}"
        );
    }

    // S3 on the bucket's own published port still works.
    let s3 = s3_client(
        victim["endpoint"].as_str().expect("endpoint"),
        victim["accessKey"].as_str().expect("access key"),
        victim["secretKey"].as_str().expect("secret"),
    );
    assert_eq!(get_bytes(&s3, "victim", "secret.txt").await?, b"alice only");
    Ok(())
}
