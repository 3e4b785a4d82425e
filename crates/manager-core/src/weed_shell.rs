//! Scoped keys of SeaweedFS buckets, made with `weed shell` inside the bucket's own container
//! (`docker exec`): the engine's IAM API is turned off on its S3 port (`-s3.iam=false`), because
//! SeaweedFS lets any identity manage its own access keys there (`CreateAccessKey`,
//! `UpdateAccessKey`… on itself pass before any policy is read), so a scoped key could mint
//! itself keys nobody knows of. The shell reaches the filer's IAM service over the container's
//! own mutual TLS with its JWT keys, which only processes inside the container hold.
//!
//! A key is an identity with legacy actions (`Read:B/prefix*`, `List:B/prefix*`,
//! `Write:B/prefix*`; `Read:B` for the whole bucket) and one access key of the daemon's making.
//! Caveat: the shell splits a line at `;` and an action list at `,`, so a prefix holding either
//! cannot be expressed ([`check_prefix`] refuses it).

use std::time::Duration;

use serde::Deserialize;

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::runtime::Runtime;

/// How long one shell session may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// An identity of the engine and its access keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellIdentity {
    /// The user name.
    pub user: String,
    /// Its access key ids.
    pub access_keys: Vec<String>,
}

/// `weed shell` in one bucket's server.
#[derive(Clone)]
pub struct WeedShell {
    runtime: Arc<dyn Runtime>,
    bucket: String,
    binary: String,
}

impl std::fmt::Debug for WeedShell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeedShell")
            .field("bucket", &self.bucket)
            .field("binary", &self.binary)
            .finish_non_exhaustive()
    }
}

/// Refuses a key prefix the shell cannot carry (`;` ends a command, `,` an action).
pub fn check_prefix(prefix: &str) -> std::result::Result<(), String> {
    if prefix.contains([';', ',']) {
        return Err("a key prefix on the seaweedfs engine may not contain `;` or `,`".into());
    }
    Ok(())
}

/// The actions of a key on `bucket`: reads (and listing), writes (and deletes), under `prefix`.
pub fn actions(bucket: &str, read: bool, write: bool, prefix: Option<&str>) -> Vec<String> {
    let on = |verb: &str| match prefix {
        // Without wildcards an action names the whole bucket.
        None | Some("") => format!("{verb}:{bucket}"),
        Some(p) => format!("{verb}:{bucket}/{p}*"),
    };
    let mut out = Vec::new();
    if read {
        out.push(on("Read"));
        out.push(on("List"));
    }
    if write {
        out.push(on("Write"));
    }
    out
}

/// One shell argument, quoted when it holds anything but plain characters.
fn arg(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:/=*+".contains(c))
    {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    identities: Vec<ConfigIdentity>,
}

#[derive(Deserialize)]
struct ConfigIdentity {
    name: String,
    #[serde(default)]
    credentials: Vec<Credential>,
}

#[derive(Deserialize)]
struct Credential {
    #[serde(rename = "accessKey")]
    access_key: String,
}

impl WeedShell {
    /// The shell of bucket `bucket`'s server, whose image runs `binary` (`/usr/bin/weed`).
    pub fn new(runtime: Arc<dyn Runtime>, bucket: &str, binary: &str) -> Self {
        WeedShell {
            runtime,
            bucket: bucket.to_string(),
            binary: binary.to_string(),
        }
    }

    /// Runs `lines` in one session; fails with the shell's own words when it exits non-zero
    /// (its output holds secrets: it is never returned in an error or logged).
    async fn run(&self, op: &'static str, lines: &[String]) -> Result<String> {
        for l in lines {
            if l.contains(['\n', '\r', ';']) {
                return Err(Error::Docker {
                    op,
                    status: 400,
                    message: "a shell line may not hold `;` or a line break".into(),
                });
            }
        }
        let script = lines.join("\n") + "\n";
        let out = self
            .runtime
            .exec(
                &self.bucket,
                &[self.binary.as_str(), "shell"],
                script.as_bytes(),
                TIMEOUT,
            )
            .await?;
        if out.exit_code != 0 {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(Error::Docker {
                op,
                status: if stderr.contains("not found") {
                    404
                } else {
                    500
                },
                message: format!("weed shell exited {}: {}", out.exit_code, stderr.trim()),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Makes identity `user` with one access key and `actions`.
    pub async fn create(
        &self,
        user: &str,
        access_key: &str,
        secret_key: &str,
        actions: &[String],
    ) -> Result<()> {
        let line = format!(
            "s3.configure -user={} -access_key={} -secret_key={} -actions={} -apply",
            arg(user),
            arg(access_key),
            arg(secret_key),
            arg(&actions.join(","))
        );
        self.run("make a key", &[line]).await.map(drop)
    }

    /// Removes identity `user` and every key it holds; already gone is success.
    pub async fn delete_user(&self, user: &str) -> Result<()> {
        let line = format!("s3.user.delete -name {}", arg(user));
        match self.run("remove a key", &[line]).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// Gives `user` the access key `new` (secret `secret`) and removes `old`.
    pub async fn rotate(&self, user: &str, old: &str, new: &str, secret: &str) -> Result<()> {
        let create = format!(
            "s3.accesskey.create -user {} -access_key {} -secret_key {}",
            arg(user),
            arg(new),
            arg(secret)
        );
        self.run("rotate a key", &[create]).await?;
        self.delete_access_key(user, old).await
    }

    /// Removes access key `key` of `user`; already gone is success.
    pub async fn delete_access_key(&self, user: &str, key: &str) -> Result<()> {
        let line = format!(
            "s3.accesskey.delete -user {} -access_key {}",
            arg(user),
            arg(key)
        );
        match self.run("remove an access key", &[line]).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// Every identity the engine keeps (its root credentials, given by environment, are not
    /// among them).
    pub async fn identities(&self) -> Result<Vec<ShellIdentity>> {
        let out = self
            .run(
                "list the engine's identities",
                &["s3.configure".to_string()],
            )
            .await?;
        let config: Config = serde_json::from_str(out.trim()).map_err(|e| Error::Docker {
            op: "list the engine's identities",
            status: 500,
            message: format!("the shell's answer is not the configuration: {e}"),
        })?;
        Ok(config
            .identities
            .into_iter()
            .map(|i| ShellIdentity {
                user: i.name,
                access_keys: i.credentials.into_iter().map(|c| c.access_key).collect(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_confine_keys_to_their_bucket_and_prefix() {
        assert_eq!(
            actions("photos", true, false, None),
            ["Read:photos", "List:photos"]
        );
        assert_eq!(
            actions("photos", true, true, Some("team/")),
            [
                "Read:photos/team/*",
                "List:photos/team/*",
                "Write:photos/team/*"
            ]
        );
        assert_eq!(actions("photos", false, true, Some("")), ["Write:photos"]);
    }

    #[test]
    fn arguments_are_quoted_and_lines_cannot_be_split() {
        assert_eq!(arg("kb-0193"), "kb-0193");
        assert_eq!(
            arg("Read:b/my dir*,List:b/my dir*"),
            "\"Read:b/my dir*,List:b/my dir*\""
        );
        assert_eq!(arg("a\"b"), "\"a\\\"b\"");
        assert!(check_prefix("a;b").is_err());
        assert!(check_prefix("a,b").is_err());
        assert!(check_prefix("team/ x'y\"").is_ok());
    }
}
