//! The snapshot archive format. Format 2 is *sealed*: whoever can read the bucket an archive is
//! stored in learns nothing from it (an archive is the engine's whole data directory, with its
//! users' secrets, its internal TLS key and its SSE key-encryption key).
//!
//! Layout: `KALPSNAP` (8 bytes), the format version (one byte, 2), the header's length (u32,
//! big-endian) and the header (JSON: the archive key sealed by the daemon's master key and that
//! key's fingerprint, the chunk size, the nonce prefix, the bucket and the snapshot), then the
//! zstd-compressed tar in chunks of [`CHUNK`] bytes, each sealed with AES-256-GCM as the STREAM
//! construction does: the nonce is the prefix, the chunk's number and a flag on the last chunk,
//! and every chunk authenticates the header's SHA-256. So a chunk cannot be changed, moved,
//! dropped or cut off, and the header cannot be swapped, without the archive failing to open.
//! Format 1 (plain zstd, from before archives were sealed) begins with zstd's magic number.
//!
//! Guarantees: sealing and opening hold one chunk at a time (constant memory). A job is handed
//! the archive's own key ([`SealKey`], [`OpenKey`]), never the master key: the daemon seals and
//! unseals that key (the header says by which master key), so an archive opens with the master
//! key alone, even when the store is lost.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The first bytes of a sealed archive.
pub const MAGIC: &[u8; 8] = b"KALPSNAP";
/// The format this daemon writes.
pub const FORMAT: u8 = 2;
/// Plain bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
/// AES-GCM's tag.
const TAG: usize = 16;
/// Longest header accepted when opening.
pub const MAX_HEADER: usize = 16 * 1024;
/// The cipher suite of format 2.
const ALG: &str = "AES-256-GCM-STREAM";

/// A byte stream as archives flow.
pub type ByteStream = std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// The header of a sealed archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    /// `AES-256-GCM-STREAM`.
    pub alg: String,
    /// Plain bytes per chunk.
    pub chunk: u32,
    /// The first 7 bytes of every chunk's nonce (base64).
    pub nonce_prefix: String,
    /// The archive key, sealed by the daemon's master key.
    pub sealed_key: String,
    /// Which master key sealed it (its fingerprint).
    pub master_key_id: String,
    /// The bucket the snapshot is of.
    pub bucket_id: String,
    /// The snapshot.
    pub snapshot_id: String,
}

/// An archive's own key. `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct ArchiveKey(pub [u8; 32]);

impl std::fmt::Debug for ArchiveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArchiveKey(..)")
    }
}

impl ArchiveKey {
    /// A new random key.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        ArchiveKey(k)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0))
    }
}

/// What sealing one archive needs: its key, and that key sealed by the master key (for the
/// header).
#[derive(Debug, Clone)]
pub struct SealKey {
    /// The archive's key.
    pub key: ArchiveKey,
    /// `key` sealed by the daemon's master key.
    pub sealed_key: String,
    /// The master key's fingerprint.
    pub master_key_id: String,
    /// The bucket the snapshot is of.
    pub bucket_id: String,
    /// The snapshot.
    pub snapshot_id: String,
}

/// How to open an archive.
#[derive(Debug, Clone)]
pub enum OpenKey {
    /// Format 1: plain zstd.
    Plain,
    /// Format 2, with the archive's key (unsealed from its header by the daemon).
    Sealed(ArchiveKey),
}

/// The nonce of chunk `n`: prefix, number, last-chunk flag.
fn nonce(prefix: &[u8; 7], n: u32, last: bool) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..7].copy_from_slice(prefix);
    out[7..11].copy_from_slice(&n.to_be_bytes());
    out[11] = u8::from(last);
    out
}

/// The bytes before the chunks, and the SHA-256 every chunk authenticates.
fn preamble(header: &Header) -> std::io::Result<(Vec<u8>, [u8; 32])> {
    let json = serde_json::to_vec(header).map_err(std::io::Error::other)?;
    let len = u32::try_from(json.len()).map_err(|_| std::io::Error::other("header too long"))?;
    let mut out = Vec::with_capacity(13 + json.len());
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&json);
    let digest = Sha256::digest(&out).into();
    Ok((out, digest))
}

