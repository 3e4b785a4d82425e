//! A Docker socket that a test can take away and give back.

use anyhow::{Context, Result};

/// A TCP proxy in front of the local Docker socket, for pointing a daemon's `DOCKER_HOST` at
/// and cutting it off: [`DockerProxy::cut`] refuses new connections and drops open ones, as a
/// Docker daemon that went away would; [`DockerProxy::restore`] lets them through again.
pub struct DockerProxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl DockerProxy {
    /// Starts forwarding 127.0.0.1:<free port> to `/var/run/docker.sock`.
    pub async fn start() -> Result<Self> {
        // Below the kernel's ephemeral range (32768+), so that no outgoing connection takes the
        // port while the proxy is cut and it must be bound again.
        let offset = (std::process::id() % 1000) as u16 * 10;
        let port = (0..10_000u16)
            .map(|i| 20_000 + (offset + i) % 10_000)
            .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .context("no free port in 20000-29999 for the Docker proxy")?;
        let proxy = DockerProxy {
            port,
            tasks: Default::default(),
        };
        proxy.restore()?;
        Ok(proxy)
    }

    /// `DOCKER_HOST` value that reaches Docker through this proxy.
    pub fn docker_host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Listens again and forwards new connections.
    pub fn restore(&self) -> Result<()> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], self.port)))?;
        let listener = socket.listen(64)?;
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut unix) =
                        tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                    }
                });
                tasks.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(accept);
        Ok(())
    }

    /// Stops listening and drops every open connection.
    pub fn cut(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
