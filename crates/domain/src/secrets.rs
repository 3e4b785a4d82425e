//! Secrets: the master key, AES-256-GCM encryption of credentials at rest, API tokens and their
//! hashes, generated access and secret keys.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The key that encrypts credentials at rest.
#[derive(Clone)]
pub struct MasterKey(Key<Aes256Gcm>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// From `KALPANA_MASTER_KEY` (64 hex digits or base64 of 32 bytes), else from
    /// `<data_dir>/master.key`, generated there with mode 0600 when absent.
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<Self> {
        if let Some(text) = configured {
            return Self::parse(text.trim()).ok_or_else(|| {
                Error::Invalid(
                    "KALPANA_MASTER_KEY must be 64 hex digits or base64 of 32 bytes".into(),
                )
            });
        }
        let path = data_dir.join("master.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(text.trim()).ok_or_else(|| {
                Error::Internal(format!("{} does not hold a valid key", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                write_private(&path, hex::encode(bytes).as_bytes())?;
                tracing::info!(path = %path.display(), "generated a new master key");
                Ok(MasterKey(*Key::<Aes256Gcm>::from_slice(&bytes)))
            }
            Err(e) => Err(Error::Internal(format!("reading {}: {e}", path.display()))),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let bytes = hex::decode(text)
            .ok()
            .filter(|b| b.len() == 32)
            .or_else(|| STANDARD.decode(text).ok().filter(|b| b.len() == 32))?;
        Some(MasterKey(*Key::<Aes256Gcm>::from_slice(&bytes)))
    }

    /// A short public name of the key (16 hex digits of a hash of it): tells which master key
    /// sealed something without saying anything of the key.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"kalpana-master-key-id:");
        h.update(self.0.as_slice());
        hex::encode(&h.finalize()[..8])
    }

    /// The enrolment token of cluster node `node_id` (`kbn_<node id>_<MAC>`): an HMAC of the
    /// node's id under a key derived from the master key, so each node has its own, a token
    /// speaks for its node only, and every daemon sharing the master key accepts it.
    pub fn node_token(&self, node_id: &str) -> String {
        format!(
            "{NODE_TOKEN_PREFIX}{node_id}_{}",
            hex::encode(self.node_mac(node_id))
        )
    }

    /// The node a token is the enrolment token of, if it is one.
    pub fn node_of_token(&self, token: &str) -> Option<String> {
        use hmac::Mac;
        let rest = token.strip_prefix(NODE_TOKEN_PREFIX)?;
        let (node, mac) = rest.rsplit_once('_')?;
        // One spelling of a token: lower-case hex, as issued.
        if !valid_node_id(node) || mac.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mac = hex::decode(mac).ok()?;
        let mut m = self.node_hmac();
        m.update(node.as_bytes());
        m.verify_slice(&mac).ok()?;
        Some(node.to_string())
    }

    fn node_hmac(&self) -> hmac::Hmac<Sha256> {
        use hmac::Mac;
        let mut h = Sha256::new();
        h.update(b"kalpana-node-token-key:");
        h.update(self.0.as_slice());
        let key = h.finalize();
        // An HMAC takes a key of any length.
        <hmac::Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap_or_else(|_| unreachable!())
    }

    fn node_mac(&self, node_id: &str) -> Vec<u8> {
        use hmac::Mac;
        let mut m = self.node_hmac();
        m.update(node_id.as_bytes());
        m.finalize().into_bytes().to_vec()
    }

    /// Encrypts `plain` to base64 of nonce ‖ ciphertext.
    pub fn encrypt(&self, plain: &str) -> Result<String> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let cipher = Aes256Gcm::new(&self.0);
        let mut out = nonce.to_vec();
        out.extend(
            cipher
                .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
                .map_err(|_| Error::Internal("encryption failed".into()))?,
        );
        Ok(STANDARD.encode(out))
    }

    /// Decrypts what [`MasterKey::encrypt`] made.
    pub fn decrypt(&self, sealed: &str) -> Result<String> {
        let bytes = STANDARD
            .decode(sealed)
            .map_err(|_| Error::Internal("sealed secret is not base64".into()))?;
        if bytes.len() < 12 {
            return Err(Error::Internal("sealed secret is too short".into()));
        }
        let (nonce, ct) = bytes.split_at(12);
        let plain = Aes256Gcm::new(&self.0)
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| Error::Internal("secret does not decrypt: wrong master key?".into()))?;
        String::from_utf8(plain).map_err(|_| Error::Internal("secret is not UTF-8".into()))
    }
}

fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Internal(format!("creating {}: {e}", path.display())))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::Internal(format!("writing {}: {e}", path.display())))
}

/// What every node enrolment token starts with.
pub const NODE_TOKEN_PREFIX: &str = "kbn_";

/// Whether `id` can be a Swarm node id (lower-case letters and digits, 1–64).
pub fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A new API token (shown once).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("kb_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a token. Tokens carry 256 random bits, so a plain SHA-256 is enough.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new access key: 20 upper-case alphanumerics, as AWS makes them.
pub fn new_access_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| char::from(ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()]))
        .collect()
}

/// A new secret key: 40 characters of URL-safe base64 (240 random bits).
pub fn new_secret_key() -> String {
    let mut bytes = [0u8; 30];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_round_trips_and_detects_wrong_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = MasterKey::load(None, dir.path()).expect("generated");
        let sealed = key.encrypt("s3cret").expect("encrypt");
        assert!(!sealed.contains("s3cret"));
        assert_eq!(key.decrypt(&sealed).expect("decrypt"), "s3cret");
        let again = MasterKey::load(None, dir.path()).expect("reloaded");
        assert_eq!(again.decrypt(&sealed).expect("same key"), "s3cret");
        let other = MasterKey::load(Some(&"11".repeat(32)), dir.path()).expect("hex key");
        assert!(other.decrypt(&sealed).is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("master.key"))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_node_token_speaks_for_its_node_only_and_under_its_master_key_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = MasterKey::load(Some(&"11".repeat(32)), dir.path()).expect("key");
        let other = MasterKey::load(Some(&"22".repeat(32)), dir.path()).expect("key");
        let t = key.node_token("abc123");
        assert_eq!(key.node_of_token(&t).as_deref(), Some("abc123"));
        assert_eq!(other.node_of_token(&t), None);
        let forged = t.replacen("abc123", "abc124", 1);
        assert_eq!(key.node_of_token(&forged), None);
        for bad in [
            "",
            "kbn_",
            "kbn_abc123",
            "kbn_ABC_00",
            "kb_abc123_00",
            "kbn_a b_00",
        ] {
            assert_eq!(key.node_of_token(bad), None, "{bad}");
        }
        assert_ne!(key.node_token("abc123"), key.node_token("abc124"));
    }

    #[test]
    fn keys_and_tokens_have_their_shapes() {
        assert_eq!(new_access_key().len(), 20);
        assert_eq!(new_secret_key().len(), 40);
        let t = new_token();
        assert!(t.starts_with("kb_"));
        assert_eq!(hash_token(&t).len(), 64);
        assert_ne!(new_token(), t);
    }
}