fn seal_chunk(
    cipher: &Aes256Gcm,
    prefix: &[u8; 7],
    n: u32,
    last: bool,
    aad: &[u8; 32],
    plain: &[u8],
) -> std::io::Result<Bytes> {
    cipher
        .encrypt(
            Nonce::from_slice(&nonce(prefix, n, last)),
            Payload { msg: plain, aad },
        )
        .map(Bytes::from)
        .map_err(|_| std::io::Error::other("sealing an archive chunk failed"))
}

/// Seals `plain` (the compressed tar): the header, then every chunk. Holds at most one chunk.
pub fn seal(key: &SealKey, plain: ByteStream) -> ByteStream {
    let mut prefix = [0u8; 7];
    rand::rng().fill_bytes(&mut prefix);
    let header = Header {
        alg: ALG.into(),
        chunk: CHUNK as u32,
        nonce_prefix: STANDARD.encode(prefix),
        sealed_key: key.sealed_key.clone(),
        master_key_id: key.master_key_id.clone(),
        bucket_id: key.bucket_id.clone(),
        snapshot_id: key.snapshot_id.clone(),
    };
    let cipher = key.key.cipher();
    Box::pin(async_stream::try_stream! {
        let (pre, aad) = preamble(&header)?;
        yield Bytes::from(pre);
        let mut plain = plain;
        let mut buf = BytesMut::with_capacity(CHUNK);
        let mut n: u32 = 0;
        while let Some(chunk) = plain.next().await {
            let mut chunk = chunk?;
            while !chunk.is_empty() {
                let take = (CHUNK - buf.len()).min(chunk.len());
                buf.extend_from_slice(&chunk[..take]);
                chunk.advance(take);
                if buf.len() == CHUNK {
                    yield seal_chunk(&cipher, &prefix, n, false, &aad, &buf)?;
                    buf.clear();
                    n = n.checked_add(1).ok_or_else(|| std::io::Error::other("archive too large"))?;
                }
            }
        }
        // The last chunk, possibly empty, carries the flag: a cut archive never opens.
        yield seal_chunk(&cipher, &prefix, n, true, &aad, &buf)?;
    })
}

/// What an archive's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain zstd (format 1).
    Plain,
    /// Sealed (format 2).
    Sealed,
}

/// The format of an archive from its first bytes.
pub fn format_of(first: &[u8]) -> Format {
    if first.starts_with(MAGIC) {
        Format::Sealed
    } else {
        Format::Plain
    }
}

/// The header of a sealed archive from its first bytes (at least up to the header's end; at
/// most 13 + [`MAX_HEADER`] are needed). `None` for a plain archive or too few bytes; an error
/// for a malformed one.
pub fn read_header(first: &[u8]) -> std::io::Result<Option<Header>> {
    if format_of(first) != Format::Sealed || first.len() < 13 {
        return Ok(None);
    }
    if first[8] != FORMAT {
        return Err(damaged(&format!(
            "format {} is not one this daemon reads",
            first[8]
        )));
    }
    let len = u32::from_be_bytes([first[9], first[10], first[11], first[12]]) as usize;
    if len > MAX_HEADER {
        return Err(damaged("its header is too long"));
    }
    if first.len() < 13 + len {
        return Ok(None);
    }
    serde_json::from_slice(&first[13..13 + len])
        .map(Some)
        .map_err(|_| damaged("its header is not readable"))
}

