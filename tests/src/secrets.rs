//! The secrets the API handed out, remembered so that a daemon log holding one fails its test.

use serde_json::Value;

/// Every token and secret key a test daemon of this process handed out, for the log check.
static HANDED_OUT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Remembers every `token` and `secretKey` in a response body.
pub(crate) fn note_secrets(v: &Value) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("token" | "secretKey", Value::String(s)) if !s.is_empty() => {
                        remember_secret(s)
                    }
                    _ => note_secrets(v),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(note_secrets),
        _ => {}
    }
}

pub(crate) fn remember_secret(s: &str) {
    HANDED_OUT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(s.to_string());
}

/// The secrets of [`HANDED_OUT`] that occur in `log`, shortened to their first 4 characters.
pub fn secrets_in(log: &str) -> Vec<String> {
    HANDED_OUT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|s| log.contains(s.as_str()))
        .map(|s| format!("{}…", &s[..4.min(s.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn secrets_handed_out_are_found_in_a_log() {
        super::note_secrets(&json!({
            "bucket": { "secretKey": "SEKRET-0123456789" },
            "users": [{ "token": "tok-abcdefghij" }],
            "name": "not-a-secret",
        }));
        assert_eq!(
            super::secrets_in("a line with SEKRET-0123456789 in it").len(),
            1
        );
        assert_eq!(super::secrets_in("Bearer tok-abcdefghij").len(), 1);
        assert!(super::secrets_in("not-a-secret and nothing else").is_empty());
    }
}
