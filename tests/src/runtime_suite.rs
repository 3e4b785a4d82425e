//! The runtime conformance suite: the same checks against any implementation of
//! [`kalpana_manager_core::Runtime`] (as the store suite does for stores). Each check uses what
//! the domain uses: servers made from a bucket spec, the address the daemon reaches them at, the
//! engine's tools inside them, samples, events, freezing (where the runtime says it can), and
//! the data jobs (archive a volume to a bucket, fill a staging volume from it, promote it).
//!
//! Real parts only: the runtime under test makes real servers of the engine image, S3 is spoken
//! to them with the daemon's own client, and archives go into a real bucket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use futures::StreamExt;
use kalpana_manager_core::archive::{ArchiveKey, OpenKey, SealKey};
use kalpana_manager_core::runtime::{ArchiveJob, ArchiveTarget, FillJob, VolumeRole};
use kalpana_manager_core::{BucketSpec, EngineKind, Runtime};
use kalpana_s3_ops::{BucketClient, Endpoint};

/// Where the suite's servers go.
#[derive(Debug, Clone)]
pub struct Place {
    /// The instance label of everything the suite makes.
    pub instance: String,
    /// The network the runtime puts bucket servers on.
    pub network: String,
    /// Two free host ports.
    pub ports: (u16, u16),
}

/// A bucket spec of the engine under test.
pub fn spec(place: &Place, id: &str, port: u16) -> BucketSpec {
    BucketSpec {
        id: id.to_string(),
        name: format!("conf-{}", &id[..8]),
        owner: "conformance".into(),
        instance: place.instance.clone(),
        engine: EngineKind::Seaweedfs
            .profile()
            .with_image(crate::ENGINE_IMAGE),
        access_key: format!("AK{}", &id[..16].to_uppercase()),
        secret_key: format!("secret-{id}"),
        s3_port: port,
        console_port: None,
        bind_ip: "127.0.0.1".into(),
        network: place.network.clone(),
        routed_hosts: Vec::new(),
        routing: Default::default(),
        limits: Default::default(),
        generation: 1,
    }
}

/// A new bucket id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The bucket's S3 client at the origin the runtime gives, once it answers signed requests.
pub async fn client(rt: &dyn Runtime, s: &BucketSpec) -> Result<BucketClient> {
    let origin = rt
        .address(&s.id, s.engine.s3_port)
        .await?
        .ok_or_else(|| anyhow!("a running server has no address"))?;
    kalpana_manager_core::readiness::wait_http_ok(
        "seaweedfs",
        &format!("{origin}{}", s.engine.health_path),
        Duration::from_secs(60),
    )
    .await?;
    let c = BucketClient::new(
        &Endpoint {
            url: origin,
            region: "us-east-1".into(),
            access_key: s.access_key.clone(),
            secret_key: s.secret_key.clone(),
        },
        &s.name,
    );
    // Signed requests can lag the health answer by a few milliseconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c.create_bucket().await {
            Ok(()) => return Ok(c),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Puts `body` at `key`.
pub async fn put(c: &BucketClient, key: &str, body: &[u8]) -> Result<()> {
    let bytes = bytes::Bytes::copy_from_slice(body);
    let stream: kalpana_s3_ops::BodyStream = Box::pin(futures::stream::iter([Ok::<
        _,
        kalpana_s3_ops::BoxError,
    >(bytes)]));
    c.put_object(key, None, Some(body.len() as u64), stream)
        .await?;
    Ok(())
}

/// The object at `key`, if any.
pub async fn get(c: &BucketClient, key: &str) -> Result<Option<Vec<u8>>> {
    if c.head_object(key).await?.is_none() {
        return Ok(None);
    }
    let mut d = c.get_object(key, None).await?;
    let mut out = Vec::new();
    while let Some(chunk) = d.body.next().await {
        out.extend_from_slice(&chunk.map_err(|e| anyhow!("{e}"))?);
    }
    Ok(Some(out))
}

/// A presigner for the bucket's S3 at the daemon's address of its server.
pub async fn presigner(rt: &dyn Runtime, s: &BucketSpec) -> Result<kalpana_s3_ops::Presigner> {
    let origin = rt
        .address(&s.id, s.engine.s3_port)
        .await?
        .ok_or_else(|| anyhow!("a running server has no address"))?;
    Ok(kalpana_s3_ops::Presigner::new(
        &Endpoint {
            url: origin,
            region: "us-east-1".into(),
            access_key: s.access_key.clone(),
            secret_key: s.secret_key.clone(),
        },
        &s.name,
    ))
}

/// Makes, starts and serves a bucket's server; returns its S3 client.
pub async fn up(rt: &dyn Runtime, s: &BucketSpec) -> Result<BucketClient> {
    rt.create_volume(s).await?;
    rt.create_server(s, false).await?;
    rt.start_server(&s.id).await?;
    client(rt, s).await
}

/// Which checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every check.
    Everything,
    /// Servers, addresses, events, hosts and removal; not what runs on the server's node
    /// (volumes listed or removed, exec, samples, freezing, data jobs): for a cluster runtime
    /// without node agents here, which refuses those in words (checked).
    Servers,
}

