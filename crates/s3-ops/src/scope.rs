//! What a scoped key may do, as the engines are told it: the scope, the IAM-style policy
//! document (MinIO enforces it), the credentials issued and the identities an engine lists.

use serde_json::json;

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

/// A user of the engine and its access key ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineIdentity {
    /// The user name.
    pub user: String,
    /// Its access key ids.
    pub access_keys: Vec<String>,
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
    // A key manages nothing: MinIO lets a user make service accounts of itself unless told not to.
    statements.push(json!({
        "Effect": "Deny",
        "Action": ["admin:*", "iam:*", "sts:*"],
        "Resource": ["*"],
    }));
    json!({ "Version": "2012-10-17", "Statement": statements }).to_string()
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
        assert_eq!(statements.len(), 3);
        assert_eq!(statements[2]["Effect"], "Deny");
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
