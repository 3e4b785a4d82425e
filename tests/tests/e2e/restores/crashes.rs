//! A daemon killed in the middle of a snapshot (container paused) or a restore (archive checked;
//! volume removed) leaves nothing paused and finishes the restore when it starts again.

use std::time::Duration;

use kalpana_e2e::{docker_exists, docker_inspect, noise, Api, Daemon};
use serde_json::json;

use super::{contents, id, snapshot, until};

/// Restarts the daemon armed with `point`, runs `trigger`, and checks the daemon died there by
/// SIGKILL; then restarts it unarmed.
async fn crash_during<F, Fut>(
    d: &mut Daemon,
    token: &str,
    point: &str,
    trigger: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Api) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use std::os::unix::process::ExitStatusExt;
    d.kill();
    d.set_env("KALPANA_FAULT_POINT", Some(point));
    d.spawn().await?;
    trigger(d.api(token)).await?;
    let status = match d.wait_exit(Duration::from_secs(120)).await {
        Ok(s) => s,
        Err(e) => {
            let log = d.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            anyhow::bail!(
                "{point}: {e}; the log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    };
    assert_eq!(
        status.signal(),
        Some(9),
        "{point}: daemon ended with {status}"
    );
    d.set_env("KALPANA_FAULT_POINT", None);
    d.spawn().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_killed_mid_snapshot_or_mid_restore_leaves_nothing_paused_or_half_done(
) -> anyhow::Result<()> {
    let mut d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let token = alice.raw().2.expect("token").to_string();
    let (_, src) = alice.create_bucket(json!({ "name": "crashy" })).await?;
    let (_, vault) = alice.create_bucket(json!({ "name": "vault" })).await?;
    let (bid, vault_id) = (id(&src), id(&vault));
    alice
        .put_object(&bid, "a.bin", noise(2 << 20, 9), None)
        .await?;
    let at_snapshot = contents(&alice, &bid).await?;
    let sid = snapshot(&alice, &bid, &vault_id).await?;
    let container = format!("kalpana-bucket-{bid}");

    // Killed with the container paused: it runs again and the snapshot is FAILED.
    let path = format!("/api/buckets/{bid}/snapshots");
    let path2 = path.clone();
    let body = json!({ "targetBucketId": vault_id });
    // The answer may or may not get out before the background task reaches the point.
    crash_during(&mut d, &token, "snapshot.paused", |api| async move {
        let _ = api.send("POST", &path2, Some(body)).await;
        Ok(())
    })
    .await?;
    let alice = d.api(&token);
    assert_eq!(
        docker_inspect(&container, "{{.State.Status}}")?.trim(),
        "running"
    );
    let (_, list) = alice.send("GET", &path, None).await?;
    let snaps = list["snapshots"].as_array().cloned().unwrap_or_default();
    assert_eq!(snaps.len(), 2, "{list}");
    let s = &snaps[1];
    assert_eq!(s["status"], "FAILED", "{s}");
    assert!(
        s["message"]
            .as_str()
            .is_some_and(|m| m.contains("daemon stopped")),
        "{s}"
    );

    // Killed after the archive was checked, and after the bucket's volume was removed: the
    // restart finishes the restore from the staging volume.
    for point in ["restore.staged", "restore.emptied"] {
        let api = d.api(&token);
        api.put_object(&bid, "later.txt", point.as_bytes().to_vec(), None)
            .await?;
        let restore = format!("{path}/{sid}/restore");
        crash_during(&mut d, &token, point, |api| async move {
            // An answer other than 202 means the restore never started.
            if let Ok((status, s)) = api.send("POST", &restore, None).await {
                anyhow::ensure!(status == 202, "{point}: {status} {s}");
            }
            Ok(())
        })
        .await?;
        let alice = d.api(&token);
        let s = until(&alice, &format!("{path}/{sid}"), |s| {
            s["restore"]["status"] == "DONE" || s["restore"]["status"] == "FAILED"
        })
        .await?;
        assert_eq!(s["restore"]["status"], "DONE", "{point}: {s}");
        assert_eq!(
            docker_inspect(&container, "{{.State.Status}}")?.trim(),
            "running"
        );
        assert_eq!(contents(&alice, &bid).await?, at_snapshot, "{point}");
        assert!(
            !docker_exists("volume", &format!("kalpana-bucket-{bid}-staging")),
            "{point}"
        );
    }
    Ok(())
}