/// Runs the checks of `scope` against `rt`; `place` says where. Removes what it made when the
/// checks pass (the caller removes what is labelled with the instance either way).
pub async fn run_all(rt: Arc<dyn Runtime>, place: &Place) -> Result<()> {
    run(rt, place, Scope::Everything).await
}

/// [`run_all`] for `scope`.
pub async fn run(rt: Arc<dyn Runtime>, place: &Place, scope: Scope) -> Result<()> {
    let rt = &*rt;
    let node_jobs = scope == Scope::Everything;
    rt.ping().await.context("ping")?;
    rt.prepare().await.context("prepare")?;
    rt.prepare().await.context("prepare is repeatable")?;
    let (a, b) = (
        spec(place, &new_id(), place.ports.0),
        spec(place, &new_id(), place.ports.1),
    );
    ensure!(
        rt.inspect_server(&a.id).await?.is_none(),
        "a server that was never made is none"
    );

    // Servers: made with the record's generation, listed, running, reachable.
    rt.create_volume(&a).await?;
    rt.create_volume(&a)
        .await
        .context("an existing volume is kept")?;
    rt.create_server(&a, false).await?;
    let made = rt
        .inspect_server(&a.id)
        .await?
        .ok_or_else(|| anyhow!("a made server is inspected"))?;
    ensure!(!made.running, "a made server is not started");
    ensure!(made.generation == Some(a.generation), "generation label");
    ensure!(
        made.bucket_id.as_deref() == Some(a.id.as_str()),
        "bucket label"
    );
    ensure!(
        rt.address(&a.id, a.engine.s3_port).await?.is_none(),
        "a stopped server has no address"
    );
    rt.start_server(&a.id).await?;
    rt.start_server(&a.id)
        .await
        .context("starting a running server is fine")?;
    let ca = client(rt, &a)
        .await
        .context("the daemon reaches the server")?;
    let shown = rt
        .inspect_server(&a.id)
        .await?
        .ok_or_else(|| anyhow!("running server"))?;
    ensure!(shown.running);
    ensure!(
        rt.origin(&shown, a.engine.s3_port) == rt.address(&a.id, a.engine.s3_port).await?,
        "origin and address agree"
    );
    ensure!(
        rt.list_servers()
            .await?
            .iter()
            .any(|c| c.bucket_id.as_deref() == Some(a.id.as_str())),
        "listed servers include it"
    );
    if !node_jobs {
        return servers_only(rt, &a, &b).await;
    }
    ensure!(
        rt.list_volumes()
            .await?
            .iter()
            .any(|v| v.bucket_id.as_deref() == Some(a.id.as_str())),
        "listed volumes include it"
    );

    // The engine's own tools run inside the server.
    let binary = a
        .engine
        .entrypoint
        .as_ref()
        .and_then(|e| e.first().cloned())
        .unwrap_or_else(|| "weed".into());
    let out = rt
        .exec(
            &a.id,
            &[binary.as_str(), "version"],
            b"",
            Duration::from_secs(30),
        )
        .await?;
    ensure!(out.exit_code == 0, "exec exit code {}", out.exit_code);
    ensure!(!out.stdout.is_empty(), "exec output");

    // Samples.
    let st = rt
        .stats(&a.id)
        .await?
        .ok_or_else(|| anyhow!("a running server is sampled"))?;
    ensure!(st.memory_bytes.is_some_and(|m| m > 0), "memory in use");
    hosts_and_workloads(rt).await?;

    // Freezing, where the runtime can.
    if rt.capabilities().freeze {
        rt.freeze(&a.id).await?;
        let frozen = tokio::time::timeout(Duration::from_millis(1500), ca.head_object("x")).await;
        ensure!(frozen.is_err(), "a frozen server does not answer");
        rt.thaw(&a.id).await?;
        ca.head_object("x")
            .await
            .context("a thawed server answers")?;
    }

    // Data jobs: archive A into B, sealed; fill A's staging volume from it; promote.
    put(&ca, "kept.txt", b"in the archive").await?;
    let cb = up(rt, &b).await.context("archive target")?;
    let seen = Arc::new(AtomicU64::new(0));
    let s2 = seen.clone();
    let key = ArchiveKey::generate();
    let job = ArchiveJob {
        target: ArchiveTarget {
            client: cb.clone(),
            presigner: presigner(rt, &b).await?,
            key: "snap.sealed".into(),
        },
        seal: SealKey {
            key: key.clone(),
            sealed_key: "conformance".into(),
            master_key_id: "conformance".into(),
            bucket_id: a.id.clone(),
            snapshot_id: "s1".into(),
        },
        progress: Arc::new(move |c| {
            s2.fetch_add(c, Ordering::SeqCst);
        }),
    };
    let archived = rt.archive(&a, job).await.context("archive")?;
    let stored = get(&cb, "snap.sealed")
        .await?
        .ok_or_else(|| anyhow!("the archive is stored"))?;
    ensure!(
        archived.bytes == stored.len() as u64,
        "outcome counts what is stored"
    );
    ensure!(
        seen.load(Ordering::SeqCst) == archived.bytes,
        "progress saw every byte"
    );
    {
        use sha2::Digest;
        ensure!(
            archived.sha256 == hex::encode(sha2::Sha256::digest(&stored)),
            "outcome hashes what is stored"
        );
    }
    ensure!(stored.starts_with(b"KALPSNAP"), "the archive is sealed");
    ensure!(
        !stored.windows(14).any(|w| w == b"in the archive"),
        "sealed: the object's bytes are not readable in it"
    );
    ensure!(
        rt.inspect_server(&a.id).await?.is_some_and(|c| c.running),
        "the server runs after an archive"
    );
    put(&ca, "later.txt", b"after the archive").await?;

    // A fill with the wrong key fails and leaves the bucket's data alone.
    let wrong = FillJob {
        source: ArchiveTarget {
            client: cb.clone(),
            presigner: presigner(rt, &b).await?,
            key: "snap.sealed".into(),
        },
        open: OpenKey::Sealed(ArchiveKey::generate()),
        progress: Arc::new(|_| {}),
    };
    if rt.fill(&a, VolumeRole::Staging, wrong).await.is_ok() {
        bail!("a fill with another key must fail");
    }
    rt.drop_staging(&a.id).await?;
    ensure!(!rt.staged(&a.id).await?, "no staging volume after a drop");
    ensure!(
        get(&ca, "later.txt").await?.is_some(),
        "data untouched by a failed fill"
    );

    let filled = rt
        .fill(
            &a,
            VolumeRole::Staging,
            FillJob {
                source: ArchiveTarget {
                    client: cb.clone(),
                    presigner: presigner(rt, &b).await?,
                    key: "snap.sealed".into(),
                },
                open: OpenKey::Sealed(key),
                progress: Arc::new(|_| {}),
            },
        )
        .await
        .context("fill")?;
    ensure!(filled == archived, "a fill reads what the archive stored");
    ensure!(rt.staged(&a.id).await?, "staged");
    ensure!(
        get(&ca, "later.txt").await?.is_some(),
        "staging leaves the data alone"
    );
    rt.promote_staging(&a).await.context("promote")?;
    rt.promote_staging(&a)
        .await
        .context("promote is repeatable")?;
    rt.start_server(&a.id).await?;
    let ca = client(rt, &a).await?;
    ensure!(
        get(&ca, "kept.txt").await?.as_deref() == Some(&b"in the archive"[..]),
        "the promoted data is the archive's"
    );
    ensure!(
        get(&ca, "later.txt").await?.is_none(),
        "what came after is gone"
    );
    rt.drop_staging(&a.id).await?;
    rt.drop_staging(&a.id)
        .await
        .context("dropping nothing is fine")?;

    down_and_removal(rt, &a, &b, true).await
}

