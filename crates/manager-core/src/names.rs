//! Docker object names and ids as Docker itself accepts them, checked before any call: a name
//! goes into the path of a Docker API request, so `../../version?` or `<name>/export?` would
//! otherwise reach other endpoints of the engine.

use crate::error::{Error, Result};

/// Longest name accepted (Docker sets none; container names are host names, volumes are
/// directory names).
const MAX_LEN: usize = 255;

/// Whether `s` follows Docker's grammar for container, volume and network names (and therefore
/// ids, which are hex): `/?[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn is_valid(s: &str) -> bool {
    let s = s.strip_prefix('/').unwrap_or(s);
    let mut chars = s.chars();
    s.len() >= 2
        && s.len() <= MAX_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `s`, or [`Error::InvalidName`] saying what it should have been.
pub fn check<'a>(what: &'static str, s: &'a str) -> Result<&'a str> {
    if is_valid(s) {
        Ok(s)
    } else {
        let shown: String = s.chars().take(64).collect();
        Err(Error::InvalidName {
            what,
            name: if shown.len() < s.len() {
                format!("{shown}…")
            } else {
                shown
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dockers_own_grammar_passes() {
        for ok in [
            "kalpana-bucket-0193ab",
            "/my_dev.box-1",
            "ab",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "../../version?",
            "box/export?",
            "../../events?",
            "a",
            "",
            "-lead",
            ".hidden",
            "a b",
            "a%2Fb",
            "a\nb",
            "é-box",
            "box?x=1",
            "box#",
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
        assert!(!is_valid(&"a".repeat(256)));
        let e = check("container", &"x/".repeat(100)).expect_err("refused");
        assert!(e.to_string().len() < 200, "{e}");
    }
}
