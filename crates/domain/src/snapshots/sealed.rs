//! The daemon's half of sealed snapshot archives (the format is
//! [`kalpana_manager_core::archive`]): it makes each archive's key and seals it with the master
//! key for the header, and it unseals that key from a header so a job can open the archive.
//! Jobs are handed the archive's own key, never the master key.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use kalpana_manager_core::archive::{self, ArchiveKey, Header, OpenKey, SealKey};

use crate::error::{Error, Result};
use crate::secrets::MasterKey;

pub use kalpana_manager_core::archive::{format_of, ByteStream, Format, FORMAT, MAGIC};

/// Bytes that always hold a sealed archive's header: its preamble and the longest header read.
pub const HEADER_SPAN: usize = 13 + archive::MAX_HEADER;

/// A new key for snapshot `snapshot_id` of bucket `bucket_id`, sealed by `master` for the
/// archive's header.
pub fn seal_key(master: &MasterKey, bucket_id: &str, snapshot_id: &str) -> Result<SealKey> {
    let key = ArchiveKey::generate();
    Ok(SealKey {
        sealed_key: master.encrypt(&hex::encode(key.0))?,
        master_key_id: master.fingerprint(),
        key,
        bucket_id: bucket_id.to_string(),
        snapshot_id: snapshot_id.to_string(),
    })
}

/// How to open the archive whose first bytes are `first` (up to [`HEADER_SPAN`] of them): plain
/// for format 1, its own key unsealed by `master` for format 2. An archive sealed by another
/// master key, or whose header is damaged, is 422.
pub fn open_key(master: &MasterKey, first: &[u8]) -> Result<OpenKey> {
    if format_of(first) == Format::Plain {
        return Ok(OpenKey::Plain);
    }
    let header = archive::read_header(first)
        .map_err(|e| Error::Unprocessable(e.to_string()))?
        .ok_or_else(|| Error::Unprocessable("the sealed archive ends inside its header".into()))?;
    unseal(master, &header).map(OpenKey::Sealed)
}

/// The archive key in `header`, unsealed by `master`.
fn unseal(master: &MasterKey, header: &Header) -> Result<ArchiveKey> {
    if header.master_key_id != master.fingerprint() {
        return Err(Error::Unprocessable(format!(
            "the archive was sealed by another master key ({}; this daemon's is {})",
            header.master_key_id,
            master.fingerprint()
        )));
    }
    hex::decode(master.decrypt(&header.sealed_key)?)
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .map(ArchiveKey)
        .ok_or_else(|| Error::Unprocessable("the archive key does not unseal".into()))
}

/// Opens an archive of either format with the master key alone (for tools and tests that hold
/// the whole stored stream): its header is read from the stream itself.
pub fn open(master: MasterKey, stored: ByteStream) -> ByteStream {
    Box::pin(async_stream::try_stream! {
        let mut stored = stored;
        let mut first = BytesMut::new();
        let key = loop {
            if format_of(&first) == Format::Plain && first.len() >= MAGIC.len() {
                break OpenKey::Plain;
            }
            match archive::read_header(&first) {
                Ok(Some(h)) => break OpenKey::Sealed(unseal(&master, &h).map_err(std::io::Error::other)?),
                Ok(None) => {}
                Err(e) => Err(e)?,
            }
            match stored.next().await {
                Some(chunk) => first.extend_from_slice(&chunk?),
                None => break OpenKey::Plain,
            }
        };
        let head: ByteStream = Box::pin(futures::stream::iter([Ok::<Bytes, std::io::Error>(first.freeze())]));
        let mut opened = archive::open(key, Box::pin(head.chain(stored)));
        while let Some(chunk) = opened.next().await {
            yield chunk?;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(byte: &str) -> MasterKey {
        let dir = tempfile::tempdir().expect("dir");
        MasterKey::load(Some(&byte.repeat(64)), dir.path()).expect("master key")
    }

    async fn collect(mut s: ByteStream) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    fn pieces(bytes: &[u8], size: usize) -> ByteStream {
        let parts: Vec<std::io::Result<Bytes>> = bytes
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures::stream::iter(parts))
    }

    #[tokio::test]
    async fn archives_open_with_the_master_key_alone_and_not_with_another() {
        let m = master("a");
        let plain: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let key = seal_key(&m, "b1", "s1").expect("key");
        let sealed = collect(archive::seal(&key, pieces(&plain, 7_001)))
            .await
            .expect("sealed");
        assert_eq!(
            collect(open(m.clone(), pieces(&sealed, 3)))
                .await
                .expect("opens"),
            plain
        );
        assert!(matches!(
            open_key(&m, &sealed[..HEADER_SPAN.min(sealed.len())]),
            Ok(OpenKey::Sealed(_))
        ));
        let other = master("b");
        assert!(collect(open(other.clone(), pieces(&sealed, 100)))
            .await
            .is_err());
        assert!(matches!(
            open_key(&other, &sealed),
            Err(Error::Unprocessable(_))
        ));
        // Format 1 passes through.
        let zstd = [0x28u8, 0xb5, 0x2f, 0xfd, 1, 2, 3];
        assert_eq!(
            collect(open(m.clone(), pieces(&zstd, 2)))
                .await
                .expect("plain"),
            zstd
        );
        assert!(matches!(open_key(&m, &zstd), Ok(OpenKey::Plain)));
    }
}
