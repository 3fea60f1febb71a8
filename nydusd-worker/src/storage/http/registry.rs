//! The OCI registry origin (reference §4.3): blobs at
//! `<scheme>://<host>/v2/<repo>/blobs/sha256:<id>`, registry credentials,
//! redirect rewriting, and the https → http fallback of `skip_verify`.

use std::sync::atomic::{AtomicBool, Ordering};

use nydus_protocol::config::{RegistryConfig, Secret};
use reqwest::blocking::Response;
use reqwest::Url;

use super::auth::RegistryAuth;
use super::blob::Origin;
use super::conn::{Conn, Req, SendError};
use super::range::Bad;

pub(crate) struct Registry {
    /// Switched to false for good by the `skip_verify` fallback.
    https: AtomicBool,
    /// https with `skip_verify`: a failed TLS handshake may fall back to http.
    may_fall_back: bool,
    host: String,
    repo: String,
    blob_url_scheme: String,
    blob_redirected_host: String,
    pub(crate) auth: RegistryAuth,
}

/// A blob id must be a plain name: it becomes part of a URL path.
pub(crate) fn check_id(blob_id: &str) -> Result<&str, Bad> {
    let ok = !blob_id.is_empty()
        && blob_id != "."
        && blob_id != ".."
        && blob_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(blob_id)
    } else {
        Err(Bad {
            message: format!("blob id {blob_id:?} is not a plain name"),
            retry: false,
        })
    }
}

impl Registry {
    pub(crate) fn new(c: &RegistryConfig) -> Self {
        let https = c.scheme != "http";
        let repo = c.repo.trim_matches('/').to_string();
        Registry {
            https: AtomicBool::new(https),
            may_fall_back: https && c.http.skip_verify,
            host: c.host.trim_end_matches('/').to_string(),
            auth: RegistryAuth::new(&repo, c.auth.clone(), c.registry_token.clone()),
            repo,
            blob_url_scheme: c.blob_url_scheme.clone(),
            blob_redirected_host: c.blob_redirected_host.clone(),
        }
    }

    pub(crate) fn set_auth(&self, auth: Option<Secret>) {
        self.auth.set_auth(auth);
    }
}

impl Origin for Registry {
    fn kind(&self) -> &'static str {
        "registry"
    }

    fn blob_url(&self, blob_id: &str) -> Result<Url, Bad> {
        let hex = check_id(blob_id.strip_prefix("sha256:").unwrap_or(blob_id))?;
        let scheme = if self.https.load(Ordering::Relaxed) {
            "https"
        } else {
            "http"
        };
        let text = format!(
            "{scheme}://{}/v2/{}/blobs/sha256:{hex}",
            self.host, self.repo
        );
        Url::parse(&text).map_err(|_| Bad {
            message: "registry `host`/`repo` do not make a valid URL".into(),
            retry: false,
        })
    }

    fn authorize(&self, conn: &Conn, req: &mut Req) -> Result<u64, Bad> {
        self.auth.authorize(conn, req)
    }

    fn unauthorized(&self, conn: &Conn, resp: &Response, used: u64) -> Result<(), Bad> {
        self.auth.unauthorized(conn, resp, used)
    }

    fn redirect(&self, mut location: Url) -> Url {
        if !self.blob_url_scheme.is_empty() && location.set_scheme(&self.blob_url_scheme).is_err() {
            log::debug!("blob_url_scheme cannot replace this redirect's scheme");
        }
        if !self.blob_redirected_host.is_empty() {
            let (host, port) = match self.blob_redirected_host.rsplit_once(':') {
                Some((h, p)) if p.parse::<u16>().is_ok() && !h.is_empty() => {
                    (h, p.parse::<u16>().ok())
                }
                _ => (self.blob_redirected_host.as_str(), None),
            };
            if location.set_host(Some(host)).is_ok() && port.is_some() {
                let _ = location.set_port(port);
            }
        }
        location
    }

    fn as_registry(&self) -> Option<&Registry> {
        Some(self)
    }

    fn transport_error(&self, e: &SendError) -> bool {
        if e.tls && self.may_fall_back && self.https.swap(false, Ordering::Relaxed) {
            log::warn!(
                "registry {}: TLS handshake failed ({}); using http from now on (skip_verify)",
                self.host,
                e.message
            );
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(scheme_host: &str, redirected: &str) -> Registry {
        Registry::new(&RegistryConfig {
            scheme: "https".into(),
            host: "r.example:5000".into(),
            repo: "/lib/img/".into(),
            blob_url_scheme: scheme_host.into(),
            blob_redirected_host: redirected.into(),
            ..Default::default()
        })
    }

    #[test]
    fn urls_and_redirect_rewrites() {
        let r = reg("http", "cdn.internal:8080");
        let id = "a".repeat(64);
        assert_eq!(
            r.blob_url(&id).unwrap().as_str(),
            format!("https://r.example:5000/v2/lib/img/blobs/sha256:{id}")
        );
        assert_eq!(
            r.blob_url(&format!("sha256:{id}")).unwrap(),
            r.blob_url(&id).unwrap()
        );
        assert!(r.blob_url("../x").is_err());
        assert!(r.blob_url("a?b").is_err());
        let loc = Url::parse("https://s3.example/bucket/obj?X-Sig=1").unwrap();
        assert_eq!(
            r.redirect(loc).as_str(),
            "http://cdn.internal:8080/bucket/obj?X-Sig=1"
        );
        let r = reg("", "");
        let loc = Url::parse("https://s3.example/o").unwrap();
        assert_eq!(r.redirect(loc.clone()), loc);
    }
}
