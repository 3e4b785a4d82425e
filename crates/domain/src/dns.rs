//! A minimal DNS client for one question: the TXT records of a name (RFC 1035 over UDP). It
//! proves control of a domain before the daemon routes any of its hosts.
//!
//! Caveats: UDP only (a truncated answer is read as far as it goes; verification records are a
//! few dozen bytes); one server, the configured one, asked directly with recursion desired.

use std::net::SocketAddr;
use std::time::Duration;

use rand::RngCore;

use crate::error::{Error, Result};

const TYPE_TXT: u16 = 16;
const CLASS_IN: u16 = 1;

/// The TXT strings of `name` (each record's character-strings joined), asked of `server`.
/// A name that does not exist has none; a server that fails or does not answer is an error.
pub async fn txt_records(server: SocketAddr, name: &str, timeout: Duration) -> Result<Vec<String>> {
    let mut id = [0u8; 2];
    rand::rng().fill_bytes(&mut id);
    let id = u16::from_be_bytes(id);
    let query = encode_query(id, name)?;
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let unreachable = |e: String| Error::VerificationFailed(format!("DNS server {server}: {e}"));
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    socket
        .connect(server)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let mut buf = vec![0u8; 4096];
    // One retry: UDP may drop the first datagram.
    for attempt in 0..2 {
        socket
            .send(&query)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + timeout / 2;
        loop {
            match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Ok(Ok(n)) => match decode_txt_answer(id, &buf[..n]) {
                    // An answer to another question (a late reply): keep waiting.
                    Err(Answer::OtherId) => continue,
                    Err(Answer::Failed(why)) => return Err(unreachable(why)),
                    Ok(records) => return Ok(records),
                },
                Ok(Err(e)) => return Err(unreachable(e.to_string())),
                Err(_) if attempt == 0 => break,
                Err(_) => return Err(unreachable("no answer".into())),
            }
        }
    }
    Err(unreachable("no answer".into()))
}

/// Why an answer gave no records.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// Not the answer to our question.
    OtherId,
    /// The server failed, refused, or sent something malformed.
    Failed(String),
}

fn encode_query(id: u16, name: &str) -> Result<Vec<u8>> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // recursion desired
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(Error::Invalid(format!("{name:?} is not a DNS name")));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&TYPE_TXT.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

/// Reads a big-endian u16 at `at`.
fn u16_at(m: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(at)?, *m.get(at + 1)?]))
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(m: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *m.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xC0 == 0xC0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

fn decode_txt_answer(id: u16, m: &[u8]) -> std::result::Result<Vec<String>, Answer> {
    let malformed = || Answer::Failed("malformed answer".into());
    if u16_at(m, 0).ok_or_else(malformed)? != id {
        return Err(Answer::OtherId);
    }
    let flags = u16_at(m, 2).ok_or_else(malformed)?;
    match flags & 0x000F {
        0 => {}
        3 => return Ok(Vec::new()), // NXDOMAIN: the name has no records
        2 => return Err(Answer::Failed("server failure (SERVFAIL)".into())),
        5 => return Err(Answer::Failed("query refused (REFUSED)".into())),
        code => return Err(Answer::Failed(format!("answer code {code}"))),
    }
    let questions = u16_at(m, 4).ok_or_else(malformed)?;
    let answers = u16_at(m, 6).ok_or_else(malformed)?;
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(m, at).ok_or_else(malformed)? + 4;
    }
    let mut records = Vec::new();
    for _ in 0..answers {
        at = skip_name(m, at).ok_or_else(malformed)?;
        let rtype = u16_at(m, at).ok_or_else(malformed)?;
        let rdlen = usize::from(u16_at(m, at + 8).ok_or_else(malformed)?);
        let start = at + 10;
        let rdata = m.get(start..start + rdlen).ok_or_else(malformed)?;
        at = start + rdlen;
        if rtype != TYPE_TXT {
            continue; // a CNAME on the way
        }
        let mut text = Vec::new();
        let mut i = 0;
        while i < rdata.len() {
            let l = usize::from(rdata[i]);
            text.extend_from_slice(rdata.get(i + 1..i + 1 + l).ok_or_else(malformed)?);
            i += 1 + l;
        }
        records.push(String::from_utf8_lossy(&text).into_owned());
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer as a server sends it: the question echoed, then TXT records pointing back at it.
    fn answer(id: u16, rcode: u8, texts: &[&[&str]]) -> Vec<u8> {
        let mut m = encode_query(id, "_kalpana-challenge.example.org").expect("query");
        m[2] = 0x81;
        m[3] = 0x80 | rcode;
        m[6..8].copy_from_slice(&(texts.len() as u16).to_be_bytes());
        for strings in texts {
            m.extend_from_slice(&[0xC0, 12]); // pointer to the question's name
            m.extend_from_slice(&TYPE_TXT.to_be_bytes());
            m.extend_from_slice(&CLASS_IN.to_be_bytes());
            m.extend_from_slice(&60u32.to_be_bytes());
            let rdata: Vec<u8> = strings
                .iter()
                .flat_map(|s| std::iter::once(s.len() as u8).chain(s.bytes()))
                .collect();
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(&rdata);
        }
        m
    }

    #[test]
    fn query_asks_for_txt_with_recursion() {
        let q = encode_query(0xABCD, "a.example.org.").expect("query");
        assert_eq!(&q[..4], &[0xAB, 0xCD, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x01a\x07example\x03org\x00\x00\x10\x00\x01");
        assert!(encode_query(1, "a..b").is_err());
    }

    #[test]
    fn decodes_records_joining_their_strings() {
        let m = answer(7, 0, &[&["tok", "en"], &["other"]]);
        assert_eq!(
            decode_txt_answer(7, &m),
            Ok(vec!["token".to_string(), "other".to_string()])
        );
    }

    #[test]
    fn nxdomain_is_no_records_and_failures_are_errors() {
        assert_eq!(decode_txt_answer(7, &answer(7, 3, &[])), Ok(vec![]));
        assert!(matches!(
            decode_txt_answer(7, &answer(7, 5, &[])),
            Err(Answer::Failed(_))
        ));
        assert_eq!(
            decode_txt_answer(8, &answer(7, 0, &[])),
            Err(Answer::OtherId)
        );
        let mut cut = answer(7, 0, &[&["token"]]);
        cut.truncate(cut.len() - 2);
        assert!(matches!(decode_txt_answer(7, &cut), Err(Answer::Failed(_))));
    }
}
