//! Engine profiles: the one place that knows how to run each S3 server image.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The S3 servers a bucket can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// MinIO (the default, as in the original plan).
    Minio,
    /// SeaweedFS in its single-process `mini` mode.
    Seaweedfs,
}

impl EngineKind {
    /// Every known engine.
    pub const ALL: [EngineKind; 2] = [EngineKind::Minio, EngineKind::Seaweedfs];

    /// The engine's name as used in the API and in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Minio => "minio",
            EngineKind::Seaweedfs => "seaweedfs",
        }
    }

    /// The profile of this engine with its default image.
    pub fn profile(self) -> EngineProfile {
        match self {
            EngineKind::Minio => EngineProfile::minio(),
            EngineKind::Seaweedfs => EngineProfile::seaweedfs(),
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EngineKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "minio" => Ok(EngineKind::Minio),
            "seaweedfs" => Ok(EngineKind::Seaweedfs),
            _ => Err(Error::UnknownEngine(s.to_string())),
        }
    }
}

/// Which bucket features an engine supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineFeatures {
    /// Object versioning.
    pub versioning: bool,
    /// Bucket policies (anonymous public read).
    pub public_access: bool,
    /// Server-side encryption.
    pub encryption: bool,
}

/// How to run one S3 server image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineProfile {
    /// Which engine this is.
    pub kind: EngineKind,
    /// Image reference (overridable by configuration).
    pub image: String,
    /// Entrypoint override, if the image's own is not the server.
    pub entrypoint: Option<Vec<String>>,
    /// Command (arguments) of the server.
    pub cmd: Vec<String>,
    /// Env var that carries the access key.
    pub access_key_env: &'static str,
    /// Env var that carries the secret key.
    pub secret_key_env: &'static str,
    /// Container port of the S3 API.
    pub s3_port: u16,
    /// Container port of an authenticated web console, if the engine has one.
    pub console_port: Option<u16>,
    /// Where the data volume is mounted.
    pub data_path: &'static str,
    /// Unauthenticated HTTP path on the S3 port that answers 200 once the server is up.
    pub health_path: &'static str,
    /// Linux capabilities the engine needs beyond none.
    pub cap_add: Vec<String>,
    /// Writable scratch directories (tmpfs) the engine needs with a read-only root.
    pub tmpfs: Vec<&'static str>,
    /// Supported bucket features.
    pub features: EngineFeatures,
    /// Longest path segment of an object key the engine stores (its file-name limit).
    pub max_key_segment_bytes: usize,
    /// Whether the engine's internal services are locked with JWT keys derived from the bucket's
    /// secret and mutual TLS with certificates made for the container (SeaweedFS).
    pub internal_security: bool,
    /// Env var that caps the engine runtime's own heap below the container limit, if it has one.
    pub memory_limit_env: Option<&'static str>,
    /// Flags that bound how much upload data the engine holds in memory at once, made for the
    /// container's memory limit (SeaweedFS buffers whole parts of concurrent uploads).
    pub upload_limit_flags: &'static [&'static str],
    /// The API the engine makes scoped keys with.
    pub key_api: KeyApi,
}

/// How an engine makes scoped keys (users limited by a policy), enforced by the engine itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyApi {
    /// `weed shell` inside the bucket's container (SeaweedFS, whose IAM API is off): one
    /// identity with actions and one access key per key (see `weed_shell`).
    WeedShell,
    /// MinIO's admin API (`/minio/admin/v3`): one canned policy and one user per key.
    MinioAdmin,
}

/// Routed public origins of a bucket, handed to engines that must know them (MinIO).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicOrigins {
    /// Origin of the S3 API as clients reach it.
    pub s3: Option<String>,
    /// Origin of the console as browsers reach it.
    pub console: Option<String>,
}

impl EngineProfile {
    /// MinIO: a frozen, still-served image; override it with configuration.
    pub fn minio() -> Self {
        EngineProfile {
            kind: EngineKind::Minio,
            image: "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z".to_string(),
            entrypoint: None,
            cmd: ["server", "/data", "--console-address", ":9001"]
                .map(String::from)
                .to_vec(),
            access_key_env: "MINIO_ROOT_USER",
            secret_key_env: "MINIO_ROOT_PASSWORD",
            s3_port: 9000,
            console_port: Some(9001),
            data_path: "/data",
            health_path: "/minio/health/live",
            cap_add: Vec::new(),
            tmpfs: vec!["/tmp"],
            features: EngineFeatures {
                versioning: true,
                public_access: true,
                encryption: false,
            },
            max_key_segment_bytes: 255,
            internal_security: false,
            memory_limit_env: Some("GOMEMLIMIT"),
            upload_limit_flags: &[],
            key_api: KeyApi::MinioAdmin,
        }
    }

