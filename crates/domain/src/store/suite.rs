//! The one store test suite, written against the [`Store`] trait and run for every store
//! (`crates/api/tests/store_suite.rs`). Each check panics with a message on failure.

use std::sync::Arc;

use kalpana_manager_core::EngineKind;

use super::{BucketQuery, Store};
use crate::error::Error;
use crate::model::{
    new_id, now, Backend, BucketRecord, BucketStatus, Container, ExternalTarget, Provider, Team,
    User, Workspace,
};

/// A bucket record with the given owner, name and ports, as a test fixture.
pub fn bucket(owner: &str, name: &str, ports: &[u16]) -> BucketRecord {
    BucketRecord {
        image: "img".into(),
        host: "127.0.0.1".into(),
        port: ports.first().copied(),
        console_port: ports.get(1).copied(),
        access_key: "AK".into(),
        secret_key_enc: "sealed".into(),
        region: "us-east-1".into(),
        ..BucketRecord::new(
            new_id(),
            name.to_string(),
            owner.to_string(),
            EngineKind::Seaweedfs,
        )
    }
}

fn user(id: &str, token_hash: &str) -> User {
    User {
        id: id.into(),
        name: id.into(),
        admin: false,
        token_hash: token_hash.into(),
        created_at: now(),
    }
}

/// Runs every check of the suite against `store`, which must be empty.
pub async fn run_all(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
    users(&*store).await;
    teams(&*store).await;
    bucket_uniqueness(&*store).await;
    bucket_updates(&*store).await;
    backends(&*store).await;
    listing(&*store).await;
    hosts_and_domains(&*store).await;
    workspaces(&*store).await;
    super::suite_inventory::inventory(&*store).await;
    super::suite_inventory::snapshots(&*store).await;
    lease(&*store).await;
    master_key(&*store).await;
    nodes(&*store).await;
    concurrent_inserts(store.clone()).await;
}

async fn workspaces(s: &dyn Store) {
    let w = Workspace {
        id: new_id(),
        name: "dev box".into(),
        user_id: "u1".into(),
        team_id: None,
        created_at: now(),
    };
    s.put_workspace(&w).await.expect("put workspace");
    assert_eq!(s.get_workspace(&w.id).await.expect("get"), Some(w.clone()));
    let renamed = Workspace {
        name: "renamed".into(),
        ..w.clone()
    };
    s.put_workspace(&renamed).await.expect("replace");
    let all = s.list_workspaces().await.expect("list");
    assert_eq!(all.iter().filter(|x| x.id == w.id).count(), 1);
    assert_eq!(
        s.get_workspace(&w.id).await.expect("get").map(|x| x.name),
        Some("renamed".into())
    );
    s.delete_workspace(&w.id).await.expect("delete");
    s.delete_workspace(&w.id).await.expect("delete again");
    assert_eq!(s.get_workspace(&w.id).await.expect("get"), None);
}

async fn users(s: &dyn Store) {
    s.put_user(&user("u1", "h1")).await.expect("put u1");
    assert_eq!(
        s.user_by_token_hash("h1")
            .await
            .expect("lookup")
            .map(|u| u.id),
        Some("u1".into())
    );
    assert!(
        matches!(s.put_user(&user("u2", "h1")).await, Err(Error::Conflict(_))),
        "a token hash must be unique"
    );
    // Rotating a token drops the old hash.
    s.put_user(&user("u1", "h1b")).await.expect("rotate");
    assert!(s.user_by_token_hash("h1").await.expect("lookup").is_none());
    assert!(s.user_by_token_hash("h1b").await.expect("lookup").is_some());
    s.put_user(&user("u2", "h2")).await.expect("put u2");
    assert_eq!(s.list_users().await.expect("list").len(), 2);
    assert!(s.get_user("nobody").await.expect("get").is_none());
}

async fn teams(s: &dyn Store) {
    let team = Team {
        id: "t1".into(),
        name: "ops".into(),
        owner_id: "u1".into(),
        members: vec!["u1".into(), "u2".into()],
        roles: Default::default(),
        created_at: now(),
    };
    s.put_team(&team).await.expect("put team");
    assert_eq!(s.teams_of("u2").await.expect("teams").len(), 1);
    let mut fewer = team.clone();
    fewer.members.retain(|m| m != "u2");
    s.put_team(&fewer).await.expect("remove member");
    assert!(s.teams_of("u2").await.expect("teams").is_empty());
    assert_eq!(s.get_team("t1").await.expect("get"), Some(fewer));
}

