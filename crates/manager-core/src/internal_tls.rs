//! Mutual TLS for an engine's internal gRPC: a certificate authority and one node certificate
//! made for each container when it is created, so that only the engine's own processes can
//! talk to each other. Nothing outside the container holds the keys.
//!
//! Guarantees: the CA key is thrown away once the node certificate is signed; the node key and
//! certificate are written only into the container's data volume (mode 0600 for the key).
//! Caveat: the files stay on the volume (and in snapshots of it); they are replaced whenever the
//! container is recreated.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::{Error, Result};

/// Directory, inside the data volume, that holds the files.
pub const DIR: &str = ".kalpana-tls";
/// File name of the CA certificate.
pub const CA: &str = "ca.pem";
/// File name of the node certificate (server and client).
pub const CERT: &str = "node.pem";
/// File name of the node key.
pub const KEY: &str = "node.key";

/// The PEM files an engine's processes use for mutual TLS among themselves.
pub struct InternalTls {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for InternalTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InternalTls(..)")
    }
}

fn tls_err(e: rcgen::Error) -> Error {
    Error::InvalidConfig(format!("making the engine's internal certificates: {e}"))
}

impl InternalTls {
    /// A new CA and a node certificate for `127.0.0.1`/`localhost`, usable as server and
    /// client, valid for ten years.
    pub fn generate() -> Result<Self> {
        let ca_key = KeyPair::generate().map_err(tls_err)?;
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name = name("kalpana bucket internal CA");
        ca.not_before = rcgen::date_time_ymd(2025, 1, 1);
        ca.not_after = rcgen::date_time_ymd(2035, 1, 1);
        let ca_cert = ca.self_signed(&ca_key).map_err(tls_err)?;
        let issuer = rcgen::Issuer::new(ca, ca_key);

        let node_key = KeyPair::generate().map_err(tls_err)?;
        let mut node = CertificateParams::default();
        node.distinguished_name = name("127.0.0.1");
        node.subject_alt_names = vec![
            SanType::IpAddress([127, 0, 0, 1].into()),
            SanType::DnsName("localhost".try_into().map_err(tls_err)?),
        ];
        node.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        node.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        node.not_before = rcgen::date_time_ymd(2025, 1, 1);
        node.not_after = rcgen::date_time_ymd(2035, 1, 1);
        let node_cert = node.signed_by(&node_key, &issuer).map_err(tls_err)?;
        Ok(InternalTls {
            ca_pem: ca_cert.pem(),
            cert_pem: node_cert.pem(),
            key_pem: node_key.serialize_pem(),
        })
    }

    /// The three files: name, PEM and mode.
    pub fn files(&self) -> [(&'static str, &str, u32); 3] {
        [
            (CA, &self.ca_pem, 0o444),
            (CERT, &self.cert_pem, 0o444),
            (KEY, &self.key_pem, 0o400),
        ]
    }

    /// A tar archive of [`DIR`] with the three files, to extract at the data path.
    pub fn archive(&self) -> Result<Vec<u8>> {
        let io = |e: std::io::Error| Error::InvalidConfig(format!("packing certificates: {e}"));
        let mut tar = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_ustar();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o700);
        dir.set_size(0);
        dir.set_cksum();
        tar.append_data(&mut dir, format!("{DIR}/"), std::io::empty())
            .map_err(io)?;
        for (file, body, mode) in [
            (CA, &self.ca_pem, 0o644),
            (CERT, &self.cert_pem, 0o644),
            (KEY, &self.key_pem, 0o600),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(mode);
            h.set_size(body.len() as u64);
            h.set_cksum();
            tar.append_data(&mut h, format!("{DIR}/{file}"), body.as_bytes())
                .map_err(io)?;
        }
        tar.into_inner().map_err(io)
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_ca_signed_node_certificate_and_a_tar_of_three_files() {
        let tls = InternalTls::generate().expect("generate");
        assert!(tls.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(tls.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(tls.key_pem.contains("PRIVATE KEY"));
        assert_ne!(tls.ca_pem, tls.cert_pem);
        assert_eq!(format!("{tls:?}"), "InternalTls(..)");
        let tar = tls.archive().expect("archive");
        let mut names = Vec::new();
        let mut archive = tar::Archive::new(tar.as_slice());
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            names.push((
                entry.path().expect("path").display().to_string(),
                entry.header().mode().expect("mode"),
            ));
        }
        assert_eq!(
            names,
            vec![
                (format!("{DIR}/"), 0o700),
                (format!("{DIR}/{CA}"), 0o644),
                (format!("{DIR}/{CERT}"), 0o644),
                (format!("{DIR}/{KEY}"), 0o600),
            ]
        );
        let other = InternalTls::generate().expect("generate");
        assert_ne!(other.key_pem, tls.key_pem, "fresh keys every time");
    }
}
