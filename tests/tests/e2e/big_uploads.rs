//! Real clients at default settings: concurrent large multipart uploads never OOM a bucket's
//! container at the default memory limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kalpana_e2e::{docker_inspect, pattern, s3_client, Daemon};
use serde_json::json;

const MIB: usize = 1024 * 1024;
/// boto3's and the AWS CLI's default part size.
const PART: usize = 8 * MIB;
const OBJECT: usize = 100 * MIB;
const UPLOADS: usize = 8;
/// Parts of one upload in flight at once (boto3 runs up to 10 threads per transfer).
const PARTS_IN_FLIGHT: usize = 4;

/// The bytes of part `n` of upload `u` (deterministic, so they can be checked without keeping
/// 800 MiB around).
fn part_bytes(u: usize, n: usize) -> Vec<u8> {
    let len = PART.min(OBJECT - n * PART);
    pattern(len, (u * 16 + n) as u8)
}

#[tokio::test]
async fn eight_concurrent_100_mib_multipart_uploads_at_the_default_limit() -> anyhow::Result<()> {
    let d = Daemon::start().await?;
    let (alice, _) = d.new_user("alice").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "bulk" })).await?;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["status"], "RUNNING", "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let container = format!("kalpana-bucket-{id}");
    let s3 = s3_client(
        b["endpoint"].as_str().expect("endpoint"),
        b["accessKey"].as_str().expect("access"),
        b["secretKey"].as_str().expect("secret"),
    );

    // The container's memory, sampled through the stats route while the uploads run.
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (alice, id, peak) = (alice.clone(), id.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                if let Ok((200, s)) = alice
                    .send("GET", &format!("/api/buckets/{id}/stats"), None)
                    .await
                {
                    if let Some(m) = s["container"]["memoryBytes"].as_u64() {
                        peak.fetch_max(m, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let parts = OBJECT.div_ceil(PART);
    let started = std::time::Instant::now();
    let results = futures::future::join_all((0..UPLOADS).map(|u| {
        let s3 = s3.clone();
        async move {
            let key = format!("big-{u}");
            let mp = s3
                .create_multipart_upload()
                .bucket("bulk")
                .key(&key)
                .send()
                .await?;
            let upload_id = mp.upload_id().unwrap_or_default().to_string();
            let mut done: Vec<(i32, String)> = futures::stream::iter(0..parts)
                .map(|n| {
                    let (s3, key, upload_id) = (s3.clone(), key.clone(), upload_id.clone());
                    async move {
                        let out = s3
                            .upload_part()
                            .bucket("bulk")
                            .key(&key)
                            .upload_id(&upload_id)
                            .part_number(n as i32 + 1)
                            .body(part_bytes(u, n).into())
                            .send()
                            .await?;
                        anyhow::Ok((n as i32 + 1, out.e_tag().unwrap_or_default().to_string()))
                    }
                })
                .buffer_unordered(PARTS_IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<anyhow::Result<_>>()?;
            done.sort();
            let completed = aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(
                    done.into_iter()
                        .map(|(n, etag)| {
                            aws_sdk_s3::types::CompletedPart::builder()
                                .part_number(n)
                                .e_tag(etag)
                                .build()
                        })
                        .collect(),
                ))
                .build();
            s3.complete_multipart_upload()
                .bucket("bulk")
                .key(&key)
                .upload_id(&upload_id)
                .multipart_upload(completed)
                .send()
                .await?;
            anyhow::Ok(())
        }
    }))
    .await;
    let upload_secs = started.elapsed().as_secs_f64();
    sampler.abort();
    for (u, r) in results.into_iter().enumerate() {
        r.map_err(|e| anyhow::anyhow!("upload {u} failed: {e:?}"))?;
    }
    assert_eq!(docker_inspect(&container, "{{.RestartCount}}")?, "0");
    assert_eq!(docker_inspect(&container, "{{.State.OOMKilled}}")?, "false");

    // Every object reads back identical, streamed and compared part by part.
    for u in 0..UPLOADS {
        let got = s3
            .get_object()
            .bucket("bulk")
            .key(format!("big-{u}"))
            .send()
            .await?;
        assert_eq!(got.content_length(), Some(OBJECT as i64));
        let mut body = got.body.into_async_read();
        for n in 0..parts {
            let want = part_bytes(u, n);
            let mut buf = vec![0u8; want.len()];
            tokio::io::AsyncReadExt::read_exact(&mut body, &mut buf).await?;
            assert!(buf == want, "upload {u} part {n} differs");
        }
    }
    assert_eq!(docker_inspect(&container, "{{.RestartCount}}")?, "0");
    println!(
        "{UPLOADS} concurrent {} MiB uploads ({} MiB parts, {PARTS_IN_FLIGHT} in flight each) in {upload_secs:.1} s; container peak memory seen {} MiB of 512; restarts 0",
        OBJECT / MIB,
        PART / MIB,
        peak.load(Ordering::Relaxed) / MIB as u64
    );
    Ok(())
}
