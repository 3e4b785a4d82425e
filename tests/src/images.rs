//! Container images the tests make from binaries of this workspace: the binary and the shared
//! libraries `ldd` names, on an empty (`scratch`) base.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The absolute paths of the shared libraries (and loader) `ldd` lists for `bin`.
fn shared_libraries(bin: &Path) -> Result<Vec<String>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("running ldd (Debian package libc-bin)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Lines are `libx.so => /path (0x…)`, `/lib64/ld-linux-x86-64.so.2 (0x…)` or
    // `linux-vdso.so.1 (0x…)` (in the kernel, nothing to copy).
    Ok(text
        .lines()
        .filter_map(|l| {
            let path = l.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| path.to_string())
        })
        .collect())
}

/// The machine's CA bundle: clients built with a TLS stack load it at start, even for HTTP.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Builds image `tag` holding `bin` as `/<name>` (its entrypoint), its shared libraries and the
/// machine's CA bundle.
pub fn image_from_binary(bin: &Path, tag: &str) -> Result<()> {
    let name = bin
        .file_name()
        .and_then(|n| n.to_str())
        .context("binary without a name")?;
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root)?;
    std::fs::copy(bin, root.join(name)).with_context(|| format!("copying {}", bin.display()))?;
    for lib in shared_libraries(bin)?
        .into_iter()
        .chain(Path::new(CA_BUNDLE).exists().then(|| CA_BUNDLE.to_string()))
    {
        let to = root.join(lib.trim_start_matches('/'));
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Copy the file a symlink names, under the name the loader looks for.
        std::fs::copy(&lib, &to).with_context(|| format!("copying {lib}"))?;
    }
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM scratch\nCOPY root/ /\nENTRYPOINT [\"/{name}\"]\n"),
    )?;
    let out = Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(dir.path())
        .stdout(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "docker build of {tag} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
