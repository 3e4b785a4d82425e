//! `serve --config <file>` (or `KALPANA_CONFIG`): a TOML file of the same `KALPANA_*` keys, under
//! the environment; a key the daemon does not know stops it at start with the key named.

use kalpana_e2e::{Daemon, DaemonOptions};
use serde_json::json;

/// Writes `text` as a config file in a fresh temp dir (mode 0600) and returns its path.
fn config_file(text: &str) -> anyhow::Result<(tempfile::TempDir, String)> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kalpana.toml");
    std::fs::write(&path, text)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok((dir, path.display().to_string()))
}

#[tokio::test]
async fn config_file_values_apply_under_the_environment() -> anyhow::Result<()> {
    // The harness sets KALPANA_ENGINE=seaweedfs in the environment; the file's minio loses.
    let (_dir, path) = config_file(
        "KALPANA_REGION = \"eu-config-1\"\nKALPANA_ENGINE = \"minio\"\nKALPANA_RESYNC_SECS = 5\n",
    )?;
    let d = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_CONFIG".into(), path)],
        ..Default::default()
    })
    .await?;
    let (status, b) = d
        .admin()
        .send(
            "POST",
            "/api/buckets",
            Some(json!({ "name": "configured" })),
        )
        .await?;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["region"], "eu-config-1", "from the file");
    assert_eq!(
        b["engine"], "seaweedfs",
        "the environment wins over the file"
    );
    let id = b["id"].as_str().expect("id");
    assert_eq!(d.admin().delete_bucket(id, true).await?, 204);
    Ok(())
}

#[tokio::test]
async fn a_config_file_with_an_unknown_key_stops_the_daemon_naming_it() -> anyhow::Result<()> {
    let (_dir, path) = config_file("KALPANA_REGOIN = \"eu-config-1\"\n")?;
    let started = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_CONFIG".into(), path)],
        ..Default::default()
    })
    .await;
    let Err(e) = started else {
        anyhow::bail!("the daemon started with an unknown config key");
    };
    let e = format!("{e:#}");
    assert!(e.contains("exited"), "{e}");
    assert!(e.contains("unknown key \"KALPANA_REGOIN\""), "{e}");
    Ok(())
}