/// The runtime's hosts are described, and an unknown workload is none.
async fn hosts_and_workloads(rt: &dyn Runtime) -> Result<()> {
    let hosts = rt.hosts().await?;
    ensure!(
        !hosts.is_empty() && hosts.iter().all(|h| h.cpus > 0 && h.memory_bytes > 0),
        "hosts"
    );
    ensure!(
        rt.find_workload("kalpana-conformance-no-such-container")
            .await?
            .is_none(),
        "an unknown workload is none"
    );
    Ok(())
}

/// The checks of [`Scope::Servers`] after the server runs: hosts, refusals in words, events,
/// removal.
async fn servers_only(rt: &dyn Runtime, a: &BucketSpec, b: &BucketSpec) -> Result<()> {
    hosts_and_workloads(rt).await?;
    for (what, refused) in [
        ("list volumes", rt.list_volumes().await.err()),
        (
            "exec",
            rt.exec(&a.id, &["true"], b"", Duration::from_secs(5))
                .await
                .err(),
        ),
        ("staged", rt.staged(&a.id).await.err()),
    ] {
        let e = refused.ok_or_else(|| anyhow!("{what}: answered though out of scope"))?;
        ensure!(
            matches!(
                e,
                kalpana_manager_core::Error::Unsupported { .. }
                    | kalpana_manager_core::Error::NodeUnavailable(_)
            ),
            "{what}: refused in words, not {e}"
        );
    }
    // A second server: two run at once, each at its own address.
    let cb = up(rt, b).await.context("a second server")?;
    put(&cb, "b.txt", b"second").await?;
    ensure!(
        rt.address(&a.id, a.engine.s3_port).await? != rt.address(&b.id, b.engine.s3_port).await?,
        "two servers, two addresses"
    );
    down_and_removal(rt, a, b, false).await
}

