//! Scoped keys on MinIO through its admin API (`/minio/admin/v3`, signed with the root
//! credentials): one canned policy and one user per key, the policy attached to the user. The
//! policy document of `scope::policy`; MinIO enforces it.
//!
//! MinIO wants secrets in admin requests encrypted with the root secret (madmin's
//! `EncryptData`): `salt(32) | 0x00 | nonce(8) | sio stream`, the key Argon2id(secret, salt,
//! t=1, m=64 MiB, p=4), the stream AES-256-GCM in 16 KiB pieces as `secure-io/sio-go` writes
//! them. The unit tests decrypt madmin's own published vectors with the same layout.

use std::time::SystemTime;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_smithy_runtime_api::client::identity::Identity;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::RngCore;
use serde_json::json;

use crate::client::Endpoint;
use crate::error::{Error, Result};
use crate::scope::{policy, EngineIdentity, IssuedKey, KeyScope};

/// Everything but SigV4's unreserved characters is encoded in query values.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// sio-go's piece size.
const PIECE: usize = 16 * 1024;
/// madmin's algorithm id for Argon2id + AES-256-GCM.
const ARGON2ID_AES_GCM: u8 = 0x00;

/// The 32-byte key madmin derives from a password and salt.
fn derive_key(password: &str, salt: &[u8]) -> Result<[u8; 32]> {
    let params = argon2::Params::new(64 * 1024, 1, 4, Some(32))
        .map_err(|e| Error::Build(format!("argon2 parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0u8; 32];
    argon
        .hash_password_into(password.as_bytes(), salt, &mut key)
        .map_err(|e| Error::Build(format!("argon2: {e}")))?;
    Ok(key)
}

/// The 12-byte nonce of piece `seq`: the stream's 8-byte nonce and the little-endian number.
fn piece_nonce(nonce: &[u8; 8], seq: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(nonce);
    n[8..].copy_from_slice(&seq.to_le_bytes());
    n
}

/// What every piece authenticates: a final flag and the tag of the (empty) associated data.
fn piece_aad(cipher: &Aes256Gcm, nonce: &[u8; 8]) -> Result<[u8; 17]> {
    let tag = cipher
        .encrypt(Nonce::from_slice(&piece_nonce(nonce, 0)), &[][..])
        .map_err(|_| Error::Build("sealing the stream header failed".into()))?;
    let mut aad = [0u8; 17];
    aad[1..].copy_from_slice(&tag);
    Ok(aad)
}

/// madmin's `EncryptData(password, data)`.
pub fn encrypt_data(password: &str, data: &[u8]) -> Result<Vec<u8>> {
    let mut salt = [0u8; 32];
    let mut nonce = [0u8; 8];
    rand::rng().fill_bytes(&mut salt);
    rand::rng().fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new(&derive_key(password, &salt)?.into());
    let mut aad = piece_aad(&cipher, &nonce)?;
    let mut out = Vec::with_capacity(41 + data.len() + 16 * (data.len() / PIECE + 1));
    out.extend_from_slice(&salt);
    out.push(ARGON2ID_AES_GCM);
    out.extend_from_slice(&nonce);
    let mut seq = 1u32;
    let mut rest = data;
    // Every full piece but the last is sealed as not final; the last (possibly full, possibly
    // empty) one carries the final flag.
    while rest.len() > PIECE {
        let (piece, tail) = rest.split_at(PIECE);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&piece_nonce(&nonce, seq)),
                Payload {
                    msg: piece,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Build("sealing a piece failed".into()))?;
        out.extend_from_slice(&sealed);
        seq += 1;
        rest = tail;
    }
    aad[0] = 0x80;
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&piece_nonce(&nonce, seq)),
            Payload {
                msg: rest,
                aad: &aad,
            },
        )
        .map_err(|_| Error::Build("sealing the last piece failed".into()))?;
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Whether an admin failure says the user or policy is already gone.
fn is_gone(e: &Error) -> bool {
    matches!(e, Error::S3 { status: 404, .. })
        || matches!(
            e.code(),
            Some("XMinioAdminNoSuchUser" | "XMinioAdminNoSuchPolicy")
        )
}

/// madmin's `DecryptData` for the Argon2id + AES-GCM layout (what MinIO encrypts admin answers
/// with, such as the user list); `None` when it does not authenticate.
pub fn decrypt_data(password: &str, data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 41 {
        return None;
    }
    let (salt, rest) = data.split_at(32);
    let (id, rest) = rest.split_first()?;
    if *id != ARGON2ID_AES_GCM {
        return None;
    }
    let (nonce, mut sealed) = rest.split_at(8);
    let nonce: [u8; 8] = nonce.try_into().ok()?;
    let cipher = Aes256Gcm::new(&derive_key(password, salt).ok()?.into());
    let mut aad = piece_aad(&cipher, &nonce).ok()?;
    let mut out = Vec::new();
    let mut seq = 1u32;
    while sealed.len() > PIECE + 16 {
        let (piece, tail) = sealed.split_at(PIECE + 16);
        let open = Payload {
            msg: piece,
            aad: &aad,
        };
        out.extend(
            cipher
                .decrypt(Nonce::from_slice(&piece_nonce(&nonce, seq)), open)
                .ok()?,
        );
        seq += 1;
        sealed = tail;
    }
    aad[0] = 0x80;
    let last = Payload {
        msg: sealed,
        aad: &aad,
    };
    out.extend(
        cipher
            .decrypt(Nonce::from_slice(&piece_nonce(&nonce, seq)), last)
            .ok()?,
    );
    Some(out)
}

/// A client of one MinIO server's admin API, signed with its root credentials.
#[derive(Debug, Clone)]
pub struct MinioAdmin {
    http: reqwest::Client,
    endpoint: Endpoint,
}

/// One admin operation.
struct Call<'a> {
    op: &'static str,
    method: &'static str,
    path: &'static str,
    query: &'a [(&'a str, &'a str)],
    body: Vec<u8>,
}