async fn bucket_uniqueness(s: &dyn Store) {
    let a = bucket("u1", "alpha", &[41000, 41001]);
    s.insert_bucket(&a).await.expect("insert");
    let same_name = bucket("u1", "alpha", &[41002]);
    assert!(matches!(
        s.insert_bucket(&same_name).await,
        Err(Error::Conflict(_))
    ));
    let other_owner = bucket("u2", "alpha", &[41003]);
    s.insert_bucket(&other_owner)
        .await
        .expect("same name, other owner");
    let port_clash = bucket("u1", "beta", &[41001]);
    assert!(matches!(
        s.insert_bucket(&port_clash).await,
        Err(Error::Conflict(_))
    ));
    assert!(
        s.get_bucket(&port_clash.id).await.expect("get").is_none(),
        "no trace of a refused insert"
    );
    let mut sub = bucket("u1", "gamma", &[41004]);
    sub.subdomain = Some("alpha".into());
    s.insert_bucket(&sub).await.expect("subdomain");
    let mut sub2 = bucket("u2", "delta", &[41005]);
    sub2.subdomain = Some("alpha".into());
    assert!(matches!(
        s.insert_bucket(&sub2).await,
        Err(Error::Conflict(_))
    ));
    assert!(s.subdomain_taken("alpha").await.expect("taken"));

    let ports = s.reserved_ports().await.expect("ports");
    for p in [41000, 41001, 41003, 41004] {
        assert!(ports.contains(&p), "port {p} not reserved");
    }
    assert!(!ports.contains(&41002));

    for b in [&a, &other_owner, &sub] {
        s.delete_bucket(&b.id).await.expect("delete");
    }
    s.delete_bucket("missing")
        .await
        .expect("deleting a missing bucket is fine");
    assert!(
        s.reserved_ports().await.expect("ports").is_empty(),
        "ports freed on delete"
    );
    assert!(!s.subdomain_taken("alpha").await.expect("taken"));
    s.insert_bucket(&bucket("u1", "alpha", &[41000]))
        .await
        .expect("name free again");
}

/// One bucket per linked host, at insert and update, freed on delete; domains verified in place.
async fn hosts_and_domains(s: &dyn Store) {
    let mut a = bucket("u1", "hosta", &[41300]);
    a.linked_host = Some("files.example.org".into());
    s.insert_bucket(&a).await.expect("insert linked");
    let mut b = bucket("u2", "hostb", &[41301]);
    b.linked_host = Some("files.example.org".into());
    assert!(
        matches!(s.insert_bucket(&b).await, Err(Error::Conflict(_))),
        "a second bucket on one host"
    );
    b.linked_host = None;
    s.insert_bucket(&b).await.expect("insert unlinked");
    b.linked_host = Some("files.example.org".into());
    assert!(
        matches!(s.update_bucket(&b, None).await, Err(Error::Conflict(_))),
        "linking to a host another bucket holds"
    );
    a.linked_host = Some("www.example.org".into());
    s.update_bucket(&a, None).await.expect("relink a");
    s.update_bucket(&b, None)
        .await
        .expect("host freed by the relink");
    s.delete_bucket(&b.id).await.expect("delete b");
    let mut c = bucket("u3", "hostc", &[41302]);
    c.linked_host = Some("files.example.org".into());
    s.insert_bucket(&c).await.expect("host freed by the delete");
    for x in [&a, &c] {
        s.delete_bucket(&x.id).await.expect("delete");
    }

    let mut d = crate::model::Domain {
        id: new_id(),
        name: "verify.example.org".into(),
        user_id: "u1".into(),
        team_id: None,
        verification_token: "tok".into(),
        verified_at: None,
        verified_by: None,
        created_at: now(),
    };
    s.insert_domain(&d).await.expect("insert domain");
    d.verified_at = Some(now());
    d.verified_by = Some("dns".into());
    s.update_domain(&d).await.expect("verify");
    let stored = s.get_domain(&d.id).await.expect("get").expect("there");
    assert_eq!(stored, d);
    let mut renamed = d.clone();
    renamed.name = "other.example.org".into();
    assert!(
        s.update_domain(&renamed).await.is_err(),
        "names do not change"
    );
}

