//! Starting the daemon: state, bootstrap, reconcile loop, listener, graceful shutdown.

use std::sync::Arc;

use kalpana_domain::context::CoreParts;
use kalpana_domain::store::fenced::FencedStore;
use kalpana_domain::Core;
use kalpana_manager_core::{DockerClient, DockerRuntime, PortAllocator, Runtime, SwarmRuntime};

use crate::app::{App, AppState};
use crate::error::{Error, Result};
use crate::{auth, router};
use kalpana_domain::config::{Config, RuntimeKind};
use kalpana_domain::events::EventBus;
use kalpana_domain::secrets::MasterKey;
use kalpana_domain::{reconcile, store, usage};

/// Builds the shared state from configuration (opens the store, loads the master key,
/// connects the container runtime).
pub async fn build_state(config: Config) -> Result<AppState> {
    private_dir(&config.data_dir)?;
    let master_key = MasterKey::load(config.master_key.as_deref(), &config.data_dir)?;
    let store_fence = Arc::new(FencedStore::new(
        store::open(config.store.as_deref(), &config.data_dir).await?,
    ));
    let store: Arc<dyn store::Store> = store_fence.clone();
    let docker = DockerClient::connect(&config.instance, config.pull_timeout)?;
    let ports = PortAllocator::new(config.port_range, config.bind_ip);
    let firewall = config.firewall.then(|| {
        kalpana_manager_core::firewall::Firewall::new(
            kalpana_manager_core::EngineKind::ALL
                .iter()
                .flat_map(|k| {
                    let p = k.profile();
                    std::iter::once(p.s3_port).chain(p.console_port)
                })
                .collect(),
        )
    });
    let nodes = Arc::new(kalpana_manager_core::node_hub::NodeHub::default());
    let runtime: Arc<dyn Runtime> = match config.runtime {
        RuntimeKind::Docker => Arc::new(DockerRuntime::new(docker, &config.network, firewall)),
        RuntimeKind::Swarm => Arc::new(SwarmRuntime::connect(
            &config.swarm_manager,
            &config.instance,
            nodes.clone(),
        )?),
    };
    let pool = kalpana_domain::lifecycle::pool::VolumePool::open(&config.data_dir);
    let core = Core(Arc::new(CoreParts {
        config,
        store,
        runtime,
        events: EventBus::new(),
        locks: Default::default(),
        master_key,
        s3_clients: Default::default(),
        addresses: Default::default(),
        ports,
        pool,
        reconciler: Default::default(),
        quotas: Default::default(),
        pending_usage: Default::default(),
        followed_uploads: Default::default(),
        metrics: Default::default(),
        sleep: Default::default(),
        proxies: Default::default(),
        tasks: Default::default(),
        nodes: Default::default(),
    }));
    Ok(AppState(Arc::new(App {
        core,
        fleet: Default::default(),
        callers: Default::default(),
        shutdown: tokio::sync::watch::Sender::new(false),
        store_fence,
        nodes,
    })))
}