impl MinioAdmin {
    /// A client for the admin API at `endpoint` (the server's S3 origin, root credentials).
    pub fn new(endpoint: &Endpoint) -> Self {
        MinioAdmin {
            http: reqwest::Client::new(),
            endpoint: endpoint.clone(),
        }
    }

    async fn call(&self, call: Call<'_>) -> Result<Vec<u8>> {
        let query: Vec<String> = call
            .query
            .iter()
            .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY)))
            .collect();
        let url = format!(
            "{}/minio/admin/v3/{}?{}",
            self.endpoint.url.trim_end_matches('/'),
            call.path,
            query.join("&")
        );
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let identity: Identity = self.endpoint.credentials().into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.endpoint.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| Error::Build(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            call.method,
            url.as_str(),
            std::iter::empty(),
            SignableBody::Bytes(&call.body),
        )
        .map_err(|e| Error::Build(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| Error::Build(e.to_string()))?
            .into_parts();
        let method = reqwest::Method::from_bytes(call.method.as_bytes())
            .map_err(|e| Error::Build(e.to_string()))?;
        let mut req = self.http.request(method, &url).body(call.body);
        for (name, value) in instructions.headers() {
            req = req.header(name, value);
        }
        let resp = req.send().await.map_err(|e| Error::Unreachable {
            endpoint: self.endpoint.url.clone(),
            message: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return resp
                .bytes()
                .await
                .map(|b| b.to_vec())
                .map_err(|e| Error::Unreachable {
                    endpoint: self.endpoint.url.clone(),
                    message: e.to_string(),
                });
        }
        // MinIO answers admin errors as JSON: {"Code": …, "Message": …}.
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        Err(Error::S3 {
            op: call.op,
            status,
            code: body["Code"].as_str().unwrap_or("").to_string(),
            message: body["Message"].as_str().unwrap_or("").to_string(),
        })
    }

    /// Makes policy `user` for `scope` on `bucket` and a user with the credentials `issued`
    /// (MinIO takes the ones it is given) attached to it. A failure part-way removes what was
    /// made.
    pub async fn issue(
        &self,
        user: &str,
        bucket: &str,
        scope: &KeyScope,
        issued: IssuedKey,
    ) -> Result<IssuedKey> {
        let made = async {
            self.call(Call {
                op: "AddCannedPolicy",
                method: "PUT",
                path: "add-canned-policy",
                query: &[("name", user)],
                body: policy(bucket, scope).into_bytes(),
            })
            .await?;
            let user_info = json!({ "secretKey": issued.secret_key, "status": "enabled" });
            self.call(Call {
                op: "AddUser",
                method: "PUT",
                path: "add-user",
                query: &[("accessKey", &issued.access_key)],
                body: encrypt_data(&self.endpoint.secret_key, user_info.to_string().as_bytes())?,
            })
            .await?;
            self.call(Call {
                op: "SetUserPolicy",
                method: "PUT",
                path: "set-user-or-group-policy",
                query: &[
                    ("policyName", user),
                    ("userOrGroup", &issued.access_key),
                    ("isGroup", "false"),
                ],
                body: Vec::new(),
            })
            .await
            .map(drop)
        }
        .await;
        match made {
            Ok(()) => Ok(issued),
            Err(e) => {
                let _ = self.revoke(user, Some(&issued.access_key)).await;
                Err(e)
            }
        }
    }

    /// Every user of the server (MinIO names a user by its access key), each with that key.
    pub async fn identities(&self) -> Result<Vec<EngineIdentity>> {
        let sealed = self
            .call(Call {
                op: "ListUsers",
                method: "GET",
                path: "list-users",
                query: &[],
                body: Vec::new(),
            })
            .await?;
        let plain = decrypt_data(&self.endpoint.secret_key, &sealed)
            .ok_or_else(|| Error::Build("the user list does not decrypt".into()))?;
        let users: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&plain)
            .map_err(|e| Error::Build(format!("the user list is not JSON: {e}")))?;
        Ok(users
            .into_iter()
            .map(|(k, _)| EngineIdentity {
                user: k.clone(),
                access_keys: vec![k],
            })
            .collect())
    }

    /// Removes the user of `access_key` only (its policy stays); already gone is success.
    pub async fn remove_user(&self, access_key: &str) -> Result<()> {
        match self
            .call(Call {
                op: "RemoveUser",
                method: "DELETE",
                path: "remove-user",
                query: &[("accessKey", access_key)],
                body: Vec::new(),
            })
            .await
        {
            Err(e) if !is_gone(&e) => Err(e),
            _ => Ok(()),
        }
    }

    /// Gives policy `user` a user with the credentials `issued` and removes the user of `old`.
    pub async fn rotate(&self, user: &str, old: &str, issued: IssuedKey) -> Result<IssuedKey> {
        let user_info = json!({ "secretKey": issued.secret_key, "status": "enabled" });
        self.call(Call {
            op: "AddUser",
            method: "PUT",
            path: "add-user",
            query: &[("accessKey", &issued.access_key)],
            body: encrypt_data(&self.endpoint.secret_key, user_info.to_string().as_bytes())?,
        })
        .await?;
        self.call(Call {
            op: "SetUserPolicy",
            method: "PUT",
            path: "set-user-or-group-policy",
            query: &[
                ("policyName", user),
                ("userOrGroup", &issued.access_key),
                ("isGroup", "false"),
            ],
            body: Vec::new(),
        })
        .await?;
        self.remove_user(old).await?;
        Ok(issued)
    }

    /// Removes the user of `access_key` and policy `user`. What is already gone is success.
    pub async fn revoke(&self, user: &str, access_key: Option<&str>) -> Result<()> {
        let gone = is_gone;
        if let Some(key) = access_key {
            match self
                .call(Call {
                    op: "RemoveUser",
                    method: "DELETE",
                    path: "remove-user",
                    query: &[("accessKey", key)],
                    body: Vec::new(),
                })
                .await
            {
                Err(e) if !gone(&e) => return Err(e),
                _ => {}
            }
        }
        match self
            .call(Call {
                op: "RemoveCannedPolicy",
                method: "DELETE",
                path: "remove-canned-policy",
                query: &[("name", user)],
                body: Vec::new(),
            })
            .await
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
    fn madmins_published_vectors_decrypt_with_our_layout() {
        // From madmin-go's encrypt_test.go (`decryptDataTests`), made by MinIO's own code.
        let vectors: [(&str, &str, Vec<u8>); 3] = [
            (
                "",
                "828aa81599df0651c0461adb82283e8b89956baee9f6e719947ef9cddc849028001dc9d3ac0938f66b07bacc9751437e1985f8a9763c240e81",
                Vec::new(),
            ),
            (
                r#"xPl.8/rhR"Q_1xLt"#,
                "b5c016e93b84b473fc8a37af94936563630c36d6df1841d23a86ee51ca161f9e00ac19116b32f643ff6a56a212b265d8c56195bb0d12ce199e13dfdc5272f80c1564da2c6fc2fa18da91d8062de02af5cdafea491c6f3cae1f",
                vec![0; 32],
            ),
            (
                "7h5oU4$te{;K}fgqlI^]",
                concat!(
                    "c58edf7cfd557b6b655de6f48b1a3049d8d049dadb3a7bfa9ac9ccbb5baf37ec00f83086a26f43b7d6bc9075ad0",
                    "38bf5741f118d502ebe94165e4072ba7f98535d6b1e3b6ae67a98115d146d9b4d90e4df4ae82df9cfa17ed7cd42",
                    "465181559f7ddf09c98beec521bb4478e0cb73c4e0827af8688ff4e7a07327a10d5a180035e6ddb16d974a85257",
                    "981cd9e0360a20f7b4d653190267dfb241148f018ae180568042e864b9e1b5bc05425a3abc2b0324f50c72d5679",
                    "8f924405dfc0f8523f4bb564ed65af8e1b1c82a7a0640552ecf81985d95d0993d99172592ddc1393dfa63e8f0b3",
                    "d744b2cc4b73384ca4693f0c1aec0e9b00e85f2937e891105d67da8f59c14ca96608e0425c42f9c1e7c2a8b3413",
                    "e1381784f9cfe01de7c47cea1f8d7a7d88f5d4aca783cf55332b47f957a6b9a65269d7eb606b877b"
                ),
                vec![0; 256],
            ),
        ];
        for (password, hex_data, plain) in vectors {
            let data = hex::decode(hex_data).expect("hex");
            assert_eq!(
                decrypt_data(password, &data).as_deref(),
                Some(&plain[..]),
                "vector for password {password:?}"
            );
            assert_eq!(decrypt_data("wrong", &data), None);
        }
    }

    #[test]
    fn what_we_encrypt_decrypts_as_madmin_would_across_pieces() {
        for len in [0, 1, 100, PIECE, PIECE + 1, 3 * PIECE + 7] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = encrypt_data("root-secret", &plain).expect("encrypt");
            assert_eq!(sealed[32], ARGON2ID_AES_GCM);
            assert_eq!(sealed.len(), 41 + len + 16 * len.div_ceil(PIECE).max(1));
            assert_eq!(decrypt_data("root-secret", &sealed), Some(plain), "{len}");
        }
    }
}
