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
    /// Env var that signs the engine's internal traffic, set to a key derived from the bucket's
    /// secret so that nothing outside the container can talk to its internal services.
    pub internal_key_env: Option<&'static str>,
    /// Env var that caps the engine runtime's own heap below the container limit, if it has one.
    pub memory_limit_env: Option<&'static str>,
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
            internal_key_env: None,
            memory_limit_env: Some("GOMEMLIMIT"),
        }
    }

    /// SeaweedFS as `weed server` with every internal service (master, volume server, filer and
    /// their gRPC ports) bound to the container's loopback and only S3 on all interfaces; the
    /// unauthenticated extras (WebDAV, Iceberg, Lance, telemetry) are off. `mini` cannot do this
    /// (it has no `-s3.ip.bind`), and its filer, master and volume server answer anyone who can
    /// reach the container without authentication. S3's own gRPC port (18333) still listens
    /// outside and refuses calls not signed with the filer key, which is derived from the
    /// bucket's secret.
    pub fn seaweedfs() -> Self {
        EngineProfile {
            kind: EngineKind::Seaweedfs,
            image: "chrislusf/seaweedfs:4.48".to_string(),
            entrypoint: Some(vec!["/usr/bin/weed".to_string()]),
            cmd: [
                "server",
                "-dir=/data",
                "-filer",
                "-s3",
                "-webdav=false",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-s3.ip.bind=0.0.0.0",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-volume.port=9340",
                // 0 sizes the volume count from the free disk; 1 GiB volumes keep that count
                // useful on small disks.
                "-volume.max=0",
                "-master.volumeSizeLimitMB=1024",
                "-master.telemetry=false",
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
            internal_key_env: Some("WEED_JWT_FILER_SIGNING_KEY"),
            memory_limit_env: Some("GOMEMLIMIT"),
        }
    }

    /// The same profile with another image.
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = image.into();
        self
    }

    /// Environment of the container: credentials, the internal signing key, the runtime's
    /// memory ceiling (70% of `memory_bytes`, leaving room for what the runtime does not count)
    /// and what the engine must know of its origins.
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
        if let Some(var) = self.internal_key_env {
            env.push(format!("{var}={}", internal_key(secret_key)));
        }
        if let (Some(var), true) = (self.memory_limit_env, memory_bytes > 0) {
            let mib = memory_bytes / (1024 * 1024) * 7 / 10;
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

/// The key that signs an engine's internal traffic: derived from the bucket's secret, so it is
/// as secret as the secret and changes with it.
fn internal_key(secret_key: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(format!("kalpana-internal:{secret_key}").as_bytes()))
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
    fn seaweedfs_binds_internals_to_loopback_and_disables_unauthenticated_extras() {
        let p = EngineProfile::seaweedfs();
        assert_eq!(p.console_port, None);
        for flag in [
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-s3.ip.bind=0.0.0.0",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
        ] {
            assert!(p.cmd.iter().any(|c| c == flag), "{flag} missing");
        }
        let env = p.env("ak", "sk", 512 * 1024 * 1024, &PublicOrigins::default());
        assert_eq!(env[..2], ["AWS_ACCESS_KEY_ID=ak", "AWS_SECRET_ACCESS_KEY=sk"]);
        let jwt = env
            .iter()
            .find_map(|e| e.strip_prefix("WEED_JWT_FILER_SIGNING_KEY="))
            .expect("internal signing key");
        assert_eq!(jwt.len(), 64);
        assert!(!jwt.contains("sk"));
        assert_ne!(
            p.env("ak", "sk2", 512 * 1024 * 1024, &PublicOrigins::default())[2],
            env[2],
            "a rotated secret changes the internal key"
        );
        assert!(env.contains(&"GOMEMLIMIT=358MiB".to_string()));
    }
}
