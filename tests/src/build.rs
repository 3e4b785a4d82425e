//! The daemon binary the tests start.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::Result;

use crate::repo_root;

/// The daemon binary: the one `cargo test` built when it is newer than every source file,
/// otherwise built once per test process. (Rebuilding unconditionally would relink it with
/// another feature set than `cargo test --workspace` uses, and cost minutes on a cold tree.)
pub fn daemon_binary() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let release = cfg!(not(debug_assertions));
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo_root().join("target"));
        let bin = target
            .join(if release { "release" } else { "debug" })
            .join("kalpana-buckets");
        if is_fresh(&bin) {
            return Ok(bin);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(repo_root()).args([
            "build",
            "-q",
            "-p",
            "kalpana-api",
            "--bin",
            "kalpana-buckets",
        ]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .map_err(|e| format!("running cargo build: {e}"))?;
        if !status.success() {
            return Err("cargo build of kalpana-buckets failed".into());
        }
        Ok(bin)
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

fn is_fresh(bin: &Path) -> bool {
    fn newest(dir: &Path, acc: &mut std::time::SystemTime) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                newest(&p, acc);
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                *acc = (*acc).max(m);
            }
        }
    }
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let mut src = std::time::SystemTime::UNIX_EPOCH;
    newest(&repo_root().join("crates"), &mut src);
    for f in ["Cargo.toml", "Cargo.lock"] {
        if let Ok(m) = std::fs::metadata(repo_root().join(f)).and_then(|m| m.modified()) {
            src = src.max(m);
        }
    }
    built > src
}
