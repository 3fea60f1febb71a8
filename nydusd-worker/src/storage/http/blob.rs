//! `HttpBackend`: blob reads over HTTP for any origin (registry, OSS, S3):
//! retries with back-off, redirects (several hops, the final location
//! cached per blob), ranged reads checked byte for byte.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use nydus_protocol::config::Secret;
use reqwest::blocking::Response;
use reqwest::header::{HeaderMap, HeaderValue, LOCATION, RANGE};
use reqwest::{Method, Url};

use super::conn::{Conn, Req, SendError};
use super::metrics::{Counters, HttpMetrics};
use super::range::{copy_range, head_size, Bad};
use crate::storage::Backend;

/// Redirect hops followed for one request (upstream follows one; CDNs
/// and P2P gateways chain more).
const MAX_REDIRECTS: usize = 5;
/// Credential negotiations within one attempt (a stale token, then a
/// fresh one) before the credentials are called wrong.
const MAX_AUTH_ROUNDS: usize = 2;
/// Retries of a read at least (upstream since v2.4.3: 1 + 3 on demand).
pub(crate) const MIN_RETRIES: u32 = 3;

/// What differs between origins: where a blob lives and how requests to
/// it are authorized.
pub(crate) trait Origin: Send + Sync {
    fn kind(&self) -> &'static str;

    /// The blob's URL at the origin.
    fn blob_url(&self, blob_id: &str) -> Result<Url, Bad>;

    /// Adds credentials or a signature to a request for the origin.
    /// Returns a token naming the credentials used, for `unauthorized`.
    fn authorize(&self, conn: &Conn, req: &mut Req) -> Result<u64, Bad>;

    /// The origin refused a request (401/403) authorized with `used`.
    /// `Ok` means new credentials are in place: send again.
    fn unauthorized(&self, conn: &Conn, resp: &Response, used: u64) -> Result<(), Bad>;

    /// A redirect target, before it is followed.
    fn redirect(&self, location: Url) -> Url {
        location
    }

    /// A request failed before any answer; `true` means the origin changed
    /// something (registry https → http) and the request should be resent.
    fn transport_error(&self, _e: &SendError) -> bool {
        false
    }

    /// The registry origin, for run-time credential changes.
    fn as_registry(&self) -> Option<&super::registry::Registry> {
        None
    }
}

pub struct HttpBackend {
    origin: Box<dyn Origin>,
    conn: Conn,
    /// Extra attempts of a read after the first.
    retries: u32,
    /// Final redirect location per blob id.
    locations: RwLock<HashMap<String, Url>>,
    /// A permanent failure (credentials, missing blob) was logged; such
    /// failures recur on every read, so they are logged once.
    told: AtomicBool,
}

fn permanent(message: String) -> Bad {
    Bad {
        message,
        retry: false,
    }
}

/// Whether a status is worth another attempt.
fn status_failure(status: u16, what: &str) -> Bad {
    let retry = status >= 500 || status == 408 || status == 429;
    let hint = match status {
        404 => " (no such blob at the origin)",
        _ => "",
    };
    Bad {
        message: format!("{what} answered HTTP {status}{hint}"),
        retry,
    }
}

impl HttpBackend {
    pub(crate) fn new(origin: Box<dyn Origin>, conn: Conn, retry_limit: u8) -> Self {
        HttpBackend {
            origin,
            conn,
            retries: u32::from(retry_limit).max(MIN_RETRIES),
            locations: RwLock::new(HashMap::new()),
            told: AtomicBool::new(false),
        }
    }

    pub(crate) fn origin(&self) -> &dyn Origin {
        &*self.origin
    }

    fn cached_location(&self, blob_id: &str) -> Option<Url> {
        let map = self.locations.read().unwrap_or_else(|e| e.into_inner());
        map.get(blob_id).cloned()
    }

    fn set_location(&self, blob_id: &str, url: Option<Url>) {
        let mut map = self.locations.write().unwrap_or_else(|e| e.into_inner());
        match url {
            Some(u) => map.insert(blob_id.to_string(), u),
            None => map.remove(blob_id),
        };
    }

    /// One request for the blob, through auth and redirects, to the answer
    /// that carries (or refuses) the data.
    fn fetch(
        &self,
        blob_id: &str,
        method: Method,
        headers: HeaderMap,
        direct: bool,
    ) -> Result<Response, Bad> {
        if method == Method::GET {
            if let Some(url) = self.cached_location(blob_id) {
                let req = Req {
                    method: method.clone(),
                    url,
                    headers: headers.clone(),
                };
                match self.conn.send(&req, direct) {
                    Ok(r) if r.status().is_success() => return Ok(r),
                    // Expired presigned URL, moved object, dead CDN node:
                    // forget it and ask the origin again.
                    Ok(r) => log::debug!("cached redirect answered {}", r.status()),
                    Err(e) => log::debug!("cached redirect failed: {}", e.message),
                }
                self.set_location(blob_id, None);
            }
        }
        let (mut rounds, mut resends) = (0, 0);
        loop {
            // Asked each time: a transport error may change the scheme.
            let url = self.origin.blob_url(blob_id)?;
            let mut req = Req {
                method: method.clone(),
                url: url.clone(),
                headers: headers.clone(),
            };
            let used = self.origin.authorize(&self.conn, &mut req)?;
            let resp = match self.conn.send(&req, direct) {
                Ok(r) => r,
                Err(e) if resends < 1 && self.origin.transport_error(&e) => {
                    resends += 1;
                    continue;
                }
                Err(e) => {
                    return Err(Bad {
                        message: e.message,
                        retry: true,
                    })
                }
            };
            let status = resp.status().as_u16();
            if status == 401 || status == 403 {
                if rounds >= MAX_AUTH_ROUNDS {
                    Counters::inc(&self.conn.metrics.auth_failures);
                    return Err(permanent(format!(
                        "{} refused the credentials (HTTP {status})",
                        self.origin.kind()
                    )));
                }
                rounds += 1;
                self.origin.unauthorized(&self.conn, &resp, used)?;
                continue;
            }
            if (300..400).contains(&status) && resp.headers().contains_key(LOCATION) {
                return self.follow(blob_id, resp, url, method, headers, direct);
            }
            return Ok(resp);
        }
    }

