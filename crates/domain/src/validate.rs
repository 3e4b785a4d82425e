//! Input rules: S3 bucket names, object keys and DNS labels.

use crate::error::{Error, Result};

/// Checks a bucket name against the S3 naming rules.
pub fn bucket_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::Invalid(format!(
            "invalid bucket name {name:?}: {why}"
        )))
    };
    if name.len() < 3 || name.len() > 63 {
        return bad("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
    {
        return bad("only lowercase letters, digits, hyphens and dots are allowed");
    }
    let alnum = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !alnum(name.bytes().next()) || !alnum(name.bytes().last()) {
        return bad("must start and end with a letter or digit");
    }
    if name.contains("..") {
        return bad("must not contain two adjacent dots");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("must not be formatted as an IP address");
    }
    if name.starts_with("xn--") || name.starts_with("sthree-") {
        return bad("must not start with a reserved prefix (xn--, sthree-)");
    }
    if name.ends_with("-s3alias") || name.ends_with("--ol-s3") {
        return bad("must not end with a reserved suffix (-s3alias, --ol-s3)");
    }
    Ok(())
}

/// What a key is checked for: a key about to be written must be one the engine stores exactly
/// as given; a key read or deleted may also name a folder marker (`photos/`) that S3 clients make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// Upload (raw, form, presigned).
    Write,
    /// Download, HEAD, metadata, delete.
    Read,
}

/// Prefix the engines keep for multipart uploads in progress (SeaweedFS hides it from listings).
const RESERVED_PREFIX: &str = ".uploads/";

/// Checks an object key against what every engine stores byte for byte: 1 to 1024 bytes of
/// UTF-8; no control characters or backslashes (SeaweedFS turns `\` into `/`); no leading `/`,
/// empty segment (`a//b` becomes `a/b`), `.` or `..` segment; no segment longer than
/// `max_segment` bytes (the engine's file-name limit); not under `.uploads/`; not blank. For writes, no
/// trailing `/` either (the engine would store an empty folder marker instead of the bytes).
pub fn object_key(key: &str, max_segment: usize, usage: KeyUse) -> Result<()> {
    let bad = |why: String| {
        let shown: String = key.chars().take(64).collect();
        Err(Error::Invalid(format!(
            "invalid object key {shown:?}: {why}"
        )))
    };
    if key.is_empty() {
        return bad("must not be empty".into());
    }
    if key.len() > 1024 {
        return bad("must be at most 1024 bytes of UTF-8".into());
    }
    if key.chars().any(char::is_control) {
        return bad("must not contain control characters".into());
    }
    if key.trim().is_empty() {
        // The S3 SDK takes a blank key for a missing one.
        return bad("must contain something other than spaces".into());
    }
    if key.contains('\\') {
        return bad("must not contain a backslash (engines store it as '/')".into());
    }
    if key.starts_with('/') {
        return bad("must not start with '/'".into());
    }
    if key.starts_with(RESERVED_PREFIX) {
        return bad(format!(
            "{RESERVED_PREFIX} is reserved for uploads in progress"
        ));
    }
    let body = match usage {
        KeyUse::Read => key.strip_suffix('/').unwrap_or(key),
        KeyUse::Write if key.ends_with('/') => {
            return bad("must not end with '/' (that names a folder, not an object)".into())
        }
        KeyUse::Write => key,
    };
    for seg in body.split('/') {
        if seg.is_empty() {
            return bad("must not have an empty path segment ('//')".into());
        }
        if seg == "." || seg == ".." {
            return bad("must not have a '.' or '..' path segment".into());
        }
        if seg.len() > max_segment {
            return bad(format!(
                "each '/'-separated segment must be at most {max_segment} bytes"
            ));
        }
    }
    Ok(())
}

/// The longest `sleepAfterSecs` (30 days); 0 means never.
pub const SLEEP_AFTER_MAX: u64 = 30 * 86_400;

/// Checks a `sleepAfterSecs`: 0 (never) or 1 s to 30 days.
pub fn sleep_after(secs: u64) -> Result<u64> {
    if secs > SLEEP_AFTER_MAX {
        return Err(Error::Invalid(format!(
            "sleepAfterSecs must be 0 (never) or at most {SLEEP_AFTER_MAX} (30 days), not {secs}"
        )));
    }
    Ok(secs)
}

/// Checks a quota: a positive, finite number of GB.
pub fn quota(gb: Option<f64>) -> Result<()> {
    match gb {
        Some(q) if !(q.is_finite() && q > 0.0) => Err(Error::Invalid(format!(
            "maxSizeGB must be a positive number of GB, not {q}"
        ))),
        _ => Ok(()),
    }
}

