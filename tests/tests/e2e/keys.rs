//! Scoped keys: the engine itself refuses what a key may not do, revoked and expired keys stop
//! working within seconds, and keys survive stop/start, rotation and a removed container.

use std::time::{Duration, Instant};

use kalpana_e2e::{s3_client, Daemon, DaemonOptions};
use serde_json::{json, Value};

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

/// Whether `s3` may GET `key`. A connection the engine reset (its container was just replaced
/// or restarted, the client's pooled connection with it) is tried again for up to 10 s.
async fn can_get(s3: &aws_sdk_s3::Client, key: &str) -> bool {
    let started = Instant::now();
    loop {
        match s3.get_object().bucket("scoped").key(key).send().await {
            Err(aws_sdk_s3::error::SdkError::DispatchFailure(e))
                if started.elapsed() < Duration::from_secs(10) =>
            {
                println!("{key}: connection failed ({e:?}); trying again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            r => return allowed(key, r).await,
        }
    }
}

/// Waits until `key` is refused to `s3`; the time it took.
async fn refused_within(s3: &aws_sdk_s3::Client, key: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    while can_get(s3, key).await {
        assert!(
            started.elapsed() < limit,
            "still allowed {limit:?} after revocation"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

fn key_client(endpoint: &str, k: &Value) -> aws_sdk_s3::Client {
    s3_client(
        endpoint,
        k["accessKey"].as_str().expect("accessKey"),
        k["secretKey"].as_str().expect("secretKey"),
    )
}

#[tokio::test]
async fn keys_are_enforced_by_the_engine_revoked_in_seconds_and_survive_replacement(
) -> anyhow::Result<()> {
    let mut d = Daemon::start_with(DaemonOptions {
        env: vec![("KALPANA_STATS_SYNC_SECS".into(), "1".into())],
        ..Default::default()
    })
    .await?;
    let (alice, _) = d.new_user("alice").await?;
    let (mallory, _) = d.new_user("mallory").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "scoped" })).await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let endpoint = b["endpoint"].as_str().expect("endpoint").to_string();
    let root = s3_client(
        &endpoint,
        b["accessKey"].as_str().expect("access"),
        b["secretKey"].as_str().expect("secret"),
    );
    for key in ["pub/a.txt", "priv/b.txt"] {
        root.put_object()
            .bucket("scoped")
            .key(key)
            .body(key.as_bytes().to_vec().into())
            .send()
            .await?;
    }
    let make = |body: Value| {
        let alice = alice.clone();
        let id = id.clone();
        async move {
            alice
                .send("POST", &format!("/api/buckets/{id}/keys"), Some(body))
                .await
        }
    };

    // How to connect, without the secret.
    let (status, c) = alice
        .send("GET", &format!("/api/buckets/{id}/connection"), None)
        .await?;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["endpoint"], endpoint.as_str());
    assert_eq!(c["bucket"], "scoped");
    assert_eq!(c["env"]["AWS_ACCESS_KEY_ID"], b["accessKey"]);
    assert_eq!(c["env"]["S3_BUCKET"], "scoped");
    assert!(c["internalEndpoint"]
        .as_str()
        .is_some_and(|e| e.ends_with(":8333")));
    println!("connection: {}", serde_json::to_string_pretty(&c)?);
    assert!(c["snippets"]["s3cfg"]
        .as_str()
        .is_some_and(|s| s.contains("host_base = 127.0.0.1")));
    for client in ["awsCli", "rclone", "boto3", "s3cmd", "rustSdk"] {
        assert!(
            c["snippets"][client]
                .as_str()
                .is_some_and(|s| s.contains("scoped")),
            "{client}: {c}"
        );
    }
    assert!(
        !c.to_string()
            .contains(b["secretKey"].as_str().expect("secret")),
        "the connection answer carries the secret"
    );
    let (status, _) = mallory
        .send("GET", &format!("/api/buckets/{id}/connection"), None)
        .await?;
    assert_eq!(status, 404);

    // A read key on a prefix.
    let (status, reader) =
        make(json!({ "name": "reader", "access": "read", "prefix": "pub/" })).await?;
    assert_eq!(status, 201, "{reader}");
    let r = key_client(&endpoint, &reader);
    assert!(can_get(&r, "pub/a.txt").await);
    assert!(!can_get(&r, "priv/b.txt").await, "read outside the prefix");
    assert!(
        !allowed(
            "put",
            r.put_object()
                .bucket("scoped")
                .key("pub/c.txt")
                .body(b"c".to_vec().into())
                .send()
                .await
        )
        .await,
        "a read key wrote"
    );
    assert!(
        !allowed(
            "delete",
            r.delete_object()
                .bucket("scoped")
                .key("pub/a.txt")
                .send()
                .await
        )
        .await,
        "a read key deleted"
    );
    assert!(
        allowed(
            "list pub/",
            r.list_objects_v2()
                .bucket("scoped")
                .prefix("pub/")
                .send()
                .await
        )
        .await
    );
    assert!(
        !allowed(
            "list all",
            r.list_objects_v2().bucket("scoped").send().await
        )
        .await,
        "a prefix key listed the whole bucket"
    );

    // A write key: writes, does not read.
    let (status, writer) = make(json!({ "name": "writer", "access": "write" })).await?;
    assert_eq!(status, 201, "{writer}");
    let w = key_client(&endpoint, &writer);
    assert!(
        allowed(
            "put",
            w.put_object()
                .bucket("scoped")
                .key("up/x.txt")
                .body(b"x".to_vec().into())
                .send()
                .await
        )
        .await
    );
    assert!(!can_get(&w, "up/x.txt").await, "a write key read");

    // A read-write key on a prefix writes only there.
    let (status, scoped) =
        make(json!({ "name": "scoped-rw", "access": "read-write", "prefix": "pub/" })).await?;
    assert_eq!(status, 201, "{scoped}");
    let p = key_client(&endpoint, &scoped);
    let put = |key: &'static str| {
        let p = p.clone();
        async move {
            allowed(
                key,
                p.put_object()
                    .bucket("scoped")
                    .key(key)
                    .body(b"p".to_vec().into())
                    .send()
                    .await,
            )
            .await
        }
    };
    assert!(put("pub/mine.txt").await);
    assert!(
        !put("priv/theirs.txt").await,
        "a prefix key wrote outside it"
    );
    let (status, _) = alice
        .send(
            "DELETE",
            &format!(
                "/api/buckets/{id}/keys/{}",
                scoped["id"].as_str().expect("id")
            ),
            None,
        )
        .await?;
    assert_eq!(status, 204);

    // Time from creation to the first accepted request, and from revoke to the first refusal.
    let (mut ready, mut refused) = (Vec::new(), Vec::new());
    for i in 0..10 {
        let started = Instant::now();
        let (status, k) = make(json!({ "name": format!("timed-{i}"), "access": "read" })).await?;
        assert_eq!(status, 201, "{k}");
        let c = key_client(&endpoint, &k);
        while !can_get(&c, "pub/a.txt").await {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "a new key never worked"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ready.push(started.elapsed());
        let started = Instant::now();
        let (status, _) = alice
            .send(
                "DELETE",
                &format!("/api/buckets/{id}/keys/{}", k["id"].as_str().expect("id")),
                None,
            )
            .await?;
        assert_eq!(status, 204);
        refused_within(&c, "pub/a.txt", Duration::from_secs(5)).await;
        refused.push(started.elapsed());
    }
    ready.sort();
    refused.sort();
    println!(
        "key timing over 10: create→first accepted request median {:?} (max {:?}); revoke→first refusal median {:?} (max {:?})",
        ready[5], ready[9], refused[5], refused[9]
    );

    // Bad requests, another tenant, no secrets in the list.
    for bad in [
        json!({ "name": "", "access": "read" }),
        json!({ "name": "x", "access": "admin" }),
        json!({ "name": "x", "access": "read", "prefix": "/abs" }),
        json!({ "name": "x", "access": "read", "expiresIn": 0 }),
    ] {
        let (status, e) = make(bad.clone()).await?;
        assert_eq!(status / 100, 4, "{bad}: {e}");
        assert_ne!(status, 404, "{bad}: {e}");
    }
    let (status, _) = mallory
        .send(
            "POST",
            &format!("/api/buckets/{id}/keys"),
            Some(json!({ "name": "x", "access": "read" })),
        )
        .await?;
    assert_eq!(status, 404);
    let (status, _) = mallory
        .send("GET", &format!("/api/buckets/{id}/keys"), None)
        .await?;
    assert_eq!(status, 404);
    let (status, list) = alice
        .send("GET", &format!("/api/buckets/{id}/keys"), None)
        .await?;
    assert_eq!(status, 200);
    assert_eq!(list["keys"].as_array().map(Vec::len), Some(2), "{list}");
    assert!(!list.to_string().contains("secretKey"), "{list}");

    // Survives stop/start, root rotation and a container removed by hand.
    for (what, path) in [("stop", "stop"), ("start", "start")] {
        let (status, v) = alice
            .send("POST", &format!("/api/buckets/{id}/{path}"), None)
            .await?;
        assert_eq!(status, 200, "{what}: {v}");
    }
    assert!(can_get(&r, "pub/a.txt").await, "after stop/start");
    let (status, rotated) = alice
        .send(
            "POST",
            &format!("/api/buckets/{id}/credentials/rotate"),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{rotated}");
    assert!(can_get(&r, "pub/a.txt").await, "after root rotation");
    let container = format!("kalpana-bucket-{id}");
    std::process::Command::new("docker")
        .args(["rm", "-f", &container])
        .output()?;
    let started = Instant::now();
    loop {
        if kalpana_e2e::docker_inspect(&container, "{{.State.Running}}").is_ok_and(|s| s == "true")
            && can_get(&r, "pub/a.txt").await
        {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "key never worked again"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "key works again {:?} after the container was removed",
        started.elapsed()
    );

    // Revoked: refused within 5 s.
    let (status, _) = alice
        .send(
            "DELETE",
            &format!(
                "/api/buckets/{id}/keys/{}",
                reader["id"].as_str().expect("id")
            ),
            None,
        )
        .await?;
    assert_eq!(status, 204);
    let took = refused_within(&r, "pub/a.txt", Duration::from_secs(5)).await;
    println!("revoked key refused after {took:?}");

    // Expired: refused within 5 s of its expiry.
    let (status, short) =
        make(json!({ "name": "short", "access": "read", "expiresIn": 2 })).await?;
    assert_eq!(status, 201, "{short}");
    let s = key_client(&endpoint, &short);
    assert!(can_get(&s, "pub/a.txt").await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let took = refused_within(&s, "pub/a.txt", Duration::from_secs(5)).await;
    println!("expired key refused {took:?} after its expiry");
    let (_, list) = alice
        .send("GET", &format!("/api/buckets/{id}/keys"), None)
        .await?;
    assert_eq!(list["keys"].as_array().map(Vec::len), Some(1), "{list}");

    // A daemon restart keeps the keys (the writer still writes).
    d.kill();
    d.spawn().await?;
    assert!(
        allowed(
            "put after restart",
            w.put_object()
                .bucket("scoped")
                .key("up/y.txt")
                .body(b"y".to_vec().into())
                .send()
                .await
        )
        .await
    );

    let log = d.log();
    for k in [&reader, &writer, &short] {
        let secret = k["secretKey"].as_str().expect("secret");
        assert!(!log.contains(secret), "a key's secret is in the daemon log");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The engine's IAM API is off on the S3 port, and keys are rotated on request.
// Helpers shared with `tenancy.rs`.

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

/// The IAM calls a key could make on itself, were IAM served on the S3 port.
fn self_service_forms(own_access_key: &str, own_user: &str) -> Vec<String> {
    vec![
        "Action=CreateAccessKey&Version=2010-05-08".to_string(),
        format!("Action=CreateAccessKey&UserName={own_user}&Version=2010-05-08"),
        format!(
            "Action=UpdateAccessKey&AccessKeyId={own_access_key}&Status=Active&Version=2010-05-08"
        ),
        "Action=ListAccessKeys&Version=2010-05-08".to_string(),
        "Action=GetUser&Version=2010-05-08".to_string(),
        "Action=CreateUser&UserName=x&Version=2010-05-08".to_string(),
    ]
}

#[tokio::test]
async fn a_scoped_key_cannot_manage_itself_over_iam_and_is_rotated_on_request() -> anyhow::Result<()>
{
    let d = Daemon::start().await?;
    let (alice, alice_id) = d.new_user("alice").await?;
    let (mallory, _) = d.new_user("mallory").await?;
    let (status, b) = alice.create_bucket(json!({ "name": "minted" })).await?;
    assert_eq!(status, 201, "{b}");
    let id = b["id"].as_str().expect("id").to_string();
    let endpoint = b["endpoint"].as_str().expect("endpoint").to_string();
    let root = s3_client(
        &endpoint,
        b["accessKey"].as_str().expect("access"),
        b["secretKey"].as_str().expect("secret"),
    );
    for key in ["in/a.txt", "out/b.txt"] {
        root.put_object()
            .bucket("minted")
            .key(key)
            .body(key.as_bytes().to_vec().into())
            .send()
            .await?;
    }
    let (status, k) = alice
        .send(
            "POST",
            &format!("/api/buckets/{id}/keys"),
            Some(json!({ "name": "agent", "access": "read-write", "prefix": "in/" })),
        )
        .await?;
    assert_eq!(status, 201, "{k}");
    assert_eq!(k["createdBy"], alice_id.as_str(), "{k}");
    assert_eq!(k["rotated"], Value::Null, "{k}");
    let key_id = k["id"].as_str().expect("id").to_string();
    let user = format!("kb-{key_id}");
    let ak = k["accessKey"].as_str().expect("accessKey").to_string();
    let sk = k["secretKey"].as_str().expect("secretKey").to_string();
    let kc = key_client(&endpoint, &k);
    let in_scope = |s3: aws_sdk_s3::Client| async move {
        let list_in = s3
            .list_objects_v2()
            .bucket("minted")
            .prefix("in/")
            .send()
            .await;
        let get_in = s3
            .get_object()
            .bucket("minted")
            .key("in/a.txt")
            .send()
            .await;
        let get_out = s3
            .get_object()
            .bucket("minted")
            .key("out/b.txt")
            .send()
            .await;
        let put_in = s3
            .put_object()
            .bucket("minted")
            .key("in/new.txt")
            .body(b"n".to_vec().into())
            .send()
            .await;
        let put_out = s3
            .put_object()
            .bucket("minted")
            .key("out/new.txt")
            .body(b"n".to_vec().into())
            .send()
            .await;
        (
            allowed("list in/", list_in).await,
            allowed("get in/", get_in).await,
            allowed("get out/", get_out).await,
            allowed("put in/", put_in).await,
            allowed("put out/", put_out).await,
        )
    };
    assert_eq!(
        in_scope(kc.clone()).await,
        (true, true, false, true, false),
        "(list in/, get in/, get out/, put in/, put out/) of a read-write key on in/"
    );

    // The key's own IAM calls on the S3 port, signed body and unsigned payload alike: refused.
    let before = engine_identities(&id)?;
    println!("engine identities before the IAM calls: {before:?}");
    assert_eq!(
        before.get(&user),
        Some(&vec![ak.clone()]),
        "the key's engine user holds its one access key: {before:?}"
    );
    iam_refused(
        "scoped key",
        &endpoint,
        "/minted?list-type=2&prefix=in%2F",
        &self_service_forms(&ak, &user),
        &ak,
        &sk,
    )
    .await?;
    // And the root key's: the IAM API is off for everyone.
    iam_refused(
        "root key",
        &endpoint,
        "/minted?list-type=2",
        &self_service_forms(b["accessKey"].as_str().expect("access"), "x"),
        b["accessKey"].as_str().expect("access"),
        b["secretKey"].as_str().expect("secret"),
    )
    .await?;
    let after = engine_identities(&id)?;
    assert_eq!(
        after.get(&user),
        Some(&vec![ak.clone()]),
        "after the IAM calls the key's engine user still holds exactly its one access key: {after:?}"
    );
    assert_eq!(
        before, after,
        "the IAM calls changed the engine's identities"
    );

    // An extra key minted on the key's user (as through IAM on an older version). Only a member
    // change sweeps it: nothing is asserted about it here.
    let minted_ak = "AKMINTED000000000001";
    let minted_sk = inject_access_key(&id, &user, minted_ak)?;
    let minted = s3_client(&endpoint, minted_ak, &minted_sk);
    let started = Instant::now();
    while !can_read(&minted, "minted", "in/a.txt").await {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a key minted on the key's user never worked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "a minted extra key on {user} read {:?} after weed shell made it (not swept by this test)",
        started.elapsed()
    );

    // Rotation on request: a new access key and secret, the old refused at once, same scope.
    let started = Instant::now();
    let (status, r) = alice
        .send(
            "POST",
            &format!("/api/buckets/{id}/keys/{key_id}/rotate"),
            None,
        )
        .await?;
    let answered = Instant::now();
    assert_eq!(status, 200, "{r}");
    println!("rotate answered in {:?}", answered - started);
    assert_eq!(r["id"], key_id.as_str());
    assert_eq!(r["name"], "agent");
    assert_eq!(r["access"], k["access"]);
    assert_eq!(r["prefix"], "in/");
    assert_eq!(r["createdBy"], alice_id.as_str());
    assert_eq!(r["rotated"]["reason"], "rotated on request", "{r}");
    assert!(r["rotated"]["at"].is_string(), "{r}");
    let new_ak = r["accessKey"].as_str().expect("accessKey").to_string();
    let new_sk = r["secretKey"].as_str().expect("secretKey").to_string();
    assert_ne!(new_ak, ak);
    assert_ne!(new_sk, sk);
    let old_refused = Instant::now();
    let mut old_took = None;
    while old_took.is_none() {
        let r = kc
            .get_object()
            .bucket("minted")
            .key("in/a.txt")
            .send()
            .await;
        if !allowed("old key get in/", r).await {
            old_took = Some(answered.elapsed());
        } else {
            assert!(
                old_refused.elapsed() < Duration::from_secs(5),
                "the old access key still reads 5 s after the rotation"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!(
        "rotated key: old access key refused {:?} after the answer",
        old_took.expect("took")
    );
    let nc = s3_client(&endpoint, &new_ak, &new_sk);
    let started = Instant::now();
    while !can_read(&nc, "minted", "in/a.txt").await {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the new access key never worked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "rotated key: new access key worked {:?} after the answer",
        answered.elapsed()
    );
    assert_eq!(
        in_scope(nc.clone()).await,
        (true, true, false, true, false),
        "the new access key keeps the scope"
    );
    let (status, list) = alice
        .send("GET", &format!("/api/buckets/{id}/keys"), None)
        .await?;
    assert_eq!(status, 200, "{list}");
    let listed = &list["keys"][0];
    assert_eq!(list["keys"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(listed["accessKey"], new_ak.as_str(), "{list}");
    assert_eq!(listed["rotated"]["reason"], "rotated on request", "{list}");
    assert!(!list.to_string().contains("secretKey"), "{list}");
    assert!(!list.to_string().contains(&new_sk), "{list}");
    let engine = engine_identities(&id)?;
    println!("engine identities after the rotation: {engine:?}");
    let held = engine.get(&user).cloned().unwrap_or_default();
    assert!(held.contains(&new_ak), "{engine:?}");
    assert!(
        !held.contains(&ak),
        "the old access key stays in the engine: {engine:?}"
    );

    // Rotating needs the manage right: another tenant sees nothing, an unknown key is 404.
    let (status, e) = mallory
        .send(
            "POST",
            &format!("/api/buckets/{id}/keys/{key_id}/rotate"),
            None,
        )
        .await?;
    assert_eq!(status, 404, "{e}");
    let (status, e) = alice
        .send(
            "POST",
            &format!("/api/buckets/{id}/keys/nosuchkey/rotate"),
            None,
        )
        .await?;
    assert_eq!(status, 404, "{e}");
    // A team viewer and a team member may not rotate; the team's owner may.
    let (carol, carol_id) = d.new_user("carol").await?;
    let (bob, bob_id) = d.new_user("bob").await?;
    let (status, team) = alice
        .send("POST", "/api/teams", Some(json!({ "name": "crew" })))
        .await?;
    assert_eq!(status, 201, "{team}");
    let tid = team["id"].as_str().expect("id").to_string();
    for (who, role) in [(&carol_id, "viewer"), (&bob_id, "member")] {
        let (status, body) = alice
            .send(
                "POST",
                &format!("/api/teams/{tid}/members"),
                Some(json!({ "userId": who, "role": role })),
            )
            .await?;
        assert_eq!(status, 200, "{body}");
    }
    let (status, tb) = alice
        .create_bucket(json!({ "name": "crewed", "teamId": tid }))
        .await?;
    assert_eq!(status, 201, "{tb}");
    let tbid = tb["id"].as_str().expect("id").to_string();
    let (status, tk) = alice
        .send(
            "POST",
            &format!("/api/buckets/{tbid}/keys"),
            Some(json!({ "name": "team-agent", "access": "read" })),
        )
        .await?;
    assert_eq!(status, 201, "{tk}");
    let rotate = format!(
        "/api/buckets/{tbid}/keys/{}/rotate",
        tk["id"].as_str().expect("id")
    );
    for (who, api) in [("viewer", &carol), ("member", &bob)] {
        let (status, e) = api.send("POST", &rotate, None).await?;
        assert_eq!(status, 403, "a team {who} rotated a key: {e}");
    }
    let (status, e) = alice.send("POST", &rotate, None).await?;
    assert_eq!(status, 200, "{e}");
    Ok(())
}

/// Whether `s3` may GET `key` of `bucket` (connection failures tried again for 10 s).
async fn can_read(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> bool {
    let started = Instant::now();
    loop {
        match s3.get_object().bucket(bucket).key(key).send().await {
            Err(aws_sdk_s3::error::SdkError::DispatchFailure(e))
                if started.elapsed() < Duration::from_secs(10) =>
            {
                println!("{key}: connection failed ({e:?}); trying again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            r => return allowed(key, r).await,
        }
    }
}