    /// Follows redirects from `resp` (without the origin's credentials),
    /// caching the final location of a successful GET.
    fn follow(
        &self,
        blob_id: &str,
        mut resp: Response,
        mut at: Url,
        method: Method,
        headers: HeaderMap,
        direct: bool,
    ) -> Result<Response, Bad> {
        for _ in 0..MAX_REDIRECTS {
            let Some(loc) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) else {
                return Ok(resp);
            };
            let next = at.join(loc).map_err(|_| Bad {
                message: "redirect with an unusable Location".into(),
                retry: true,
            })?;
            let next = self.origin.redirect(next);
            Counters::inc(&self.conn.metrics.redirects);
            let req = Req {
                method: method.clone(),
                url: next.clone(),
                headers: headers.clone(),
            };
            resp = self.conn.send(&req, direct).map_err(|e| Bad {
                message: format!("following a redirect: {}", e.message),
                retry: true,
            })?;
            at = next;
            let status = resp.status().as_u16();
            if !(300..400).contains(&status) {
                if method == Method::GET && resp.status().is_success() {
                    self.set_location(blob_id, Some(at));
                }
                return Ok(resp);
            }
        }
        Err(Bad {
            message: format!("more than {MAX_REDIRECTS} redirects"),
            retry: true,
        })
    }

    /// Runs `f` until it succeeds, fails for good, or the attempts are
    /// used up. `f` gets `true` for the last attempt, which bypasses the
    /// proxy (like upstream's last on-demand retry).
    fn retrying<T>(&self, what: &str, mut f: impl FnMut(bool) -> Result<T, Bad>) -> io::Result<T> {
        let attempts = self.retries + 1;
        let mut last = None;
        for i in 0..attempts {
            if i > 0 {
                Counters::inc(&self.conn.metrics.read_retries);
                // 100 ms, 200 ms, 400 ms, ... up to 2 s: long enough for a
                // restarting server, short enough that EIO comes in seconds.
                let ms = (100u64 << (i - 1).min(5)).min(2000);
                std::thread::sleep(Duration::from_millis(ms));
            }
            match f(i + 1 == attempts) {
                Ok(v) => {
                    self.told.store(false, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(b) => {
                    log::debug!(
                        "{} {what}: attempt {}: {}",
                        self.origin.kind(),
                        i + 1,
                        b.message
                    );
                    let stop = !b.retry;
                    last = Some((b, i + 1));
                    if stop {
                        break;
                    }
                }
            }
        }
        Counters::inc(&self.conn.metrics.read_failures);
        let (b, n) = last.unwrap_or((
            Bad {
                message: "no attempt made".into(),
                retry: false,
            },
            0,
        ));
        let tries = if n == 1 {
            "1 attempt".to_string()
        } else {
            format!("{n} attempts")
        };
        let msg = format!("{} {what}: {} ({tries})", self.origin.kind(), b.message);
        // A failure no retry can fix recurs on every read: said once, with
        // what it means, until a read succeeds again.
        if !b.retry && !self.told.swap(true, Ordering::Relaxed) {
            log::error!("{msg}; reads that need this backend fail with EIO until that is fixed");
        }
        let kind = if b.message.contains("credentials") {
            io::ErrorKind::PermissionDenied
        } else {
            io::ErrorKind::Other
        };
        Err(io::Error::new(kind, msg))
    }
}

impl Backend for HttpBackend {
    fn read_at(&self, blob_id: &str, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let end = offset
            .checked_add(buf.len() as u64 - 1)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset overflows"))?;
        let mut headers = HeaderMap::new();
        let range = HeaderValue::from_str(&format!("bytes={offset}-{end}"))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad range"))?;
        headers.insert(RANGE, range);
        let what = format!("blob {blob_id} range {offset:#x}+{:#x}", buf.len());
        let n = self.retrying(&what, |last| {
            let resp = self.fetch(blob_id, Method::GET, headers.clone(), last)?;
            let status = resp.status().as_u16();
            if !(resp.status().is_success() || status == 416) {
                return Err(status_failure(status, self.origin.kind()));
            }
            copy_range(resp, offset, buf)
        })?;
        self.conn
            .metrics
            .data_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn blob_size(&self, blob_id: &str) -> io::Result<u64> {
        let what = format!("blob {blob_id} size");
        self.retrying(&what, |last| {
            let resp = self.fetch(blob_id, Method::HEAD, HeaderMap::new(), last)?;
            if !resp.status().is_success() {
                return Err(status_failure(resp.status().as_u16(), self.origin.kind()));
            }
            head_size(&resp)
        })
    }

    fn kind(&self) -> &'static str {
        self.origin.kind()
    }

    fn http_metrics(&self) -> Option<HttpMetrics> {
        Some(self.conn.metrics.snapshot(self.conn.proxy_healthy()))
    }

    fn set_auth(&self, auth: Option<Secret>) -> io::Result<()> {
        self.replace_auth(auth)
    }

    fn set_proxy_url(&self, url: &Secret) -> io::Result<()> {
        self.conn.set_proxy_url(url)
    }
}