/// Checks a domain name: dot-separated DNS labels, at least two, at most 253 bytes.
pub fn domain_name(name: &str) -> Result<()> {
    let labels: Vec<&str> = name.split('.').collect();
    if name.len() > 253 || labels.len() < 2 || labels.iter().any(|l| dns_label(l).is_err()) {
        return Err(Error::Invalid(format!(
            "invalid domain {name:?}: dot-separated labels of lowercase letters, digits and inner hyphens"
        )));
    }
    Ok(())
}

/// Checks a DNS label (a subdomain part): 1–63 of `a-z0-9-`, not starting or ending with `-`.
pub fn dns_label(label: &str) -> Result<()> {
    let ok = !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid subdomain {label:?}: 1 to 63 lowercase letters, digits or inner hyphens"
        )))
    }
}

/// A DNS label derived from a bucket name (dots become hyphens).
pub fn subdomain_from_name(name: &str) -> String {
    name.replace('.', "-")
}

/// Whether `range` is one byte range (`bytes=a-b`, `bytes=a-` or `bytes=-n`) the S3 server can
/// be given. Anything else is ignored, as RFC 9110 allows, and the whole object is served.
pub fn byte_range(range: &str) -> bool {
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return false;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return false;
    };
    let number = |s: &str| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit());
    match (first.is_empty(), last.is_empty()) {
        (false, true) => number(first),
        (true, false) => number(last),
        (false, false) => {
            number(first) && number(last) && first.parse::<u64>().ok() <= last.parse::<u64>().ok()
        }
        (true, true) => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_ranges_the_server_is_given() {
        for ok in ["bytes=0-99", "bytes=100-", "bytes=-500", "bytes=7-7"] {
            assert!(byte_range(ok), "{ok}");
        }
        for bad in [
            "bytes=9-1",
            "bytes=-",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "c7m5v{.Oi2\tL3,Wgu",
            "bytes=99999999999999999999-",
        ] {
            assert!(!byte_range(bad), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn accepts_valid_names() {
        for n in ["abc", "my-bucket", "my.bucket.1", "a1b", &"a".repeat(63)] {
            assert!(bucket_name(n).is_ok(), "{n} refused");
        }
    }

    #[test]
    fn refuses_invalid_names() {
        for n in [
            "ab",
            &"a".repeat(64),
            "My-Bucket",
            "my_bucket",
            "-abc",
            "abc-",
            ".abc",
            "abc.",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "abc-s3alias",
            "abc--ol-s3",
            "sthree-abc",
            "ab c",
            "ábc",
        ] {
            assert!(bucket_name(n).is_err(), "{n} accepted");
        }
    }

    #[test]
    fn dns_labels() {
        assert!(dns_label("photos-1").is_ok());
        for l in ["", "-a", "a-", "A", "a.b", &"a".repeat(64)] {
            assert!(dns_label(l).is_err(), "{l} accepted");
        }
        assert_eq!(subdomain_from_name("my.bucket"), "my-bucket");
    }

    #[test]
    fn object_keys() {
        let write = |k: &str| object_key(k, 255, KeyUse::Write);
        let read = |k: &str| object_key(k, 255, KeyUse::Read);
        for ok in [
            "a",
            "dir/file.txt",
            "a/.hidden",
            "x..y",
            "ünïcode/ключ",
            "a b",
            " x",
        ] {
            assert!(write(ok).is_ok(), "{ok}");
            assert!(read(ok).is_ok(), "{ok}");
        }
        let long_segment = "k".repeat(256);
        let long_key = "k".repeat(1025);
        let deep = vec!["d".repeat(200); 5].join("/");
        assert!(write(&deep).is_ok(), "1004 bytes in 200-byte segments");
        assert!(write(&"k".repeat(255)).is_ok());
        for bad in [
            "",
            "/abs",
            "a/../b",
            "./a",
            "a/.",
            "..",
            "tab\tkey",
            "nl\n",
            "del\u{7f}",
            "a\\b",
            "x\\..\\y",
            "a//b",
            "trailing/",
            "dirkey/",
            ".uploads/zz",
            " ",
            "  ",
            long_segment.as_str(),
            long_key.as_str(),
        ] {
            assert!(write(bad).is_err(), "{bad:?}");
        }
        // Folder markers can be read and deleted, nothing else of the above.
        assert!(read("trailing/").is_ok());
        assert!(read("a/b/").is_ok());
        for bad in ["a//b", "a\\b", "//", ".uploads/x", long_segment.as_str()] {
            assert!(read(bad).is_err(), "{bad:?}");
        }
        assert!(write(&"é".repeat(127)).is_ok());
        assert!(write(&"é".repeat(128)).is_err(), "256 bytes in one segment");
    }
}