    /// SeaweedFS `mini` with its unauthenticated extras (WebDAV, admin UI, Iceberg, Lance,
    /// telemetry) turned off and its internal services locked to the container's own processes:
    /// every internal HTTP call must carry a JWT signed with keys derived from the bucket's
    /// secret (only loopback and the unix socket `mini` uses are white-listed), and every
    /// internal gRPC call must present the container's own client certificate (mutual TLS, see
    /// `internal_tls`). Only S3 is published. (`weed server` can bind its internals to loopback
    /// instead, but takes 15 s to stop and up to 20 s to serve again after a restart.)
    pub fn seaweedfs() -> Self {
        EngineProfile {
            kind: EngineKind::Seaweedfs,
            image: "chrislusf/seaweedfs:4.48".to_string(),
            entrypoint: Some(vec!["/usr/bin/weed".to_string()]),
            cmd: [
                "mini",
                "-dir=/data",
                "-ip=127.0.0.1",
                "-webdav=false",
                "-admin.ui=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
                // No IAM on the S3 port: SeaweedFS lets any identity mint itself access keys
                // there. Scoped keys are made with `weed shell` inside the container.
                "-s3.iam=false",
            ]
            .map(String::from)
            .to_vec(),
            access_key_env: "AWS_ACCESS_KEY_ID",
            secret_key_env: "AWS_SECRET_ACCESS_KEY",
            s3_port: 8333,
            console_port: None,
            data_path: "/data",
            health_path: "/healthz",
            cap_add: Vec::new(),
            tmpfs: vec!["/tmp"],
            features: EngineFeatures {
                versioning: true,
                public_access: true,
                encryption: true,
            },
            max_key_segment_bytes: 255,
            internal_security: true,
            memory_limit_env: Some("GOMEMLIMIT"),
            upload_limit_flags: &[
                "-s3.concurrentUploadLimitMB",
                "-filer.concurrentUploadLimitMB",
            ],
            key_api: KeyApi::WeedShell,
        }
    }

    /// The same profile with another image.
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = image.into();
        self
    }

    /// The command for a container limited to `memory_bytes`: the profile's command and its
    /// upload limits at an eighth of the memory (at least 16 MB): 64 MB at 512 MiB, where six
    /// concurrent 100 MiB multipart uploads by default clients no longer OOM SeaweedFS.
    pub fn command(&self, memory_bytes: i64) -> Vec<String> {
        let mut cmd = self.cmd.clone();
        if memory_bytes > 0 {
            let mb = (memory_bytes / (1024 * 1024) / 8).max(16);
            cmd.extend(self.upload_limit_flags.iter().map(|f| format!("{f}={mb}")));
        }
        cmd
    }

    /// Environment of the container: credentials, the internal signing keys, the runtime's
    /// memory ceiling (65% of `memory_bytes`, leaving room for what the Go runtime does not
    /// count and for the upload buffers) and what the engine must know of its origins.
    pub fn env(
        &self,
        access_key: &str,
        secret_key: &str,
        memory_bytes: i64,
        origins: &PublicOrigins,
    ) -> Vec<String> {
        let mut env = vec![
            format!("{}={access_key}", self.access_key_env),
            format!("{}={secret_key}", self.secret_key_env),
        ];
        if self.internal_security {
            env.extend(seaweedfs_security_env(self.data_path, secret_key));
        }
        if let (Some(var), true) = (self.memory_limit_env, memory_bytes > 0) {
            let mib = memory_bytes / (1024 * 1024) * 65 / 100;
            env.push(format!("{var}={mib}MiB"));
        }
        if self.kind == EngineKind::Minio {
            // MinIO behind a proxy signs redirects and checks Host against these.
            if let Some(s3) = &origins.s3 {
                env.push(format!("MINIO_SERVER_URL={s3}"));
            }
            if let Some(console) = &origins.console {
                env.push(format!("MINIO_BROWSER_REDIRECT_URL={console}"));
            }
        }
        env
    }
}

/// A key for one purpose of an engine's internal signing, derived from the bucket's secret: as
/// secret as the secret, different per purpose, and changed with it.
pub(crate) fn internal_key(secret_key: &str, purpose: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(
        format!("kalpana-internal:{purpose}:{secret_key}").as_bytes(),
    ))
}

