//! The `migrate-store` command, run as the binary: every record copied, a second run refused.

use kalpana_domain::model::BucketRecord;
use kalpana_domain::store::{embedded::EmbeddedStore, Store};
use kalpana_manager_core::EngineKind;

/// A bucket record holding two ports, as the store suite's fixture does.
fn bucket(owner: &str, name: &str, ports: &[u16]) -> BucketRecord {
    BucketRecord {
        port: ports.first().copied(),
        console_port: ports.get(1).copied(),
        access_key: "AK".into(),
        secret_key_enc: "sealed".into(),
        ..BucketRecord::new(
            kalpana_domain::model::new_id(),
            name.to_string(),
            owner.to_string(),
            EngineKind::Seaweedfs,
        )
    }
}

/// The migrate-store command, from the embedded store into a second embedded store file: the
/// same code path as into MongoDB up to the target.
#[tokio::test]
async fn migrate_store_copies_every_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src_path = dir.path().join("src.redb");
    let dst_path = dir.path().join("dst.redb");
    {
        let src = EmbeddedStore::open(&src_path).expect("open");
        for i in 0..3 {
            src.put_user(&kalpana_domain::model::User {
                id: format!("u{i}"),
                name: format!("user {i}"),
                admin: i == 0,
                token_hash: format!("hash{i}"),
                created_at: kalpana_domain::model::now(),
            })
            .await
            .expect("user");
        }
        src.put_team(&kalpana_domain::model::Team {
            id: "t1".into(),
            name: "ops".into(),
            owner_id: "u0".into(),
            members: vec!["u0".into(), "u1".into()],
            roles: Default::default(),
            created_at: kalpana_domain::model::now(),
        })
        .await
        .expect("team");
        for i in 0..5u16 {
            let mut b = bucket(
                &format!("u{}", i % 3),
                &format!("bucket-{i}"),
                &[46000 + 2 * i, 46001 + 2 * i],
            );
            b.subdomain = Some(format!("bucket-{i}"));
            src.insert_bucket(&b).await.expect("bucket");
        }
        let dock = kalpana_domain::inventory::model::Dock {
            id: "d1".into(),
            name: "prod".into(),
            provider: kalpana_domain::inventory::model::CloudProvider::Linode,
            user_id: "u1".into(),
            team_id: None,
            token_enc: "sealed".into(),
            created_at: kalpana_domain::model::now(),
            last_synced_at: None,
            last_sync_error: None,
            last_good_sync_at: None,
            last_sync: None,
        };
        src.put_dock(&dock).await.expect("dock");
        let mut record = kalpana_domain::inventory::providers::linode::map(&serde_json::json!({
            "label": "photos", "region": "us-sea", "cluster": "us-sea-1", "size": 5, "objects": 1
        }))
        .expect("map");
        record.id = "r1".into();
        record.dock_id = "d1".into();
        src.write_inventory(&kalpana_domain::inventory::model::InventoryWrite {
            insert: vec![record],
            ..Default::default()
        })
        .await
        .expect("inventory");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kalpana-buckets"))
        .args(["migrate-store", "--from"])
        .arg(format!("redb:{}", src_path.display()))
        .arg("--to")
        .arg(format!("redb:{}", dst_path.display()))
        .output()
        .expect("run migrate-store");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    assert!(
        stdout.contains("users=3 teams=1 buckets=5 ports=10 docks=1 inventory=1"),
        "{stdout}"
    );
    let src = EmbeddedStore::open(&src_path).expect("src");
    let dst = EmbeddedStore::open(&dst_path).expect("dst");
    let (a, b) = (
        kalpana_domain::store::count(&src).await.expect("count"),
        kalpana_domain::store::count(&dst).await.expect("count"),
    );
    assert_eq!(a, b);
    assert_eq!(
        kalpana_domain::store::all_buckets(&src)
            .await
            .expect("src buckets"),
        kalpana_domain::store::all_buckets(&dst)
            .await
            .expect("dst buckets")
    );
    assert!(dst.subdomain_taken("bucket-3").await.expect("subdomain"));
    // Running it again would duplicate buckets: refused, nothing changed.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_kalpana-buckets"))
        .args(["migrate-store", "--from"])
        .arg(format!("redb:{}", src_path.display()))
        .arg("--to")
        .arg(format!("redb:{}", dst_path.display()))
        .output()
        .expect("run again");
    assert!(!again.status.success());
    assert_eq!(kalpana_domain::store::count(&dst).await.expect("count"), b);
}
