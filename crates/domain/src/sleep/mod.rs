//! Sleep and wake (scale to zero). A managed bucket with no client request for its
//! `sleepAfterSecs` goes to sleep: its container is stopped (memory and CPU freed), its status
//! stays RUNNING, its ports and hostnames stay its own. The next request by any path is held
//! while the container starts, then served by the engine.
//!
//! Where requests are seen (and held):
//! - the direct port and Traefik: the daemon owns every bucket's host ports ([`proxy`]); Traefik
//!   routes a bucket's hosts to the same port, and while the container is away (its labels,
//!   hence its router, gone) Traefik's catch-all sends them to the daemon, which passes them to
//!   that port. One observation point: a byte moved on a proxied connection is activity.
//! - the API's object routes: each call counts as a user of the server ([`use_server`]).
//! - presigned URLs go to the endpoint, so through one of the two above.
//! - attached workspace containers reach the engine by its name on a network the daemon does
//!   not sit on: a bucket with attachments never sleeps (the name goes with a stopped container).
//!
//! The daemon's own requests (recounts, settings checks, key refresh, samples) go straight to
//! the container's address, so they are never activity, and they are skipped while it sleeps.

pub mod gate;
mod idle;
pub mod listeners;
pub mod proxy;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use gate::{Gate, Gates, SleepState};
pub use idle::spawn_idle_loop;

use crate::context::Core;
use crate::error::{Error, Result};
use crate::events::{BucketEvent, EventKind};
use crate::fault;
use crate::model::{now, BucketKind, BucketRecord, BucketStatus, SleepRecord};

/// How long a bucket going to sleep waits for its open requests to finish before it gives up
/// (and stays awake).
const DRAIN: Duration = Duration::from_secs(10);

/// How long `docker stop` waits before it kills a container going to sleep (as a stop does).
const STOP_GRACE: Duration = Duration::from_secs(30);

/// At the daemon's start: a gate for every managed bucket (asleep ones stay asleep), the
/// daemon's listeners on their ports, and the idle loop.
pub async fn start(core: &Core) -> Result<()> {
    let buckets = crate::store::all_buckets(core.store.as_ref()).await?;
    // A bucket still being made gets its listener from its provisioning, which moves it to
    // other ports when its own were taken while the daemon was down.
    for b in buckets.iter().filter(|b| {
        b.kind() == BucketKind::Managed && !b.deleting && b.status != BucketStatus::Creating
    }) {
        let _ = proxy::open(core, b, true);
    }
    let asleep = buckets.iter().filter(|b| b.asleep()).count();
    tracing::info!(
        listening = core.proxies.count(),
        asleep,
        "listening on the buckets' ports"
    );
    spawn_idle_loop(core.clone());
    Ok(())
}

/// A user of an awake server: while one is held the bucket does not go to sleep.
pub struct Use(Arc<Gate>);

impl Use {
    /// Something moved for the request (a chunk of a streamed body).
    pub fn touch(&self) {
        self.0.touch();
    }
}

impl Drop for Use {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A request counted among those a sleeping bucket holds.
struct Held<'a>(&'a Gate);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.unhold();
    }
}

/// The seconds after which `b` sleeps, 0 for never.
pub fn sleep_after(core: &Core, b: &BucketRecord) -> u64 {
    b.sleep_after_secs.unwrap_or(core.config.sleep_after_secs)
}

/// Waits until bucket `b`'s server is awake, waking it when it sleeps, and counts the caller as
/// a user (a client request: it is activity). At most `KALPANA_WAKE_QUEUE` callers wait per
/// bucket; beyond that, or when the wake fails, the error says so (503 with `Retry-After`).
pub async fn use_server(core: &Core, b: &BucketRecord) -> Result<Use> {
    let gate = core.sleep.of(b);
    gate.request();
    use_gate(core, &b.id, &gate).await
}

/// [`use_server`] with the gate in hand (the proxy's connections keep theirs).
pub async fn use_gate(core: &Core, id: &str, gate: &Arc<Gate>) -> Result<Use> {
    let mut held = None;
    let mut changes = gate.watch();
    loop {
        let state = match gate.try_use() {
            Ok(()) => {
                if held.is_some() {
                    core.metrics
                        .inc("kalpana_requests_held_total", &[("outcome", "served")]);
                }
                return Ok(Use(gate.clone()));
            }
            Err(state) => state,
        };
        if held.is_none() {
            if !gate.hold(core.config.wake_queue) {
                core.metrics
                    .inc("kalpana_requests_held_total", &[("outcome", "refused")]);
                return Err(Error::WakeQueueFull(format!(
                    "the bucket is waking and already holds {} requests; try again shortly",
                    core.config.wake_queue
                )));
            }
            held = Some(Held(gate));
        }
        if state == SleepState::Asleep {
            if let Err(e) = wake(core, id, gate).await {
                core.metrics
                    .inc("kalpana_requests_held_total", &[("outcome", "failed")]);
                return Err(e);
            }
            continue;
        }
        // Waking or going to sleep: the next state decides.
        changes.mark_unchanged();
        if gate.state() == state {
            let _ = changes.changed().await;
        }
    }
}

