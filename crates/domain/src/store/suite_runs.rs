//! The store suite, run against every store: the embedded store, and the MongoDB store against
//! the wire server `KALPANA_TEST_MONGODB_URI` names (required: the README's test command starts
//! one).

use std::sync::Arc;

use crate::store::{embedded::EmbeddedStore, suite, Store};

#[tokio::test]
async fn embedded_store_passes_the_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("suite.redb")).expect("open"));
    suite::run_all(store).await;
}

#[tokio::test]
async fn embedded_store_keeps_data_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("reopen.redb");
    let b = suite::bucket("u1", "kept", &[45000]);
    {
        let store = EmbeddedStore::open(&path).expect("open");
        store.insert_bucket(&b).await.expect("insert");
    }
    let store = EmbeddedStore::open(&path).expect("reopen");
    assert_eq!(store.get_bucket(&b.id).await.expect("get"), Some(b));
    assert!(store
        .reserved_ports()
        .await
        .expect("ports")
        .contains(&45000));
}

#[tokio::test]
async fn mongodb_store_passes_the_suite_against_a_server() {
    let Some(uri) = std::env::var("KALPANA_TEST_MONGODB_URI")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        panic!(
            "KALPANA_TEST_MONGODB_URI is not set: run the README's test command (.ci/build-test-images && .ci/test), which starts a MongoDB wire server from .tools/mongo-venv and sets it"
        );
    };
    let db = format!("kalpana_suite_{}", uuid::Uuid::new_v4().simple());
    let store = crate::store::mongo::MongoStore::connect_to(&uri, Some(&db))
        .await
        .expect("KALPANA_TEST_MONGODB_URI is set but the MongoDB store could not connect");
    // Connecting twice creates the indexes again: it must be idempotent.
    let again = crate::store::mongo::MongoStore::connect_to(&uri, Some(&db))
        .await
        .expect("reconnect");
    suite::run_all(Arc::new(again)).await;
    store.drop_database().await.expect("drop test database");
}
