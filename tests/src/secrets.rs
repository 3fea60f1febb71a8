//! "No secret in any log, metric or API reply": everything a backend test
//! produced that an operator can see is collected into an [`Exposed`] and
//! grepped for the passwords, tokens, keys and `auth` strings it used.

use std::path::Path;

use crate::mount::Nydusd;

/// Standard base64 (with padding) of `s`: the form of registry `auth`.
pub fn b64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in s.as_bytes().chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What must never show for registry credentials `user:pass`: the
/// password, and the base64 `auth` string.
pub fn credential_secrets(user_pass: &str) -> Vec<String> {
    let pass = user_pass.split_once(':').map_or(user_pass, |(_, p)| p);
    vec![pass.to_string(), b64(user_pass)]
}

/// Panics (naming `what` and which secret, never printing it) if `text`
/// contains any of `secrets`.
pub fn assert_no_secrets<S: AsRef<str>>(text: &str, what: &str, secrets: &[S]) {
    for (i, s) in secrets.iter().enumerate() {
        let s = s.as_ref();
        assert!(!s.is_empty(), "secret #{i} is empty: nothing to look for");
        if let Some(at) = text.find(s) {
            let start = text[..at].rfind('\n').map_or(0, |n| n + 1);
            panic!(
                "{what} contains secret #{i} ({} bytes) at byte {at}, in the line starting: {:?}",
                s.len(),
                text[start..at].chars().take(120).collect::<String>()
            );
        }
    }
}

/// API calls whose replies are checked: daemon info, every metrics set,
/// the stored config values.
const API_PATHS: &[&str] = &[
    "/api/v1/daemon",
    "/api/v2/daemon",
    "/api/v1/daemon/events",
    "/api/v1/daemon/backend?mountpoint=/",
    "/api/v1/metrics",
    "/api/v1/metrics/files",
    "/api/v1/metrics/pattern",
    "/api/v1/metrics/backend",
    "/api/v1/metrics/blobcache",
    "/api/v1/metrics/inflight",
    "/api/v1/config",
    "/api/v1/config?id=/",
];

/// Texts a test exposed, each with where it came from.
#[derive(Default)]
pub struct Exposed {
    parts: Vec<(String, String)>,
}

impl Exposed {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.parts.push((what.into(), text.into()));
    }

    /// The daemon's whole log, and every read-only API reply (status and
    /// body) from `sock`.
    pub fn daemon(&mut self, what: &str, d: &Nydusd, sock: &Path) {
        for path in API_PATHS {
            let r = crate::api::call(sock, "GET", path, None);
            self.add(
                format!("{what}: GET {path}"),
                format!("{} {}", r.status, r.body),
            );
        }
        let log = String::from_utf8_lossy(&std::fs::read(&d.log).unwrap_or_default()).into_owned();
        assert!(!log.is_empty(), "{what}: the daemon log is empty");
        self.add(format!("{what}: nydusd log"), log);
    }

    /// A file (a server log, say), if it exists.
    pub fn file(&mut self, what: &str, path: &Path) {
        if let Ok(b) = std::fs::read(path) {
            self.add(what, String::from_utf8_lossy(&b).into_owned());
        }
    }

    /// Panics if anything collected contains one of `secrets`.
    pub fn assert_none<S: AsRef<str>>(&self, secrets: &[S]) {
        assert!(!self.parts.is_empty(), "nothing was collected to check");
        for (what, text) in &self.parts {
            assert_no_secrets(text, what, secrets);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_detection() {
        assert_eq!(b64("u:p"), "dTpw");
        assert_eq!(b64("ab"), "YWI=");
        assert_eq!(
            credential_secrets("bob:hunter2"),
            ["hunter2", "Ym9iOmh1bnRlcjI="]
        );
        assert_no_secrets("nothing here", "t", &["hunter2"]);
        let r = std::panic::catch_unwind(|| assert_no_secrets("x\npw=hunter2", "t", &["hunter2"]));
        let msg = r
            .err()
            .and_then(|e| e.downcast::<String>().ok())
            .expect("a leak must fail");
        assert!(msg.contains("\"pw=\"") && !msg.contains("hunter2"), "{msg}");
    }
}
