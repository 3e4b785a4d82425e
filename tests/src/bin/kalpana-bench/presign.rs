//! `presign [N]`: presigned URLs per second beside the SDK.

use super::*;

/// Runs [`presign`] on a thread of its own, outside the main runtime.
pub(super) fn presign_on_own_thread(n: usize) -> Result<()> {
    std::thread::spawn(move || presign(n))
        .join()
        .map_err(|_| anyhow::anyhow!("presign thread panicked"))?
}

pub(super) fn presign(n: usize) -> Result<()> {
    use aws_sdk_s3::presigning::PresigningConfig;
    use kalpana_s3_ops::{Endpoint, Presigner};
    // One thread with a current-thread runtime: the figures are per core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let endpoint = Endpoint {
        url: "http://photos.buckets.example.test:8080".into(),
        region: "us-east-1".into(),
        access_key: "AKIABENCHBENCHBENCH0".into(),
        secret_key: "benchbenchbenchbenchbenchbenchbenchbench".into(),
    };
    let expires = Duration::from_secs(3600);
    rt.block_on(async {
        // Baseline: the SDK's own presigning with one client built once.
        let sdk = s3_client(&endpoint.url, &endpoint.access_key, &endpoint.secret_key);
        let sdk_presign = |key: String| {
            let sdk = sdk.clone();
            async move {
                sdk.get_object()
                    .bucket("photos")
                    .key(key)
                    .presigned(PresigningConfig::expires_in(expires)?)
                    .await
                    .map(|r| r.uri().to_string())
                    .map_err(anyhow::Error::from)
            }
        };
        for i in 0..200 {
            sdk_presign(format!("warm/{i}")).await?;
        }
        let started = Instant::now();
        for i in 0..n {
            sdk_presign(format!("key/{i}")).await?;
        }
        let sdk_rate = n as f64 / started.elapsed().as_secs_f64();
        // The daemon's path: a presigner for the bucket's public origin per request.
        let started = Instant::now();
        for i in 0..n {
            Presigner::new(&endpoint, "photos").presign_get(&format!("key/{i}"), expires)?;
        }
        let daemon_rate = n as f64 / started.elapsed().as_secs_f64();
        println!("presign n={n} sdk_reused_client_urls_per_s_per_core={sdk_rate:.0}");
        println!(
            "presign n={n} daemon_path_urls_per_s_per_core={daemon_rate:.0} ratio_daemon/sdk={:.3}",
            daemon_rate / sdk_rate
        );
        anyhow::Ok(())
    })
}