/// The first master key recorded stays recorded.
/// Node records: written whole, read back as written, one per node.
async fn nodes(s: &dyn Store) {
    use crate::model::{NodeRecord, SetAsideVolume};
    assert!(s.list_nodes().await.expect("list").is_empty());
    let mut n = NodeRecord {
        id: "n1".into(),
        hostname: Some("host-1".into()),
        renewed_at_ms: 1_000,
        engine_ok: true,
        lost_at_ms: None,
        set_aside: Vec::new(),
    };
    s.put_node(&n).await.expect("put");
    n.lost_at_ms = Some(5_000);
    n.set_aside.push(SetAsideVolume {
        volume: "kalpana-bucket-b1-aside-5000".into(),
        bucket_id: "b1".into(),
        bucket_name: "photos".into(),
        evacuated_at: now(),
        set_aside_at: now(),
    });
    s.put_node(&n).await.expect("put again");
    let other = NodeRecord {
        id: "n2".into(),
        hostname: None,
        renewed_at_ms: 2_000,
        engine_ok: false,
        lost_at_ms: None,
        set_aside: Vec::new(),
    };
    s.put_node(&other).await.expect("put n2");
    let mut all = s.list_nodes().await.expect("list");
    all.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(all, vec![n, other]);
}

async fn master_key(s: &dyn Store) {
    assert_eq!(s.claim_master_key("k1").await.expect("claim"), "k1");
    assert_eq!(
        s.claim_master_key("k2").await.expect("claim"),
        "k1",
        "the first stays"
    );
    assert_eq!(s.claim_master_key("k1").await.expect("claim"), "k1");
}

/// One holder at a time; renewals by the holder, takeover only after expiry, release.
async fn lease(s: &dyn Store) {
    s.acquire_lease("a", 1_000, 10_000)
        .await
        .expect("a takes it");
    s.acquire_lease("a", 5_000, 10_000)
        .await
        .expect("a renews it");
    assert!(
        matches!(s.acquire_lease("b", 14_000, 10_000).await, Err(Error::Conflict(m)) if m.contains("a")),
        "b while a's lease runs until 15,000"
    );
    s.acquire_lease("b", 15_001, 10_000)
        .await
        .expect("b after expiry");
    assert!(
        s.acquire_lease("a", 16_000, 10_000).await.is_err(),
        "a lost it to b"
    );
    s.release_lease("a")
        .await
        .expect("releasing another's lease is a no-op");
    assert!(s.acquire_lease("a", 17_000, 10_000).await.is_err());
    s.release_lease("b").await.expect("release");
    s.acquire_lease("a", 17_000, 10_000)
        .await
        .expect("free after release");
    s.release_lease("a").await.expect("release");
}

async fn bucket_updates(s: &dyn Store) {
    let mut b = bucket("u1", "upd", &[42000, 42001]);
    s.insert_bucket(&b).await.expect("insert");
    b.status = BucketStatus::Running;
    s.update_bucket(&b, Some(BucketStatus::Creating))
        .await
        .expect("CREATING → RUNNING");
    b.status = BucketStatus::Stopped;
    assert!(
        matches!(
            s.update_bucket(&b, Some(BucketStatus::Creating)).await,
            Err(Error::Conflict(_))
        ),
        "a transition from a status the bucket is not in must lose"
    );
    // Releasing ports (failed provisioning) frees them; taking new ones reserves them.
    b.port = Some(42002);
    b.console_port = None;
    s.update_bucket(&b, None).await.expect("new ports");
    let ports = s.reserved_ports().await.expect("ports");
    assert!(ports.contains(&42002) && !ports.contains(&42000) && !ports.contains(&42001));
    let stored = s.get_bucket(&b.id).await.expect("get").expect("exists");
    assert_eq!(stored, b);
    // A bucket's owner and name never change: the same refusal on every store, and nothing
    // written.
    for (owner, name) in [("u2", "upd"), ("u1", "renamed")] {
        let mut moved = b.clone();
        moved.user_id = owner.into();
        moved.name = name.into();
        assert!(
            matches!(s.update_bucket(&moved, None).await, Err(Error::Conflict(ref m)) if m.contains("never change")),
            "{owner}/{name}: a changed owner or name must be refused as a conflict"
        );
    }
    assert_eq!(s.get_bucket(&b.id).await.expect("get").expect("exists"), b);
    let ghost = bucket("u1", "ghost", &[]);
    assert!(matches!(
        s.update_bucket(&ghost, None).await,
        Err(Error::NotFound(_))
    ));
    s.delete_bucket(&b.id).await.expect("delete");
}

