//! The application state every handler shares: the domain's context and what only the HTTP
//! side keeps (the callers' cache, the fleet's samples it answers from, the shutdown signal).

use std::sync::Arc;

use kalpana_domain::Core;

/// Shared state, cheap to clone.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

/// What the daemon holds while it runs.
pub struct App {
    /// The domain's context: every bucket operation is handed this, never the whole state.
    pub core: Core,
    /// Resource samples of bucket servers and hosts.
    pub fleet: Arc<kalpana_domain::fleet::Fleet>,
    /// Authenticated callers by token hash.
    pub callers: crate::caller_cache::CallerCache,
    /// Turns `true` once shutdown begins, so endless responses (event streams) end.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// The store as the core sees it, closed for writes before the lease is released.
    pub store_fence: Arc<kalpana_domain::store::fenced::FencedStore>,
    /// The cluster's node agents (none report on the `docker` runtime).
    pub nodes: Arc<kalpana_manager_core::node_hub::NodeHub>,
}

/// Handlers reach the domain's parts (`state.store`, `state.config`, …) and hand `&state` to
/// domain operations through this.
impl std::ops::Deref for App {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}