/// SeaweedFS's `security.toml`, as environment: JWT keys for volume and filer reads and
/// writes, a guard that lets only loopback and the local unix socket (`@`) through, and mutual
/// TLS for the gRPC of every component with the files `internal_tls` writes to the volume.
fn seaweedfs_security_env(data_path: &str, secret_key: &str) -> Vec<String> {
    use crate::internal_tls::{CA, CERT, DIR, KEY};
    let dir = format!("{data_path}/{DIR}");
    let mut env = Vec::new();
    for (var, purpose) in [
        ("WEED_JWT_SIGNING_KEY", "volume-write"),
        ("WEED_JWT_SIGNING_READ_KEY", "volume-read"),
        ("WEED_JWT_FILER_SIGNING_KEY", "filer-write"),
        ("WEED_JWT_FILER_SIGNING_READ_KEY", "filer-read"),
    ] {
        env.push(format!("{var}={}", internal_key(secret_key, purpose)));
    }
    env.push("WEED_GUARD_WHITE_LIST=127.0.0.1,@".to_string());
    env.push(format!("WEED_GRPC_CA={dir}/{CA}"));
    for component in [
        "MASTER",
        "VOLUME",
        "FILER",
        "S3",
        "ADMIN",
        "WORKER",
        "CLIENT",
        "MQ_BROKER",
        "MQ_AGENT",
    ] {
        env.push(format!("WEED_GRPC_{component}_CERT={dir}/{CERT}"));
        env.push(format!("WEED_GRPC_{component}_KEY={dir}/{KEY}"));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_round_trip() {
        for kind in EngineKind::ALL {
            assert_eq!(kind.as_str().parse::<EngineKind>().ok(), Some(kind));
            assert_eq!(kind.profile().kind, kind);
        }
        assert!("ceph".parse::<EngineKind>().is_err());
    }

    #[test]
    fn minio_env_carries_routed_origins() {
        let origins = PublicOrigins {
            s3: Some("https://b.example.com".into()),
            console: Some("https://console-b.example.com".into()),
        };
        let env = EngineProfile::minio().env("ak", "sk", 512 * 1024 * 1024, &origins);
        assert!(env.contains(&"MINIO_ROOT_USER=ak".to_string()));
        assert!(env.contains(&"MINIO_ROOT_PASSWORD=sk".to_string()));
        assert!(env.contains(&"MINIO_SERVER_URL=https://b.example.com".to_string()));
        assert!(
            env.contains(&"MINIO_BROWSER_REDIRECT_URL=https://console-b.example.com".to_string())
        );
    }

    #[test]
    fn seaweedfs_locks_its_internals_and_disables_unauthenticated_extras() {
        let p = EngineProfile::seaweedfs();
        assert_eq!(p.console_port, None);
        for flag in [
            "-ip=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
        ] {
            assert!(p.cmd.iter().any(|c| c == flag), "{flag} missing");
        }
        let env = p.env("ak", "sk", 512 * 1024 * 1024, &PublicOrigins::default());
        assert_eq!(
            env[..2],
            ["AWS_ACCESS_KEY_ID=ak", "AWS_SECRET_ACCESS_KEY=sk"]
        );
        let get = |env: &[String], var: &str| {
            env.iter()
                .find_map(|e| e.strip_prefix(&format!("{var}=")).map(String::from))
        };
        let keys: Vec<String> = [
            "WEED_JWT_SIGNING_KEY",
            "WEED_JWT_SIGNING_READ_KEY",
            "WEED_JWT_FILER_SIGNING_KEY",
            "WEED_JWT_FILER_SIGNING_READ_KEY",
        ]
        .iter()
        .map(|v| get(&env, v).expect("jwt key"))
        .collect();
        for k in &keys {
            assert_eq!(k.len(), 64);
            assert_eq!(
                keys.iter().filter(|o| *o == k).count(),
                1,
                "one key per purpose"
            );
        }
        let rotated = p.env("ak", "sk2", 512 * 1024 * 1024, &PublicOrigins::default());
        assert_ne!(
            get(&rotated, "WEED_JWT_FILER_SIGNING_KEY"),
            get(&env, "WEED_JWT_FILER_SIGNING_KEY"),
            "a rotated secret changes the internal keys"
        );
        assert_eq!(
            get(&env, "WEED_GUARD_WHITE_LIST").as_deref(),
            Some("127.0.0.1,@")
        );
        assert_eq!(
            get(&env, "WEED_GRPC_FILER_CERT").as_deref(),
            Some("/data/.kalpana-tls/node.pem")
        );
        assert_eq!(
            get(&env, "WEED_GRPC_CA").as_deref(),
            Some("/data/.kalpana-tls/ca.pem")
        );
        assert!(env.contains(&"GOMEMLIMIT=332MiB".to_string()));
        let cmd = p.command(512 * 1024 * 1024);
        assert!(cmd.contains(&"-s3.concurrentUploadLimitMB=64".to_string()));
        assert!(cmd.contains(&"-filer.concurrentUploadLimitMB=64".to_string()));
        assert!(p
            .command(64 * 1024 * 1024)
            .contains(&"-s3.concurrentUploadLimitMB=16".to_string()));
    }
}