/// Opens an archive with `key`: the compressed tar, chunk by chunk. A sealed archive that is
/// changed, cut, or sealed with another key fails with an I/O error in the stream; nothing it
/// yields before is unauthenticated. A plain archive passes through (zstd refuses what is not
/// one).
pub fn open(key: OpenKey, stored: ByteStream) -> ByteStream {
    Box::pin(async_stream::try_stream! {
        let mut stored = stored;
        let mut buf = BytesMut::new();
        // Enough to tell the formats apart.
        while buf.len() < MAGIC.len() {
            match stored.next().await {
                Some(chunk) => buf.extend_from_slice(&chunk?),
                None => break,
            }
        }
        let cipher = match (&key, format_of(&buf)) {
            (OpenKey::Plain, Format::Plain) => {
                yield buf.split().freeze();
                while let Some(chunk) = stored.next().await {
                    yield chunk?;
                }
                return;
            }
            (OpenKey::Sealed(k), Format::Sealed) => k.cipher(),
            (OpenKey::Plain, Format::Sealed) => Err(damaged("it is sealed, and no key was given"))?,
            (OpenKey::Sealed(_), Format::Plain) => Err(damaged("it is not sealed, though the snapshot says so"))?,
        };
        while buf.len() < 13 {
            match stored.next().await {
                Some(chunk) => buf.extend_from_slice(&chunk?),
                None => Err(damaged("it ends inside its header"))?,
            }
        }
        if buf[8] != FORMAT {
            Err(damaged(&format!("format {} is not one this daemon reads", buf[8])))?;
        }
        let len = u32::from_be_bytes([buf[9], buf[10], buf[11], buf[12]]) as usize;
        if len > MAX_HEADER {
            Err(damaged("its header is too long"))?;
        }
        while buf.len() < 13 + len {
            match stored.next().await {
                Some(chunk) => buf.extend_from_slice(&chunk?),
                None => Err(damaged("it ends inside its header"))?,
            }
        }
        let pre = buf.split_to(13 + len);
        let aad: [u8; 32] = Sha256::digest(&pre).into();
        let header: Header = serde_json::from_slice(&pre[13..])
            .map_err(|_| damaged("its header is not readable"))?;
        let prefix = STANDARD
            .decode(&header.nonce_prefix)
            .ok()
            .and_then(|p| <[u8; 7]>::try_from(p).ok())
            .ok_or_else(|| damaged("its nonce prefix is malformed"))?;
        if header.alg != ALG || header.chunk == 0 || header.chunk as usize > 1 << 24 {
            Err(damaged(&format!("it uses {} in chunks of {}: not a layout this daemon reads", header.alg, header.chunk)))?;
        }
        let sealed_chunk = header.chunk as usize + TAG;
        let mut n: u32 = 0;
        let mut ended = false;
        loop {
            // A chunk is known not to be the last only once a byte after it has arrived.
            while !ended && buf.len() <= sealed_chunk {
                match stored.next().await {
                    Some(chunk) => buf.extend_from_slice(&chunk?),
                    None => ended = true,
                }
            }
            let last = buf.len() <= sealed_chunk;
            if last && buf.len() < TAG {
                Err(damaged("it was cut short"))?;
            }
            let take = if last { buf.len() } else { sealed_chunk };
            let sealed = buf.split_to(take);
            let plain = cipher
                .decrypt(
                    Nonce::from_slice(&nonce(&prefix, n, last)),
                    Payload { msg: &sealed, aad: &aad },
                )
                .map_err(|_| damaged("a chunk does not authenticate: it was changed, cut or sealed with another key"))?;
            if !plain.is_empty() {
                yield Bytes::from(plain);
            }
            if last {
                break;
            }
            n = n.checked_add(1).ok_or_else(|| damaged("too many chunks"))?;
        }
    })
}