/// Both kinds of bucket come back as they were stored, container parts and target included.
async fn backends(s: &dyn Store) {
    let mut managed = bucket("u1", "managed-parts", &[42010]);
    managed.backend = Backend::Managed(Container {
        container_id: Some("c-1".into()),
        volume_name: Some("v-1".into()),
        network_name: Some("n-1".into()),
        internal_host: Some("h-1".into()),
    });
    let mut external = bucket("u1", "external-target", &[]);
    external.backend = Backend::External(ExternalTarget {
        provider: Provider::R2,
        endpoint: "https://acc.r2.cloudflarestorage.com".into(),
        bucket_name: "remote".into(),
        path_style: true,
        account_id: Some("acc".into()),
    });
    for b in [&managed, &external] {
        s.insert_bucket(b).await.expect("insert");
        let stored = s.get_bucket(&b.id).await.expect("get").expect("exists");
        assert_eq!(
            &stored, b,
            "{}: the backend must come back as stored",
            b.name
        );
        s.delete_bucket(&b.id).await.expect("delete");
    }
}

async fn listing(s: &dyn Store) {
    let before = s
        .list_buckets(&BucketQuery {
            all: true,
            limit: 10_000,
            ..Default::default()
        })
        .await
        .expect("list");
    for b in before {
        s.delete_bucket(&b.id).await.expect("clean");
    }
    let mut ids = Vec::new();
    for i in 0..25u16 {
        let mut b = bucket(
            if i % 2 == 0 { "u1" } else { "u2" },
            &format!("list-{i}"),
            &[],
        );
        if i % 5 == 0 {
            b.team_id = Some("t9".into());
        }
        if i % 3 == 0 {
            b.workspace_id = Some("w1".into());
        }
        s.insert_bucket(&b).await.expect("insert");
        ids.push(b.id);
    }
    // u1 sees its own 13 plus the team buckets of u2 (i = 5, 15).
    let q = BucketQuery {
        owner: Some("u1".into()),
        teams: vec!["t9".into()],
        limit: 10,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut page = s.list_buckets(&q).await.expect("page");
    while !page.is_empty() {
        seen.extend(page.iter().map(|b| b.id.clone()));
        let after = page.last().map(|b| b.id.clone());
        page = s
            .list_buckets(&BucketQuery { after, ..q.clone() })
            .await
            .expect("page");
    }
    assert_eq!(seen.len(), 15, "13 own + 2 team buckets");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "pages are in id order without repeats");
    let ws = s
        .list_buckets(&BucketQuery {
            owner: Some("u1".into()),
            workspace_id: Some("w1".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("workspace filter");
    assert!(ws
        .iter()
        .all(|b| b.workspace_id.as_deref() == Some("w1") && b.user_id == "u1"));
    assert_eq!(ws.len(), 5); // i = 0, 6, 12, 18, 24
    let none = s
        .list_buckets(&BucketQuery {
            owner: Some("u1".into()),
            status: Some(BucketStatus::Running),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("status filter");
    assert!(none.is_empty());
    for id in ids {
        s.delete_bucket(&id).await.expect("clean");
    }
}

async fn concurrent_inserts(s: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..20u16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.insert_bucket(&bucket("u1", "race", &[43000 + i])).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => wins += 1,
            Err(Error::Conflict(_)) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(
        wins, 1,
        "exactly one of twenty concurrent inserts of one name wins"
    );
    assert_eq!(
        s.reserved_ports()
            .await
            .expect("ports")
            .iter()
            .filter(|p| (43000..43020).contains(*p))
            .count(),
        1
    );
}
