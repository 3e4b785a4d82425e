//! The application state every handler shares.

use std::sync::Arc;

use kalpana_manager_core::{DockerClient, PortAllocator};

use crate::config::Config;
use crate::events::EventBus;
use crate::lifecycle::Locks;
use crate::secrets::MasterKey;
use crate::store::Store;

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
    /// Configuration.
    pub config: Config,
    /// The store of desired state.
    pub store: Arc<dyn Store>,
    /// Docker.
    pub docker: DockerClient,
    /// Host port allocator.
    pub ports: PortAllocator,
    /// Serialises port allocation with the record insert that reserves the ports.
    pub allocation: tokio::sync::Mutex<()>,
    /// One lifecycle operation per bucket at a time.
    pub locks: Locks,
    /// Encrypts secrets at rest.
    pub master_key: MasterKey,
    /// Status events.
    pub events: EventBus,
}
