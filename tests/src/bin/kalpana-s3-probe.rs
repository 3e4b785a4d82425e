//! A small S3 client for inside test containers: configured only by the environment an
//! attachment hands out (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, `S3_BUCKET`; path-style addressing, as the connection info says).
//!
//! `kalpana-s3-probe get KEY | put KEY TEXT | list` prints the HTTP status the engine answered
//! (200 for success) or 0 when nothing answered; `kalpana-s3-probe sleep` idles as a container's
//! main process.

use std::time::Duration;

use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::SdkError;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// The HTTP status of a failed call, 0 when no answer came.
fn status<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> u16 {
    e.raw_response()
        .map(|r| r.status().as_u16())
        .unwrap_or_default()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("sleep") {
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    let creds = aws_credential_types::Credentials::new(
        env("AWS_ACCESS_KEY_ID"),
        env("AWS_SECRET_ACCESS_KEY"),
        None,
        None,
        "env",
    );
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(env("AWS_ENDPOINT_URL"))
        .region(aws_sdk_s3::config::Region::new(env("AWS_REGION")))
        .credentials_provider(creds)
        .force_path_style(true)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(5))
                .build(),
        )
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(conf);
    let bucket = env("S3_BUCKET");
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let code = match arg(0).as_str() {
        "get" => match s3.get_object().bucket(&bucket).key(arg(1)).send().await {
            Ok(o) => match o.body.collect().await {
                Ok(_) => 200,
                Err(_) => 0,
            },
            Err(e) => status(&e),
        },
        "put" => match s3
            .put_object()
            .bucket(&bucket)
            .key(arg(1))
            .body(arg(2).into_bytes().into())
            .send()
            .await
        {
            Ok(_) => 200,
            Err(e) => status(&e),
        },
        "list" => match s3.list_objects_v2().bucket(&bucket).send().await {
            Ok(_) => 200,
            Err(e) => status(&e),
        },
        other => {
            eprintln!("unknown command {other:?}: get KEY | put KEY TEXT | list | sleep");
            std::process::exit(2);
        }
    };
    println!("{code}");
}
