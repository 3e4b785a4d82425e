//! A MongoDB wire-protocol server of the test's own (SecantusDB, installed by
//! `.ci/build-test-images` into `.tools/mongo-venv`), which the test may kill and restart on the
//! same data.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running (or killed) SecantusDB process with its data directory.
pub struct MongoServer {
    child: Option<Child>,
    /// Port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
}

impl MongoServer {
    /// Starts a server on a free port with a fresh data directory.
    pub async fn start() -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir =
            std::env::temp_dir().join(format!("kalpana-mongo-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("data"))?;
        let mut s = MongoServer {
            child: None,
            port,
            dir,
        };
        s.restart().await?;
        Ok(s)
    }

    /// `mongodb://127.0.0.1:<port>/<db>`.
    pub fn uri(&self, db: &str) -> String {
        format!("mongodb://127.0.0.1:{}/{db}", self.port)
    }

    /// Kills the server (SIGKILL); its data stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and data, and waits until it accepts
    /// connections.
    pub async fn restart(&mut self) -> Result<()> {
        let bin = crate::repo_root().join(".tools/mongo-venv/bin/secantusd-py");
        if !bin.exists() {
            bail!(
                "{} is missing: run `.ci/build-test-images` (it installs SecantusDB from PyPI)",
                bin.display()
            );
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))?;
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(self.dir.join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting SecantusDB")?;
        self.child = Some(child);
        let started = Instant::now();
        // The data directory stays locked a moment after a killed server is gone.
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    bail!("SecantusDB exited with {status}; log:\n{}", self.log());
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("SecantusDB did not listen in 30 s; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
