//! `list` and `stores`: bucket listing latency with many records, on each store.

use super::*;

/// `list` on the embedded store and on a MongoDB wire server (SecantusDB from `.tools`), one
/// after the other in the same run.
pub(super) async fn stores(records: usize, requests: usize) -> Result<()> {
    list(records, requests, None).await?;
    let server = kalpana_e2e::mongo::MongoServer::start().await?;
    list(records, requests, Some(server.uri("bench"))).await
}

pub(super) async fn list(records: usize, requests: usize, store_uri: Option<String>) -> Result<()> {
    use kalpana_domain::model::{now, BucketStatus, User};
    let store_name = if store_uri.is_some() {
        "mongodb"
    } else {
        "embedded"
    };
    let instance = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let data_dir = std::env::temp_dir().join(format!("kalpana-{instance}"));
    std::fs::create_dir_all(&data_dir)?;
    let token = format!("kb_bench{}", uuid::Uuid::new_v4().simple());
    let mut ids = Vec::new();
    {
        let store = kalpana_domain::store::open(store_uri.as_deref(), &data_dir).await?;
        store
            .put_user(&User {
                id: "bench-user".into(),
                name: "bench".into(),
                admin: false,
                token_hash: kalpana_domain::secrets::hash_token(&token),
                created_at: now(),
            })
            .await?;
        let started = Instant::now();
        for i in 0..records {
            let mut b = kalpana_domain::model::BucketRecord {
                image: "img".into(),
                host: "127.0.0.1".into(),
                access_key: "AK".into(),
                secret_key_enc: "sealed".into(),
                region: "us-east-1".into(),
                ..kalpana_domain::model::BucketRecord::new(
                    kalpana_domain::model::new_id(),
                    format!("b-{i:06}"),
                    "bench-user".into(),
                    kalpana_manager_core::EngineKind::Seaweedfs,
                )
            };
            b.status = BucketStatus::Stopped;
            b.provisioned = true;
            ids.push(b.id.clone());
            store.insert_bucket(&b).await?;
        }
        println!(
            "list.setup store={store_name} records={records} inserted_in_s={:.1}",
            started.elapsed().as_secs_f64()
        );
    }
    let opts = DaemonOptions {
        env: store_uri
            .iter()
            .map(|u| ("KALPANA_STORE".to_string(), u.clone()))
            .collect(),
        ..Default::default()
    };
    let d = Daemon::start_in(opts, instance, data_dir).await?;
    let api = d.api(&token);
    let (http, base, _) = api.raw();
    let time_get = |path: String| {
        let req = http.get(format!("{base}{path}")).bearer_auth(&token);
        async move {
            let started = Instant::now();
            let resp = req.send().await?;
            let ok = resp.status().is_success();
            let body = resp.bytes().await?;
            if !ok {
                bail!("GET failed: {}", String::from_utf8_lossy(&body));
            }
            anyhow::Ok((started.elapsed().as_secs_f64() * 1000.0, body))
        }
    };
    for _ in 0..50 {
        time_get("/healthz".into()).await?;
    }
    let mut health = Vec::new();
    let mut one = Vec::new();
    let mut page = Vec::new();
    let mut cursors: Vec<Option<String>> = vec![None];
    for i in 0..requests {
        health.push(time_get("/healthz".into()).await?.0);
        one.push(
            time_get(format!("/api/buckets/{}", ids[(i * 7919) % ids.len()]))
                .await?
                .0,
        );
        let cursor = cursors[i % cursors.len()].clone();
        let path = match &cursor {
            Some(c) => format!("/api/buckets?cursor={c}"),
            None => "/api/buckets".into(),
        };
        let (ms, body) = time_get(path).await?;
        page.push(ms);
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        if v["buckets"].as_array().map(Vec::len) != Some(100) {
            bail!("a page should hold 100 buckets");
        }
        if let Some(next) = v["nextCursor"].as_str() {
            if cursors.len() < 100 {
                cursors.push(Some(next.to_string()));
            }
        }
    }
    let line = |what: &str, v: &mut Vec<f64>| {
        println!(
            "list.latency store={store_name} records={records} n={requests} {what} p50_ms={:.2} p99_ms={:.2}",
            percentile(v, 50.0),
            percentile(v, 99.0)
        );
    };
    line("baseline_get_healthz", &mut health);
    line("get_one_bucket", &mut one);
    line("get_bucket_page_of_100", &mut page);
    Ok(())
}