fn damaged(why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("the sealed archive does not open: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// zstd's frame magic number: archives of format 1 begin with it.
    const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

    fn seal_key(key: ArchiveKey) -> SealKey {
        SealKey {
            key,
            sealed_key: "sealed-by-master".into(),
            master_key_id: "0011223344556677".into(),
            bucket_id: "b".into(),
            snapshot_id: "s".into(),
        }
    }

    fn stream_of(parts: Vec<Vec<u8>>) -> ByteStream {
        Box::pin(futures::stream::iter(
            parts.into_iter().map(|p| Ok(Bytes::from(p))),
        ))
    }

    async fn collect(s: ByteStream) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn sealed_archives_round_trip_at_every_size() {
        let key = ArchiveKey([0x11; 32]);
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
            let plain = data(len);
            // Odd input pieces, so chunking does not follow them.
            let parts: Vec<Vec<u8>> = plain.chunks(7_001).map(<[u8]>::to_vec).collect();
            let sealed = collect(seal(&seal_key(key.clone()), stream_of(parts)))
                .await
                .expect("sealed");
            assert!(sealed.starts_with(MAGIC));
            assert_eq!(format_of(&sealed), Format::Sealed);
            let header = read_header(&sealed).expect("readable").expect("a header");
            assert_eq!(header.sealed_key, "sealed-by-master");
            if len > 64 {
                let needle = &plain[len / 2..len / 2 + 32];
                assert!(
                    !sealed.windows(32).any(|w| w == needle),
                    "plain bytes show through"
                );
            }
            // Read back in pieces of another size.
            let pieces: Vec<Vec<u8>> = sealed.chunks(4_099).map(<[u8]>::to_vec).collect();
            let opened = collect(open(OpenKey::Sealed(key.clone()), stream_of(pieces)))
                .await
                .expect("opens");
            assert_eq!(opened, plain, "len {len}");
        }
    }

    #[tokio::test]
    async fn changed_cut_or_foreign_archives_do_not_open() {
        let key = ArchiveKey([0x22; 32]);
        let plain = data(2 * CHUNK + 5);
        let sealed = collect(seal(&seal_key(key.clone()), stream_of(vec![plain])))
            .await
            .expect("sealed");
        let fails = |bytes: Vec<u8>, k: ArchiveKey| async move {
            collect(open(OpenKey::Sealed(k), stream_of(vec![bytes])))
                .await
                .is_err()
        };
        let mut flipped = sealed.clone();
        let at = flipped.len() - 100;
        flipped[at] ^= 1;
        assert!(fails(flipped, key.clone()).await, "a changed byte");
        // Cut at a chunk boundary: what is left still ends in a whole chunk, but not the last.
        let header_len = sealed.len() - (2 * (CHUNK + TAG) + 5 + TAG);
        let cut = sealed[..header_len + 2 * (CHUNK + TAG)].to_vec();
        assert!(fails(cut, key.clone()).await, "cut after two chunks");
        assert!(
            fails(sealed[..sealed.len() - 1].to_vec(), key.clone()).await,
            "cut by one byte"
        );
        let mut swapped = sealed.clone();
        let a = header_len;
        let chunk_a = swapped[a..a + CHUNK + TAG].to_vec();
        let chunk_b = swapped[a + CHUNK + TAG..a + 2 * (CHUNK + TAG)].to_vec();
        swapped[a..a + CHUNK + TAG].copy_from_slice(&chunk_b);
        swapped[a + CHUNK + TAG..a + 2 * (CHUNK + TAG)].copy_from_slice(&chunk_a);
        assert!(fails(swapped, key.clone()).await, "chunks swapped");
        assert!(
            fails(sealed.clone(), ArchiveKey([0x33; 32])).await,
            "another key"
        );
        // The header names the snapshot: another header is another AAD.
        let text = String::from_utf8_lossy(&sealed[13..header_len]).replace("\"s\"", "\"t\"");
        let mut relabelled = sealed[..13].to_vec();
        relabelled.extend_from_slice(text.as_bytes());
        relabelled.extend_from_slice(&sealed[header_len..]);
        assert!(fails(relabelled, key.clone()).await, "header changed");
        // A sealed archive with no key, a plain one where a sealed one is expected.
        assert!(collect(open(OpenKey::Plain, stream_of(vec![sealed])))
            .await
            .is_err());
        let zstd = [ZSTD_MAGIC.to_vec(), data(10)].concat();
        assert!(fails(zstd, key).await);
    }

    #[tokio::test]
    async fn plain_archives_of_format_1_pass_through() {
        let zstd = [ZSTD_MAGIC.to_vec(), data(1000)].concat();
        let opened = collect(open(
            OpenKey::Plain,
            stream_of(vec![zstd[..3].to_vec(), zstd[3..].to_vec()]),
        ))
        .await
        .expect("plain");
        assert_eq!(opened, zstd);
        assert_eq!(format_of(&zstd), Format::Plain);
        assert_eq!(read_header(&zstd).expect("plain"), None);
    }
}
