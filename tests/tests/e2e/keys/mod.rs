//! Scoped keys: the engine itself refuses what a key may not do, revoked and expired keys stop
//! working within seconds, and keys survive stop/start, rotation and a removed container.

mod enforcement;
mod rotation;

use std::time::{Duration, Instant};

use kalpana_e2e::s3_client;
use serde_json::Value;

/// Whether a call worked; an S3 refusal is `false`, anything else fails the test.
async fn allowed<T, E: std::fmt::Debug>(
    what: &str,
    r: Result<T, aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
) -> bool {
    match r {
        Ok(_) => true,
        Err(aws_sdk_s3::error::SdkError::ServiceError(e)) if e.raw().status().as_u16() == 403 => {
            false
        }
        Err(e) => panic!("{what}: {e:?}"),
    }
}

fn key_client(endpoint: &str, k: &Value) -> aws_sdk_s3::Client {
    s3_client(
        endpoint,
        k["accessKey"].as_str().expect("accessKey"),
        k["secretKey"].as_str().expect("secretKey"),
    )
}

// ---------------------------------------------------------------------------------------------
// Helpers shared with `rotation.rs` and `tenancy/`.

/// How an S3 call ended: allowed, or refused with the engine's status.
pub(crate) async fn s3_list(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), u16> {
    let started = Instant::now();
    loop {
        match s3.list_objects_v2().bucket(bucket).send().await {
            Ok(_) => return Ok(()),
            Err(aws_sdk_s3::error::SdkError::ServiceError(e)) => {
                return Err(e.raw().status().as_u16())
            }
            // A container replaced by a rotation drops the client's pooled connections.
            Err(e) if started.elapsed() < Duration::from_secs(10) => {
                println!("list {bucket}: {e:?}; trying again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("list {bucket}: {e:?}"),
        }
    }
}

/// Whether `s3` may list `bucket`: `true`, or `false` for a 403; anything else fails the test.
pub(crate) async fn lists(s3: &aws_sdk_s3::Client, bucket: &str) -> bool {
    match s3_list(s3, bucket).await {
        Ok(()) => true,
        Err(403) => false,
        Err(status) => panic!("list {bucket}: unexpected status {status}"),
    }
}

/// Polls (every 100 ms) until `s3` is refused listing `bucket`; the time since `since`. Fails
/// when it still lists `limit` after `since`.
pub(crate) async fn list_refused_within(
    what: &str,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    since: Instant,
    limit: Duration,
) -> Duration {
    while lists(s3, bucket).await {
        assert!(
            since.elapsed() < limit,
            "{what}: still lists {bucket} {limit:?} after it should have ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    since.elapsed()
}

/// Polls (every 100 ms) until `s3` may list `bucket` (an identity made with `weed shell` reaches
/// the S3 server through the filer's notifications); fails after `limit`.
pub(crate) async fn list_allowed_within(
    what: &str,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    while !lists(s3, bucket).await {
        assert!(
            started.elapsed() < limit,
            "{what}: still refused {limit:?} after it was made"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// Runs `script` in `weed shell` inside bucket `bucket_id`'s container; its standard output.
pub(crate) fn weed_shell(bucket_id: &str, script: &str) -> anyhow::Result<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("docker")
        .args([
            "exec",
            "-i",
            &format!("kalpana-bucket-{bucket_id}"),
            "weed",
            "shell",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "weed shell {script:?} in bucket {bucket_id}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The engine's identities, as `weed shell` shows them: user name → its access keys (sorted).
pub(crate) fn engine_identities(
    bucket_id: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, Vec<String>>> {
    let out = weed_shell(bucket_id, "s3.configure\n")?;
    let json = out
        .find('{')
        .map(|at| &out[at..])
        .ok_or_else(|| anyhow::anyhow!("s3.configure printed no JSON: {out}"))?;
    let config: Value = serde_json::Deserializer::from_str(json)
        .into_iter::<Value>()
        .next()
        .ok_or_else(|| anyhow::anyhow!("s3.configure printed no JSON: {out}"))??;
    let mut identities = std::collections::BTreeMap::new();
    for i in config["identities"].as_array().into_iter().flatten() {
        let mut keys: Vec<String> = i["credentials"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["accessKey"].as_str().map(String::from))
            .collect();
        keys.sort();
        identities.insert(i["name"].as_str().unwrap_or_default().to_string(), keys);
    }
    Ok(identities)
}

/// A secret of 40 characters for an identity a test injects.
pub(crate) fn forty_char_secret() -> String {
    format!("injected{}", uuid::Uuid::new_v4().simple())
}

/// Injects identity `user` (access key `access_key`) that may read, list and write all of
/// `bucket`, as an IAM user made with the root secret on an older version would be; its secret.
pub(crate) fn inject_identity(
    bucket_id: &str,
    bucket: &str,
    user: &str,
    access_key: &str,
) -> anyhow::Result<String> {
    let secret = forty_char_secret();
    weed_shell(
        bucket_id,
        &format!(
            "s3.configure -user={user} -access_key={access_key} -secret_key={secret} -actions=Read:{bucket},List:{bucket},Write:{bucket} -apply\n"
        ),
    )?;
    Ok(secret)
}

/// Gives engine user `user` another access key, as a key that minted itself one would have;
/// its secret.
pub(crate) fn inject_access_key(
    bucket_id: &str,
    user: &str,
    access_key: &str,
) -> anyhow::Result<String> {
    let secret = forty_char_secret();
    weed_shell(
        bucket_id,
        &format!(
            "s3.accesskey.create -user {user} -access_key {access_key} -secret_key {secret}\n"
        ),
    )?;
    Ok(secret)
}

/// How the body of a signed request is accounted for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Payload {
    /// Its SHA-256 is signed (`x-amz-content-sha256: <hash>`).
    Signed,
    /// `x-amz-content-sha256: UNSIGNED-PAYLOAD`.
    Unsigned,
}

/// Sends `method` `url` with `body` (form-encoded when not empty), signed with SigV4 for
/// `service` in us-east-1; the status and body of the answer.
pub(crate) async fn signed_call(
    method: &str,
    url: &str,
    body: &str,
    service: &str,
    payload: Payload,
    access_key: &str,
    secret_key: &str,
) -> anyhow::Result<(u16, String)> {
    use aws_sigv4::http_request::{
        sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
    };
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(access_key, secret_key, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(std::time::SystemTime::now())
        .settings(settings)
        .build()?
        .into();
    let form = "application/x-www-form-urlencoded; charset=utf-8";
    let headers: Vec<(&str, &str)> = if body.is_empty() {
        Vec::new()
    } else {
        vec![("content-type", form)]
    };
    let signable_body = match payload {
        Payload::Signed => SignableBody::Bytes(body.as_bytes()),
        Payload::Unsigned => SignableBody::UnsignedPayload,
    };
    let req = SignableRequest::new(method, url, headers.iter().copied(), signable_body)?;
    let (instructions, _) = sign(req, &params)?.into_parts();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut req = http.request(reqwest::Method::from_bytes(method.as_bytes())?, url);
    for (k, v) in &headers {
        req = req.header(*k, *v);
    }
    for (k, v) in instructions.headers() {
        req = req.header(k, v);
    }
    let resp = req.body(body.to_string()).send().await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

/// An IAM call (`form`, e.g. `Action=CreateAccessKey&Version=2010-05-08`) to the bucket's S3
/// origin, as `aws iam --endpoint-url <endpoint>` would send it.
pub(crate) async fn iam_call(
    endpoint: &str,
    form: &str,
    payload: Payload,
    access_key: &str,
    secret_key: &str,
) -> anyhow::Result<(u16, String)> {
    let url = format!("{}/", endpoint.trim_end_matches('/'));
    signed_call("POST", &url, form, "iam", payload, access_key, secret_key).await
}

/// Sends every IAM call of `forms` with both payload modes and asserts each is refused
/// (non-2xx); first proves the signer right with an S3 GET of `probe` (a path and query of the
/// bucket's origin the identity may read, e.g. `/b?list-type=2`), which must answer 200.
pub(crate) async fn iam_refused(
    who: &str,
    endpoint: &str,
    probe: &str,
    forms: &[String],
    access_key: &str,
    secret_key: &str,
) -> anyhow::Result<()> {
    let list = format!("{}{probe}", endpoint.trim_end_matches('/'));
    for payload in [Payload::Signed, Payload::Unsigned] {
        let (status, body) =
            signed_call("GET", &list, "", "s3", payload, access_key, secret_key).await?;
        assert_eq!(
            status, 200,
            "{who}: the signer's S3 list ({payload:?}) must work for the IAM refusals to mean anything: {body}"
        );
    }
    for form in forms {
        for payload in [Payload::Signed, Payload::Unsigned] {
            let (status, body) = iam_call(endpoint, form, payload, access_key, secret_key).await?;
            println!(
                "{who}: IAM {form} ({payload:?} payload) → {status} {}",
                body.chars()
                    .take(200)
                    .collect::<String>()
                    .replace('\n', " ")
            );
            assert!(
                !(200..300).contains(&status),
                "{who}: IAM call {form} ({payload:?}) answered {status}: {body}"
            );
        }
        // The same action in the query string of an empty POST.
        let url = format!("{}/?{form}", endpoint.trim_end_matches('/'));
        let (status, body) = signed_call(
            "POST",
            &url,
            "",
            "iam",
            Payload::Unsigned,
            access_key,
            secret_key,
        )
        .await?;
        println!("{who}: IAM POST /?{form} → {status}");
        assert!(
            !(200..300).contains(&status),
            "{who}: IAM call POST /?{form} answered {status}: {body}"
        );
    }
    Ok(())
}
