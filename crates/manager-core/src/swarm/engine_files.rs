//! What an engine's task needs that is secret, as files (Swarm secrets) instead of the
//! environment the `docker` runtime uses: `docker service inspect` shows a service's env and
//! labels to anyone with the manager's API, a secret's content to no one.
//!
//! SeaweedFS (4.48, verified): root credentials from a static identities file
//! (`-s3.config`; identities added later with `weed shell` live in the filer, are merged in,
//! and survive restarts); JWT keys, guard and gRPC TLS from `/etc/seaweedfs/security.toml`
//! (one of the places it looks, so `weed shell` inside the task finds it too), the internal
//! certificates beside it. No `WEED_*` variable may be set: the environment beats the file.
//! Caveat: `mini` saves its flags on the volume and applies them again at every start, so every
//! task of the bucket must mount the identities file (every task made here does).
//! MinIO reads `MINIO_ROOT_USER_FILE`/`MINIO_ROOT_PASSWORD_FILE` (not testable here: no image).

use sha2::Digest;

use crate::engine::{internal_key, EngineKind};
use crate::error::{Error, Result};
use crate::internal_tls::InternalTls;
use crate::spec::BucketSpec;

/// One file a bucket's task receives as a Swarm secret.
pub struct SecretFile {
    /// The secret's name: the bucket, the file and a hash of the content (secrets are
    /// immutable, so new content is a new secret).
    pub name: String,
    /// The file name under `/run/secrets`.
    pub file: String,
    /// Its bytes.
    pub data: Vec<u8>,
    /// Its mode in the container.
    pub mode: u32,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile")
            .field("name", &self.name)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl SecretFile {
    /// File `file` of bucket `id` with `data`.
    pub fn new(id: &str, file: &str, data: Vec<u8>, mode: u32) -> Self {
        let hash = hex::encode(sha2::Sha256::digest(&data));
        SecretFile {
            // Swarm allows 64 characters: 3 + 32 + 1 + at most 13 + 1 + 8.
            name: format!("kb-{id}-{}-{}", file.replace('.', "-"), &hash[..8]),
            file: file.to_string(),
            data,
            mode,
        }
    }

    /// Where the task sees it.
    pub fn path(&self) -> String {
        format!("/run/secrets/{}", self.file)
    }
}

/// Where SeaweedFS finds its `security.toml` (an absolute secret target).
const SECURITY_TOML: &str = "/etc/seaweedfs/security.toml";

/// The task's environment (nothing secret) and its secret files.
pub fn task_files(spec: &BucketSpec) -> Result<(Vec<String>, Vec<SecretFile>)> {
    let e = &spec.engine;
    let mut env = Vec::new();
    if let (Some(var), true) = (e.memory_limit_env, spec.limits.memory_bytes > 0) {
        let mib = spec.limits.memory_bytes / (1024 * 1024) * 65 / 100;
        env.push(format!("{var}={mib}MiB"));
    }
    let id = &spec.id;
    let mut files = Vec::new();
    match e.kind {
        EngineKind::Seaweedfs => {
            files.push(SecretFile::new(
                id,
                "s3.json",
                identities(&spec.access_key, &spec.secret_key)?,
                0o400,
            ));
            if e.internal_security {
                let tls = InternalTls::generate()?;
                for (name, pem, mode) in tls.files() {
                    files.push(SecretFile::new(id, name, pem.as_bytes().to_vec(), mode));
                }
                let mut toml = SecretFile::new(
                    id,
                    "security.toml",
                    security_toml(&spec.secret_key).into_bytes(),
                    0o400,
                );
                toml.file = SECURITY_TOML.to_string();
                files.push(toml);
            }
        }
        EngineKind::Minio => {
            let user =
                SecretFile::new(id, "root-user", spec.access_key.clone().into_bytes(), 0o400);
            let pass = SecretFile::new(
                id,
                "root-password",
                spec.secret_key.clone().into_bytes(),
                0o400,
            );
            env.push(format!("MINIO_ROOT_USER_FILE={}", user.path()));
            env.push(format!("MINIO_ROOT_PASSWORD_FILE={}", pass.path()));
            files.extend([user, pass]);
        }
    }
    Ok((env, files))
}

/// The flag that points SeaweedFS at its identities file, for the task's arguments.
pub fn extra_args(spec: &BucketSpec) -> Vec<String> {
    match spec.engine.kind {
        EngineKind::Seaweedfs => vec!["-s3.config=/run/secrets/s3.json".to_string()],
        EngineKind::Minio => Vec::new(),
    }
}

/// SeaweedFS's static identities: the bucket's root key, with every right.
fn identities(access_key: &str, secret_key: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(&serde_json::json!({
        "identities": [{
            "name": "kalpana-root",
            "credentials": [{ "accessKey": access_key, "secretKey": secret_key }],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]
    }))
    .map_err(|e| Error::InvalidConfig(format!("identities file: {e}")))
}

/// SeaweedFS's `security.toml`: the same keys, guard and mutual TLS as the `docker` runtime's
/// environment, the certificates read from the secrets beside it.
fn security_toml(secret_key: &str) -> String {
    use crate::internal_tls::{CA, CERT, KEY};
    let mut t = String::new();
    for (section, purpose) in [
        ("jwt.signing", "volume-write"),
        ("jwt.signing.read", "volume-read"),
        ("jwt.filer_signing", "filer-write"),
        ("jwt.filer_signing.read", "filer-read"),
    ] {
        t.push_str(&format!(
            "[{section}]\nkey = \"{}\"\n\n",
            internal_key(secret_key, purpose)
        ));
    }
    t.push_str("[guard]\nwhite_list = \"127.0.0.1,@\"\n\n");
    t.push_str(&format!("[grpc]\nca = \"/run/secrets/{CA}\"\n\n"));
    for component in [
        "master",
        "volume",
        "filer",
        "s3",
        "admin",
        "worker",
        "client",
        "msg_broker",
        "msg_agent",
        "mq",
        "mount",
    ] {
        t.push_str(&format!(
            "[grpc.{component}]\ncert = \"/run/secrets/{CERT}\"\nkey = \"/run/secrets/{KEY}\"\n\n"
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::test_bucket as bucket;

    #[test]
    fn no_secret_and_no_weed_variable_is_left_in_the_environment() {
        for kind in EngineKind::ALL {
            let b = bucket(kind);
            let (env, files) = task_files(&b).expect("files");
            let shown = env.join("\n");
            assert!(!shown.contains("very-secret-key"), "{kind:?}: {shown}");
            assert!(!shown.contains("AKIAEXAMPLE"), "{kind:?}: {shown}");
            assert!(!shown.contains("WEED_"), "{kind:?}: {shown}");
            assert!(!shown.contains(&internal_key("very-secret-key", "volume-write")));
            assert!(!files.is_empty());
        }
    }

    #[test]
    fn seaweedfs_gets_its_identities_and_security_files() {
        let (_, files) = task_files(&bucket(EngineKind::Seaweedfs)).expect("files");
        let names: Vec<&str> = files.iter().map(|f| f.file.as_str()).collect();
        assert_eq!(
            names,
            ["s3.json", "ca.pem", "node.pem", "node.key", SECURITY_TOML]
        );
        let ids: serde_json::Value = serde_json::from_slice(&files[0].data).expect("json");
        assert_eq!(
            ids["identities"][0]["credentials"][0]["secretKey"],
            "very-secret-key"
        );
        let toml = String::from_utf8(files[4].data.clone()).expect("utf8");
        assert!(toml.contains(&internal_key("very-secret-key", "filer-read")));
        assert!(toml.contains("[grpc.msg_broker]"));
        assert_eq!(
            extra_args(&bucket(EngineKind::Seaweedfs)),
            ["-s3.config=/run/secrets/s3.json"]
        );
    }

    #[test]
    fn a_secrets_name_changes_with_its_content_and_never_shows_it() {
        let a = SecretFile::new("b1", "s3.json", b"one".to_vec(), 0o400);
        let b = SecretFile::new("b1", "s3.json", b"two".to_vec(), 0o400);
        assert_ne!(a.name, b.name);
        assert!(a.name.starts_with("kb-b1-s3-json-"));
        let long = SecretFile::new(&"f".repeat(32), "security.toml", b"x".to_vec(), 0o400);
        assert!(long.name.len() <= 64, "{}", long.name);
        assert_eq!(a.path(), "/run/secrets/s3.json");
        assert!(!format!("{a:?}").contains("one"));
    }
}
