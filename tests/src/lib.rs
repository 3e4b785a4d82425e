//! Harness for the end-to-end tests and benchmarks: starts the real `kalpana-buckets` binary
//! against the real Docker daemon, talks to it over HTTP, and cleans up what it made.
//!
//! Requirements (checked, never skipped): Docker answering, and the engine image built by
//! `.ci/build-test-images`.

pub mod cloud;
pub mod images;
pub mod mongo;
pub mod probe;
pub mod runtime_suite;
pub mod swarm;
pub mod webdriver;

mod api_client;
mod build;
mod daemon;
mod data;
mod docker_cli;
mod docker_proxy;
mod environment;
mod measure;
mod s3;
mod secrets;
mod traefik;
mod wait;

use std::path::{Path, PathBuf};

pub use api_client::Api;
pub use build::daemon_binary;
pub use daemon::{mongodb_store, new_instance, Daemon, DaemonOptions};
pub use data::{enc, noise, object_path, pattern, strip_colours};
pub use docker_cli::{docker_exists, docker_inspect, remove_instance_resources};
pub use docker_proxy::DockerProxy;
pub use environment::{next_port_range, port_base, port_is_free, require_environment};
pub use measure::{percentile, proc_memory};
pub use s3::{get_bytes, s3_client, s3_client_no_retries, s3_client_to, sign_s3};
pub use secrets::secrets_in;
pub use traefik::{routed_daemon, routed_daemon_http, Traefik};
pub use wait::until;

/// The engine image the tests run.
pub const ENGINE_IMAGE: &str = "kalpana-test/seaweedfs:4.48";
/// Docker network the test daemons use.
pub const TEST_NETWORK: &str = "kalpana-test";

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}