/// Stopping is told as an event and leaves no address; removal is idempotent (volumes too when
/// `volumes`).
async fn down_and_removal(
    rt: &dyn Runtime,
    a: &BucketSpec,
    b: &BucketSpec,
    volumes: bool,
) -> Result<()> {
    // Events: a server going down is told.
    // Watched from now on (a stream may subscribe only once it is first polled).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut events = rt.events();
    let watcher = tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    rt.stop_server(&a.id, Duration::from_secs(5)).await?;
    let told = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(ev) = rx.recv().await {
            if let Ok(ev) = ev {
                if ev.bucket_id == a.id && ev.action.is_down() {
                    return true;
                }
            }
        }
        false
    })
    .await;
    watcher.abort();
    ensure!(told == Ok(true), "a down event for the stopped server");
    ensure!(
        rt.address(&a.id, a.engine.s3_port).await?.is_none(),
        "a stopped server has no address"
    );

    // Removal is idempotent.
    for s in [a, b] {
        rt.stop_server(&s.id, Duration::from_secs(5)).await?;
        rt.stop_server(&s.id, Duration::from_secs(5)).await?;
        rt.remove_server(&s.id).await?;
        rt.remove_server(&s.id).await?;
        if volumes {
            rt.remove_volume(&s.id).await?;
            rt.remove_volume(&s.id).await?;
        }
        ensure!(rt.inspect_server(&s.id).await?.is_none(), "removed");
    }
    if !volumes {
        return Ok(());
    }
    ensure!(
        !rt.list_volumes()
            .await?
            .iter()
            .any(|v| v.bucket_id.as_deref() == Some(a.id.as_str())),
        "the volume is gone"
    );
    Ok(())
}
