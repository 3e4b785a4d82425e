//! Lost nodes of the test Swarm, the daemon on MongoDB: five buckets of 100 MiB (and one with
//! no snapshot) on one node, each snapshotted to a bucket on another node, then
//! - host loss (and first an engine crash) — `host_loss`;
//! - a partition between the node and the manager and daemon — `partition`;
//! - a host loss during which the active daemon is killed: its standby finishes — `takeover`.
//!
//! Each prints its timeline. They take nodes away, so `cargo test` leaves them out: `.ci/test`
//! runs them alone, one at a time, after everything else (`cargo test -p kalpana-e2e --test
//! node_loss -- --test-threads=1`); each makes the cluster whole again at its end.

mod common;
mod host_loss;
mod partition;
mod takeover;