/// Wakes bucket `id` (and only it; the caller holds its request): the container is started,
/// its engine's first signed answer awaited, the record marked awake. A failed wake leaves the
/// bucket asleep (the next request tries again) and says why.
pub async fn wake(core: &Core, id: &str, gate: &Arc<Gate>) -> Result<()> {
    let _turn = gate.turn.lock().await;
    if gate.state() != SleepState::Asleep {
        return Ok(());
    }
    gate.set(SleepState::Waking);
    let t = Instant::now();
    match wake_steps(core, id, t).await {
        Ok(()) => {
            gate.set(SleepState::Awake);
            Ok(())
        }
        Err(e) => {
            tracing::warn!(bucket = %id, error = %e, "waking the bucket failed; it stays asleep");
            gate.set(SleepState::Asleep);
            Err(match e {
                Error::NotFound(_) | Error::Conflict(_) => e,
                // The engine's and Docker's words stay in the log (above).
                _ => Error::Unavailable(
                    "the bucket could not be woken; try again shortly".to_string(),
                ),
            })
        }
    }
}

async fn wake_steps(core: &Core, id: &str, t: Instant) -> Result<()> {
    let mut b = core.lock_bucket(id).await?;
    if !b.asleep() {
        // Woken by someone else (reconcile saw its container run): nothing to start.
        return Ok(());
    }
    if b.status != BucketStatus::Running || b.deleting {
        return Err(Error::Conflict(format!(
            "bucket {} is {} and cannot wake",
            b.name,
            if b.deleting {
                "being deleted"
            } else {
                b.status.as_str()
            }
        )));
    }
    core.runtime.start_server(id).await?;
    let client = crate::lifecycle::wait_serving(core, &b).await?;
    // Signed requests can lag the health answer by a few milliseconds: the held requests are
    // let through only once one is answered.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.bucket_exists().await {
            Ok(true) => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(5)).await,
            Ok(false) => {
                return Err(Error::Unavailable(format!(
                    "bucket {} woke without its S3 bucket",
                    b.name
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    fault::point("wake.started");
    let millis = t.elapsed().as_millis() as u64;
    let last_request_at = b.sleep.as_ref().and_then(|s| s.last_request_at.clone());
    b.sleep = Some(SleepRecord {
        asleep: false,
        since: Some(now()),
        last_request_at,
        last_wake_millis: Some(millis),
    });
    b.write().await?;
    core.metrics.observe_wake(millis as f64 / 1000.0);
    tracing::info!(bucket = %id, wake_ms = millis, "bucket woke");
    core.events.publish(BucketEvent::of(
        EventKind::Wake,
        &b,
        Some(format!("woke in {millis} ms")),
    ));
    Ok(())
}

/// Puts bucket `id` to sleep now: new requests are held, open ones finish (at most
/// [`DRAIN`]), its container is stopped and the record marked asleep. `Ok(false)` when it was
/// not awake; a conflict when it cannot sleep (not RUNNING, attachments, still in use).
pub async fn put_to_sleep(core: &Core, id: &str, why: &str) -> Result<bool> {
    let Some(b) = core.store.get_bucket(id).await? else {
        return Err(Error::NotFound("bucket"));
    };
    may_sleep(&b)?;
    let gate = core.sleep.of(&b);
    let _turn = gate.turn.lock().await;
    if gate.state() != SleepState::Awake {
        return Ok(false);
    }
    gate.set(SleepState::GoingToSleep);
    let deadline = Instant::now() + DRAIN;
    while gate.users() > 0 {
        if Instant::now() >= deadline {
            gate.set(SleepState::Awake);
            return Err(Error::Conflict(format!(
                "bucket {} is still in use ({} open requests); it stays awake",
                b.name,
                gate.users()
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match sleep_steps(core, id, &gate, why).await {
        Ok(()) => {
            gate.set(SleepState::Asleep);
            Ok(true)
        }
        Err(e) => {
            gate.set(SleepState::Awake);
            Err(e)
        }
    }
}

/// Why `b` cannot sleep, if it cannot.
fn may_sleep(b: &BucketRecord) -> Result<()> {
    if b.kind() != BucketKind::Managed {
        return Err(Error::Conflict(format!(
            "bucket {} is external: there is no container to stop",
            b.name
        )));
    }
    if b.status != BucketStatus::Running || b.deleting || b.phase.is_some() {
        return Err(Error::Conflict(format!(
            "bucket {} is {}: only a RUNNING bucket sleeps",
            b.name,
            b.status.as_str()
        )));
    }
    if !b.attachments.is_empty() {
        return Err(Error::Conflict(format!(
            "bucket {} has attached containers, which reach it by a name that goes with a stopped container: it stays awake",
            b.name
        )));
    }
    Ok(())
}

async fn sleep_steps(core: &Core, id: &str, gate: &Gate, why: &str) -> Result<()> {
    let mut b = core.lock_bucket(id).await?;
    may_sleep(&b)?;
    core.runtime.stop_server(id, STOP_GRACE).await?;
    fault::point("sleep.stopped");
    core.addresses.set(id, None);
    core.s3_clients.forget(id);
    let last_request_at = gate
        .last_request_ms()
        .and_then(crate::model::rfc3339_ms)
        .or_else(|| b.sleep.as_ref().and_then(|s| s.last_request_at.clone()));
    let last_wake_millis = b.sleep.as_ref().and_then(|s| s.last_wake_millis);
    b.sleep = Some(SleepRecord {
        asleep: true,
        since: Some(now()),
        last_request_at,
        last_wake_millis,
    });
    b.write().await?;
    tracing::info!(bucket = %id, reason = why, "bucket fell asleep");
    core.events.publish(BucketEvent::of(
        EventKind::Sleep,
        &b,
        Some(format!("asleep: {why}")),
    ));
    Ok(())
}

/// [`crate::lifecycle::running`], with its server awake: a sleeping bucket is woken (the call
/// waits for it), and the call is a client request, keeping the bucket awake while the returned
/// use is held.
pub async fn serving(
    core: &Core,
    caller: &crate::access::Caller,
    id: &str,
    needed: crate::access::Access,
) -> Result<(BucketRecord, Option<Use>)> {
    let b = crate::lifecycle::running(core, caller, id, needed).await?;
    let awake = match b.kind() {
        BucketKind::Managed => Some(use_server(core, &b).await?),
        BucketKind::External => None,
    };
    Ok((b, awake))
}

/// Wakes bucket `b` for an operation that needs its engine (keys, rotation, settings, restore)
/// and keeps it awake until the returned use is dropped; none for a bucket without a server.
pub async fn awake_for_operation(core: &Core, b: &BucketRecord) -> Result<Option<Use>> {
    if b.kind() != BucketKind::Managed || b.status != BucketStatus::Running {
        return Ok(None);
    }
    let gate = core.sleep.of(b);
    use_gate(core, &b.id, &gate).await.map(Some)
}

/// Locks bucket `id` for an operation that needs its engine, waking it first when it sleeps;
/// it stays awake while the returned use is held. Never wakes with the lock held (a wake takes
/// the lock itself).
pub async fn lock_awake(core: &Core, id: &str) -> Result<(crate::context::Locked, Option<Use>)> {
    let Some(b) = core.store.get_bucket(id).await? else {
        return Err(Error::NotFound("bucket"));
    };
    let awake = awake_for_operation(core, &b).await?;
    Ok((core.lock_bucket(id).await?, awake))
}

/// A stopped bucket does not sleep: its record and gate forget a sleep (it starts awake).
pub fn forget_sleep(core: &Core, b: &mut BucketRecord) {
    if let Some(s) = b.sleep.as_mut() {
        s.asleep = false;
    }
    if let Some(g) = core.sleep.get(&b.id) {
        g.set(SleepState::Awake);
    }
}

/// Reconcile found the container of a bucket recorded asleep running (a wake the daemon died
/// in, or a start by hand): the record catches up.
pub async fn mark_woken(core: &Core, b: &mut crate::context::Locked) -> Result<()> {
    let gate = core.sleep.of(b);
    let mut s = b.sleep.clone().unwrap_or_default();
    s.asleep = false;
    s.since = Some(now());
    b.sleep = Some(s);
    b.write().await?;
    gate.set(SleepState::Awake);
    tracing::info!(bucket = %b.id, "the container of a sleeping bucket runs: recorded awake");
    core.events.publish(BucketEvent::of(
        EventKind::Wake,
        b,
        Some("found running; recorded awake".into()),
    ));
    Ok(())
}

/// The `activity` of a bucket's view.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    /// `awake`, `asleep` or `waking`.
    pub state: &'static str,
    /// When it last fell asleep or woke (RFC 3339).
    pub since: Option<String>,
    /// The last client request the daemon saw (RFC 3339).
    pub last_request_at: Option<String>,
    /// How long its last wake took.
    pub last_wake_millis: Option<u64>,
    /// Seconds with no request after which it sleeps (0: never).
    pub sleep_after_secs: u64,
    /// Why it does not sleep though it is set to, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_awake: Option<&'static str>,
}

/// The activity of managed bucket `b` (none for an external one), from memory and its record:
/// reading it never wakes anything.
pub fn activity(core: &Core, b: &BucketRecord) -> Option<Activity> {
    if b.kind() != BucketKind::Managed {
        return None;
    }
    let rec = b.sleep.clone().unwrap_or_default();
    let gate = core.sleep.get(&b.id);
    let state = gate
        .as_ref()
        .map_or(if rec.asleep { "asleep" } else { "awake" }, |g| {
            g.state().word()
        });
    let last_request_at = gate
        .as_ref()
        .and_then(|g| g.last_request_ms())
        .and_then(crate::model::rfc3339_ms)
        .or(rec.last_request_at);
    let after = sleep_after(core, b);
    Some(Activity {
        state,
        since: gate.map(|g| g.since()).or(rec.since),
        last_request_at,
        last_wake_millis: rec.last_wake_millis,
        sleep_after_secs: after,
        kept_awake: (after > 0 && !b.attachments.is_empty()).then_some("attachments"),
    })
}
