//! Scoped access keys through the engine's IAM API (SeaweedFS serves one on its S3 port, for
//! the root credentials only): one IAM user per key, with an inline policy limited to the
//! bucket (and a key prefix) and one access key. The engine itself then refuses what the key
//! may not do; the daemon is not in the path.

use aws_credential_types::Credentials;
use aws_sdk_iam::config::{BehaviorVersion, Region};
use serde_json::json;

use crate::client::Endpoint;
use crate::error::{Error, Result};

/// What a scoped key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyScope {
    /// Read objects and list.
    pub read: bool,
    /// Write and delete objects.
    pub write: bool,
    /// Only keys under this prefix.
    pub prefix: Option<String>,
}

/// The credentials of a key just issued. `Debug` leaves the secret out.
#[derive(Clone)]
pub struct IssuedKey {
    /// Access key id.
    pub access_key: String,
    /// Secret access key (the engine shows it once).
    pub secret_key: String,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// The IAM policy of a key on `bucket`.
pub fn policy(bucket: &str, scope: &KeyScope) -> String {
    let prefix = scope.prefix.as_deref().unwrap_or("");
    let objects = format!("arn:aws:s3:::{bucket}/{prefix}*");
    let mut statements = Vec::new();
    if scope.read {
        statements.push(json!({
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": [objects],
        }));
        let mut list = json!({
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [format!("arn:aws:s3:::{bucket}")],
        });
        if !prefix.is_empty() {
            list["Condition"] = json!({ "StringLike": { "s3:prefix": [format!("{prefix}*")] } });
        }
        statements.push(list);
    }
    if scope.write {
        statements.push(json!({
            "Effect": "Allow",
            "Action": [
                "s3:PutObject",
                "s3:DeleteObject",
                // Multipart uploads are writes too (SeaweedFS knows no ListMultipartUploadParts).
                "s3:AbortMultipartUpload",
            ],
            "Resource": [objects],
        }));
    }
    json!({ "Version": "2012-10-17", "Statement": statements }).to_string()
}

/// An IAM client on one engine, signed with its root credentials.
#[derive(Debug, Clone)]
pub struct IamClient {
    client: aws_sdk_iam::Client,
    endpoint: String,
}

/// The name of the inline policy every key's user carries.
const POLICY_NAME: &str = "kalpana-scope";

impl IamClient {
    /// A client for the IAM API at `endpoint` (the engine's S3 origin).
    pub fn new(endpoint: &Endpoint) -> Self {
        let creds = Credentials::new(
            &endpoint.access_key,
            &endpoint.secret_key,
            None,
            None,
            "kalpana",
        );
        let conf = aws_sdk_iam::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&endpoint.url)
            .region(Region::new(endpoint.region.clone()))
            .credentials_provider(creds)
            .build();
        IamClient {
            client: aws_sdk_iam::Client::from_conf(conf),
            endpoint: endpoint.url.clone(),
        }
    }

    /// Makes user `user` with the policy of `scope` on `bucket` and one access key. A failure
    /// part-way removes what was made.
    pub async fn issue(&self, user: &str, bucket: &str, scope: &KeyScope) -> Result<IssuedKey> {
        self.client
            .create_user()
            .user_name(user)
            .send()
            .await
            .map_err(|e| Error::from_sdk("CreateUser", &self.endpoint, e))?;
        let made = async {
            self.client
                .put_user_policy()
                .user_name(user)
                .policy_name(POLICY_NAME)
                .policy_document(policy(bucket, scope))
                .send()
                .await
                .map_err(|e| Error::from_sdk("PutUserPolicy", &self.endpoint, e))?;
            let key = self
                .client
                .create_access_key()
                .user_name(user)
                .send()
                .await
                .map_err(|e| Error::from_sdk("CreateAccessKey", &self.endpoint, e))?
                .access_key
                .ok_or_else(|| Error::Build("CreateAccessKey answered no key".into()))?;
            Ok(IssuedKey {
                access_key: key.access_key_id,
                secret_key: key.secret_access_key,
            })
        }
        .await;
        if made.is_err() {
            let _ = self.revoke(user, None).await;
        }
        made
    }

    /// Removes user `user`, its access key and its policy. What is already gone is success.
    pub async fn revoke(&self, user: &str, access_key: Option<&str>) -> Result<()> {
        let gone = |e: &Error| {
            matches!(e, Error::S3 { status: 404, .. }) || e.code() == Some("NoSuchEntity")
        };
        if let Some(key) = access_key {
            if let Err(e) = self
                .client
                .delete_access_key()
                .user_name(user)
                .access_key_id(key)
                .send()
                .await
                .map_err(|e| Error::from_sdk("DeleteAccessKey", &self.endpoint, e))
            {
                if !gone(&e) {
                    return Err(e);
                }
            }
        }
        if let Err(e) = self
            .client
            .delete_user_policy()
            .user_name(user)
            .policy_name(POLICY_NAME)
            .send()
            .await
            .map_err(|e| Error::from_sdk("DeleteUserPolicy", &self.endpoint, e))
        {
            if !gone(&e) {
                return Err(e);
            }
        }
        match self
            .client
            .delete_user()
            .user_name(user)
            .send()
            .await
            .map_err(|e| Error::from_sdk("DeleteUser", &self.endpoint, e))
        {
            Err(e) if !gone(&e) => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_key_on_a_prefix_may_list_and_read_only_there() {
        let p: serde_json::Value = serde_json::from_str(&policy(
            "photos",
            &KeyScope {
                read: true,
                write: false,
                prefix: Some("team/".into()),
            },
        ))
        .expect("json");
        let statements = p["Statement"].as_array().expect("statements");
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[0]["Resource"][0], "arn:aws:s3:::photos/team/*");
        assert_eq!(
            statements[1]["Condition"]["StringLike"]["s3:prefix"][0],
            "team/*"
        );
        assert!(!p.to_string().contains("PutObject"));
    }

    #[test]
    fn a_write_key_may_not_read() {
        let p = policy(
            "photos",
            &KeyScope {
                read: false,
                write: true,
                prefix: None,
            },
        );
        assert!(p.contains("s3:PutObject") && p.contains("arn:aws:s3:::photos/*"));
        assert!(!p.contains("GetObject") && !p.contains("ListBucket"));
    }
}