/// Creates the data directory readable by its owner only (0700): it holds the master key and
/// the store. One made by an older version (0755) is tightened.
fn private_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::Internal(format!("creating data dir {}: {e}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::Internal(format!("chmod 700 {}: {e}", dir.display())))
}

/// Runs the daemon until SIGTERM or Ctrl-C, then finishes in-flight requests and returns.
pub async fn run(config: Config) -> Result<()> {
    let listen = config.listen.clone();
    kalpana_domain::fault::check_config()?;
    let state = build_state(config).await?;
    kalpana_domain::lease::check_master_key(&state).await?;
    let holder = kalpana_domain::lease::holder(&state);
    let (bound, renewal) = match kalpana_domain::lease::acquire(&state, &holder).await {
        Ok(()) => (
            None,
            kalpana_domain::lease::spawn_renewal(
                state.core.clone(),
                holder.clone(),
                state.store_fence.clone(),
            ),
        ),
        Err(kalpana_domain::error::Error::Conflict(_)) if state.config.standby => {
            let listener = bind(&state, &listen).await?;
            let renewal = tokio::select! {
                r = crate::standby::wait_for_lease(&state, &holder, &listener) => r?,
                () = shutdown_signal() => {
                    // Taken at the last moment, perhaps: the next standby need not wait it out.
                    let _ = state.store.release_lease(&holder).await;
                    tracing::info!("standby stopped before it took over");
                    return Ok(());
                }
            };
            (Some(listener), renewal)
        }
        Err(e) => return Err(e.into()),
    };
    // Only the lease holder writes: a refused second daemon must not touch the admin token.
    if let Some(token) = state.config.admin_token.clone() {
        auth::bootstrap_admin(&state, &token).await?;
    }
    kalpana_domain::migrate::run(&state).await?;
    kalpana_domain::snapshots::recover(&state).await?;
    kalpana_domain::snapshots::mark_leaked(&state).await?;
    kalpana_domain::lifecycle::prepare_runtime(&state).await?;
    reserve_ports(&state);
    kalpana_domain::lifecycle::pool::spawn_filler(state.core.clone());
    if state.config.admin_token.is_none() && state.store.list_users().await?.is_empty() {
        tracing::warn!("no KALPANA_ADMIN_TOKEN and no users: nobody can call the API");
    }
    kalpana_domain::sleep::start(&state.core).await?;
    reconcile::spawn(state.core.clone());
    if state.config.runtime == RuntimeKind::Swarm {
        kalpana_domain::node_loss::spawn(state.core.clone());
    }
    usage::spawn_periodic_sync(state.core.clone());
    kalpana_domain::pending_usage::spawn_flusher(state.core.clone());
    kalpana_domain::inventory::spawn_periodic_sync(state.core.clone());
    kalpana_domain::fleet::spawn_sampler(state.core.clone(), state.fleet.clone());
    kalpana_domain::snapshots::schedule::spawn(state.core.clone());
    let listener = match bound {
        Some(l) => l,
        None => bind(&state, &listen).await?,
    };
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("local address: {e}")))?;
    let open_files = crate::accept::raise_open_files_limit();
    tracing::info!(%addr, engine = %state.config.engine, ports = %state.config.port_range,
        open_files = ?open_files, limits = ?state.config.conn_limits, "listening");
    let signalled = state.clone();
    let serve = crate::accept::serve(
        &listener,
        router::router(state.clone()),
        state.config.conn_limits,
        async move {
            shutdown_signal().await;
            signalled.shutdown.send_replace(true);
        },
    );
    let mut down = state.shutdown.subscribe();
    let grace = state.config.shutdown_grace;
    tokio::select! {
        () = serve => {}
        _ = async {
            let _ = down.wait_for(|d| *d).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish within the grace period; exiting anyway");
        }
    }
    // Background work ends before the lease goes: nothing writes the store afterwards.
    let aborted = state.tasks.shutdown(grace).await;
    if aborted > 0 {
        tracing::warn!(aborted, "background tasks still running after the grace period were stopped; the next start finishes what they began");
    }
    kalpana_domain::pending_usage::flush_all(&state).await;
    // Whatever still runs (a request past the grace) must not write a store the next daemon
    // may lead: refused from here on, and logged if tried. The lease was renewed until now.
    renewal.abort();
    state.store_fence.close();
    // The next daemon on this store need not wait for the lease to run out.
    match state.store.release_lease(&holder).await {
        Ok(()) => tracing::info!(holder = %holder, "store lease released"),
        Err(e) => {
            tracing::warn!(error = %e, "releasing the store lease failed; it runs out by itself")
        }
    }
    tracing::info!("shut down");
    Ok(())
}

/// Listens on `listen` and writes the address to `<data dir>/listen.addr`, which lets tools and
/// tests that asked for port 0 find the daemon.
async fn bind(state: &AppState, listen: &str) -> Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Internal(format!("binding {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("local address: {e}")))?;
    let addr_file = state.config.data_dir.join("listen.addr");
    std::fs::write(&addr_file, addr.to_string())
        .map_err(|e| Error::Internal(format!("writing {}: {e}", addr_file.display())))?;
    Ok(listener)
}

/// Keeps the kernel from giving bucket ports to outgoing connections (see `host_ports`), or
/// says why it cannot.
fn reserve_ports(state: &AppState) {
    use kalpana_manager_core::host_ports::{self, Reservation};
    let range = state.config.port_range;
    if !state.config.reserve_ports {
        if let Some(e) = host_ports::ephemeral_range().filter(|e| host_ports::overlaps(*e, range)) {
            tracing::warn!(%range, ephemeral = %e, "the bucket port range overlaps the kernel's ephemeral ports and KALPANA_RESERVE_PORTS=false: an outgoing connection may hold a bucket's port when it starts");
        }
        return;
    }
    match host_ports::reserve(range) {
        Reservation::NotNeeded => {}
        Reservation::Already => {
            tracing::info!(%range, "bucket ports are reserved from the kernel's ephemeral ports")
        }
        Reservation::Made => {
            tracing::info!(%range, "bucket ports added to net.ipv4.ip_local_reserved_ports: outgoing connections no longer take them")
        }
        Reservation::Failed(why) => tracing::warn!(%range, reason = %why,
            "the bucket port range overlaps the kernel's ephemeral ports and could not be reserved: an outgoing connection may hold a bucket's port when it starts (the bucket then waits in ERROR until it is free); run as root, add the range to net.ipv4.ip_local_reserved_ports yourself, or choose KALPANA_PORT_RANGE outside net.ipv4.ip_local_port_range"),
    }
}

async fn shutdown_signal() {
    termination().await;
    tracing::info!("shutdown requested; finishing in-flight requests");
}

/// Resolves on SIGTERM or Ctrl-C.
pub(crate) async fn termination() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
