//! Network blob backends: registry, OSS and S3 (reference §4), on one
//! connection layer.
//!
//! * `conn`: reqwest blocking clients from the common keys (timeouts, TLS,
//!   `ca_cert_files`, `skip_verify`), the P2P proxy route with fallback;
//! * `proxy`: proxy health, pinged only while requests happen;
//! * `blob`: `HttpBackend`, the `Backend` every origin shares: retries
//!   with back-off, redirects with the final location cached per blob,
//!   ranged reads checked against what was asked;
//! * `range`: status / Content-Range / length checks of one answer;
//! * `registry` + `auth`: the OCI registry and its Basic/Bearer flows;
//! * `objstore`: OSS V1 and S3 SigV4 signing;
//! * `metrics`: per-backend HTTP counters.
//!
//! Retries: a read is tried `1 + max(retry_limit, 3)` times (upstream
//! since v2.4.3 always tries 4 times and ignores `retry_limit`; a larger
//! `retry_limit` is honoured here), with back-off 100 ms, 200 ms, … 2 s
//! between attempts, and the last attempt bypasses the proxy when
//! `fallback` allows. Credentials refused or a missing blob are not
//! retried. Secrets are never part of a log line, metric or error.

mod auth;
mod blob;
mod conn;
mod metrics;
mod objstore;
mod proxy;
mod range;
mod registry;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::Arc;

use nydus_protocol::config::{BackendConfig, Secret};

pub use blob::HttpBackend;
pub use metrics::HttpMetrics;

use blob::Origin;
use conn::Conn;

/// The backend for a network `backend.type` (registry, oss, s3). Bad
/// settings (an unreadable CA file, a malformed proxy URL) are errors
/// here, before anything is mounted; nothing is sent yet.
pub fn backend_from_config(config: &BackendConfig) -> io::Result<Arc<HttpBackend>> {
    let (origin, http, host): (Box<dyn Origin>, _, Option<String>) = match config {
        BackendConfig::Registry(c) => {
            let host = c.host.rsplit_once(':').map_or(c.host.as_str(), |(h, _)| h);
            (
                Box::new(registry::Registry::new(c)),
                &c.http,
                Some(host.to_string()),
            )
        }
        BackendConfig::Oss(c) => {
            let o = objstore::Oss::new(c);
            let host = o.host();
            (Box::new(o), &c.http, host)
        }
        BackendConfig::S3(c) => {
            let o = objstore::S3::new(c);
            let host = o.host();
            (Box::new(o), &c.http, host)
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "backend type {:?} is not an HTTP backend this nydusd supports",
                    other.type_name()
                ),
            ))
        }
    };
    let loopback: Vec<String> = host
        .into_iter()
        .filter(|h| h.ends_with(".localhost"))
        .collect();
    let conn = Conn::new(http, &loopback)?;
    Ok(Arc::new(HttpBackend::new(origin, conn, http.retry_limit)))
}

impl HttpBackend {
    /// New registry credentials (base64 of `user:password`; `None` for
    /// anonymous) for every later request; cached tokens are dropped.
    /// Fails for backends that have no such credentials.
    pub(crate) fn replace_auth(&self, auth: Option<Secret>) -> io::Result<()> {
        if let Some(a) = &auth {
            check_auth(a.expose())?;
        }
        match self.origin().as_registry() {
            Some(r) => {
                r.set_auth(auth);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "the {} backend has no registry credentials",
                    self.origin().kind()
                ),
            )),
        }
    }
}

/// `auth` must be base64 of `user:password`, like the config checks it.
/// The message never shows the value.
fn check_auth(auth: &str) -> io::Result<()> {
    use base64::Engine as _;
    let ok = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .is_some_and(|t| t.contains(':'));
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "registry auth must be base64 of `user:password`",
        ))
    }
}
