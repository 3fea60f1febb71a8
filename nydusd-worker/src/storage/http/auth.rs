//! Registry credentials (reference §4.3): the cached `Authorization`
//! value, the 401 + `WWW-Authenticate` flow for Basic and Bearer, token
//! fetches, renewal of an expiring token when a request needs it (no
//! background thread), and new credentials at run time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use nydus_protocol::config::Secret;
use reqwest::blocking::Response;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, Url};

use super::conn::{Conn, Req};
use super::metrics::Counters;
use super::range::Bad;

/// A token this close to expiry is renewed before it is used...
const RENEW_MARGIN: Duration = Duration::from_secs(20);
/// Token lifetime when the server does not say (upstream's default).
const DEFAULT_TTL: u64 = 600;
const MAX_TTL: u64 = 7 * 24 * 3600;

/// ...or after 3/4 of its life when it lives less than 4 margins: a
/// token shorter-lived than the margin would otherwise be renewed before
/// every single request.
fn renew_after(ttl: Duration) -> Duration {
    ttl - RENEW_MARGIN.min(ttl / 4)
}

/// After the `n`-th failed renewal in a row the next try waits 5 s, 10 s,
/// ... up to 10 min (like upstream), so a dead token server costs one
/// try per back-off, not one per request.
fn renew_backoff(n: u32) -> Duration {
    Duration::from_secs((5u64 << n.min(7)).min(600))
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Challenge {
    pub(crate) realm: String,
    pub(crate) service: String,
    pub(crate) scope: String,
}

#[derive(Debug, PartialEq)]
pub(crate) enum Scheme {
    Basic,
    Bearer(Challenge),
}

/// Parses `Basic realm="x"` or `Bearer realm="..",service="..",scope=".."`
/// (values may be quoted and contain commas).
pub(crate) fn parse_challenge(v: &str) -> Option<Scheme> {
    let (scheme, params) = nydus_protocol::www_authenticate::parse(v);
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match scheme.as_str() {
        "basic" => Some(Scheme::Basic),
        "bearer" => Some(Scheme::Bearer(Challenge {
            realm: get("realm").filter(|r| !r.is_empty())?,
            service: get("service").unwrap_or_default(),
            scope: get("scope").unwrap_or_default(),
        })),
        _ => None,
    }
}

struct State {
    /// Bumped whenever `header` changes, so a thread that got a 401 can
    /// tell whether someone already renewed the credentials.
    generation: u64,
    header: Option<Secret>,
    /// The Bearer challenge and renewal time of the current token, if it
    /// is one we fetched (a configured `registry_token` has neither).
    bearer: Option<(Challenge, Instant)>,
    /// Renewals of the current token that failed in a row.
    renew_failures: u32,
    basic_sent: bool,
}

pub(crate) struct RegistryAuth {
    repo: String,
    /// base64 of `user:password`.
    basic: RwLock<Option<Secret>>,
    state: RwLock<State>,
    /// One negotiation at a time: concurrent 401s cost one token fetch.
    negotiating: Mutex<()>,
    /// The token server refused POST; use GET from now on.
    token_get: AtomicBool,
}

fn sensitive(value: &str) -> Result<HeaderValue, Bad> {
    let mut h = HeaderValue::from_str(value).map_err(|_| Bad {
        message: "credentials contain characters not allowed in a header".into(),
        retry: false,
    })?;
    h.set_sensitive(true);
    Ok(h)
}

fn permanent(message: impl Into<String>) -> Bad {
    Bad {
        message: message.into(),
        retry: false,
    }
}

impl RegistryAuth {
    pub(crate) fn new(repo: &str, auth: Option<Secret>, token: Option<Secret>) -> Self {
        RegistryAuth {
            repo: repo.to_string(),
            basic: RwLock::new(auth),
            state: RwLock::new(State {
                generation: 0,
                header: token.map(|t| Secret::new(format!("Bearer {}", t.expose().trim()))),
                bearer: None,
                renew_failures: 0,
                basic_sent: false,
            }),
            negotiating: Mutex::new(()),
            token_get: AtomicBool::new(false),
        }
    }

    /// New credentials (`PUT /api/v1/config` `registry_auth`): the cached
    /// header is dropped, so the next request negotiates with them.
    pub(crate) fn set_auth(&self, auth: Option<Secret>) {
        let _n = self.negotiating.lock().unwrap_or_else(|e| e.into_inner());
        *self.basic.write().unwrap_or_else(|e| e.into_inner()) = auth;
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        st.generation += 1;
        st.header = None;
        st.bearer = None;
        st.renew_failures = 0;
        st.basic_sent = false;
        log::info!("registry credentials replaced");
    }

    /// Adds the current `Authorization` to `req`, renewing a fetched token
    /// that is about to expire. Returns the generation used.
    pub(crate) fn authorize(&self, conn: &Conn, req: &mut Req) -> Result<u64, Bad> {
        let expiring = {
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            match &st.bearer {
                Some((c, renew)) if *renew <= Instant::now() => Some((c.clone(), st.generation)),
                _ => None,
            }
        };
        if let Some((challenge, generation)) = expiring {
            let _n = self.negotiating.lock().unwrap_or_else(|e| e.into_inner());
            // Someone else may have renewed, or failed and set a back-off,
            // while this thread waited for the lock.
            let due = {
                let st = self.state.read().unwrap_or_else(|e| e.into_inner());
                st.generation == generation
                    && st
                        .bearer
                        .as_ref()
                        .is_some_and(|(_, r)| *r <= Instant::now())
            };
            if due {
                // On failure keep the old token: the registry decides with
                // a 401, which starts the full flow.
                match self.fetch_token(conn, &challenge) {
                    Ok((tok, ttl)) => self.store_bearer(&tok, challenge, ttl),
                    Err(e) => self.renewal_failed(&e.message),
                }
            }
        }
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = &st.header {
            req.headers.insert(AUTHORIZATION, sensitive(h.expose())?);
        }
        Ok(st.generation)
    }

    fn store_bearer(&self, token: &Secret, challenge: Challenge, ttl: Duration) {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        if st.renew_failures > 0 {
            log::info!("registry token renewed again");
        }
        st.generation += 1;
        st.header = Some(Secret::new(format!("Bearer {}", token.expose())));
        st.bearer = Some((challenge, Instant::now() + renew_after(ttl)));
        st.renew_failures = 0;
        st.basic_sent = false;
    }

    /// Keeps the current token (the registry decides, with a 401 that
    /// starts the full flow) and tries again after a back-off; said once.
    fn renewal_failed(&self, why: &str) {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        let n = st.renew_failures;
        st.renew_failures = n.saturating_add(1);
        let wait = renew_backoff(n);
        if let Some((_, renew)) = &mut st.bearer {
            *renew = Instant::now() + wait;
        }
        if n == 0 {
            log::warn!("registry token renewal failed: {why}; trying again in {wait:?}");
        } else {
            log::debug!("registry token renewal failed again: {why}; next try in {wait:?}");
        }
    }

    /// The registry answered 401 to a request sent with generation `used`.
    pub(crate) fn unauthorized(&self, conn: &Conn, resp: &Response, used: u64) -> Result<(), Bad> {
        let _n = self.negotiating.lock().unwrap_or_else(|e| e.into_inner());
        let (generation, had_header, had_bearer, basic_sent) = {
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            (
                st.generation,
                st.header.is_some(),
                st.bearer.is_some(),
                st.basic_sent,
            )
        };
        if generation != used {
            return Ok(()); // another thread renewed them meanwhile
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        match challenge {
            // Harbor answers an expired token with a Basic challenge: ask
            // again without credentials to learn the real one.
            Some(Scheme::Basic) if had_bearer => {
                self.replace(None, false);
                Ok(())
            }
            Some(Scheme::Basic) if basic_sent => Err(permanent(
                "registry refused the credentials in `auth` (HTTP 401)",
            )),
            Some(Scheme::Basic) => {
                let basic = self.basic.read().unwrap_or_else(|e| e.into_inner()).clone();
                let Some(b) = basic else {
                    return Err(permanent(
                        "registry requires credentials (Basic) and no `auth` is configured",
                    ));
                };
                self.replace(
                    Some(Secret::new(format!("Basic {}", b.expose().trim()))),
                    true,
                );
                Ok(())
            }
            Some(Scheme::Bearer(c)) => {
                let (tok, ttl) = self.fetch_token(conn, &c)?;
                self.store_bearer(&tok, c, ttl);
                Ok(())
            }
            None if had_header => {
                self.replace(None, false);
                Ok(())
            }
            None => Err(permanent(format!(
                "registry answered HTTP {} without a usable WWW-Authenticate challenge",
                resp.status().as_u16()
            ))),
        }
    }

    fn replace(&self, header: Option<Secret>, basic_sent: bool) {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        st.generation += 1;
        st.header = header;
        st.bearer = None;
        st.renew_failures = 0;
        st.basic_sent = basic_sent;
    }

    /// Gets a token from the challenge's realm: POST form first, GET if the
    /// server does not take POST. Always direct, never through the proxy.
    fn fetch_token(&self, conn: &Conn, c: &Challenge) -> Result<(Secret, Duration), Bad> {
        let scope = if c.scope.is_empty() {
            format!("repository:{}:pull", self.repo)
        } else {
            c.scope.clone()
        };
        let params = [
            ("service", c.service.as_str()),
            ("scope", scope.as_str()),
            ("client_id", "nydus-registry-client"),
        ];
        let mut headers = HeaderMap::new();
        if let Some(b) = &*self.basic.read().unwrap_or_else(|e| e.into_inner()) {
            headers.insert(
                AUTHORIZATION,
                sensitive(&format!("Basic {}", b.expose().trim()))?,
            );
        }
        let realm = Url::parse(&c.realm)
            .map_err(|_| permanent("registry token realm is not a valid URL"))?;
        if !matches!(realm.scheme(), "http" | "https") {
            return Err(permanent("registry token realm is not an http(s) URL"));
        }
        if !self.token_get.load(Ordering::Relaxed) {
            Counters::inc(&conn.metrics.token_requests);
            let form = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish();
            if let Ok(r) = conn.send_form(realm.clone(), headers.clone(), form) {
                if r.status().is_success() {
                    return parse_token(r);
                }
                log::debug!("token POST answered {}; trying GET", r.status());
            }
        }
        let mut url = realm;
        url.query_pairs_mut().extend_pairs(params);
        Counters::inc(&conn.metrics.token_requests);
        let req = Req {
            method: Method::GET,
            url,
            headers,
        };
        let r = conn.send_direct(&req).map_err(|e| Bad {
            message: format!("registry token server: {}", e.message),
            retry: true,
        })?;
        let status = r.status().as_u16();
        match status {
            200..=299 => {
                let tok = parse_token(r)?;
                self.token_get.store(true, Ordering::Relaxed);
                Ok(tok)
            }
            401 | 403 => Err(permanent(format!(
                "registry token server refused the credentials (HTTP {status})"
            ))),
            _ => Err(Bad {
                message: format!("registry token server answered HTTP {status}"),
                retry: status >= 500 || status == 429,
            }),
        }
    }
}

fn parse_token(r: Response) -> Result<(Secret, Duration), Bad> {
    let bad = || Bad {
        message: "registry token server sent no usable token".into(),
        retry: true,
    };
    // Token answers are small; a bound keeps a broken server from making
    // us buffer without limit.
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(r, 1 << 20), &mut body)
        .map_err(|_| bad())?;
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|_| bad())?;
    let tok = v
        .get("token")
        .or_else(|| v.get("access_token"))
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(bad)?;
    let ttl = v
        .get("expires_in")
        .and_then(|t| t.as_u64())
        .filter(|t| *t > 0)
        .unwrap_or(DEFAULT_TTL)
        // Keeps `Instant + ttl` far from overflow whatever the server says.
        .min(MAX_TTL);
    Ok((Secret::new(tok), Duration::from_secs(ttl)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_leaves_short_tokens_most_of_their_life() {
        let s = Duration::from_secs;
        assert_eq!(renew_after(s(300)), s(280));
        assert_eq!(renew_after(s(80)), s(60));
        assert_eq!(renew_after(s(4)), s(3));
        assert_eq!(renew_after(Duration::ZERO), Duration::ZERO);
        assert_eq!(renew_backoff(0), s(5));
        assert_eq!(renew_backoff(1), s(10));
        assert_eq!(renew_backoff(6), s(320));
        assert_eq!(renew_backoff(7), s(600));
        assert_eq!(renew_backoff(u32::MAX), s(600));
    }

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge("Basic realm=\"Registry\""),
            Some(Scheme::Basic)
        );
        let b = parse_challenge(
            "Bearer realm=\"https://a/token\",service=\"reg\",scope=\"repository:x/y:pull,push\"",
        );
        assert_eq!(
            b,
            Some(Scheme::Bearer(Challenge {
                realm: "https://a/token".into(),
                service: "reg".into(),
                scope: "repository:x/y:pull,push".into(),
            }))
        );
        let b = parse_challenge("bearer realm=http://t/x, service=s");
        assert!(matches!(b, Some(Scheme::Bearer(c)) if c.service == "s" && c.scope.is_empty()));
        assert_eq!(parse_challenge("Bearer service=\"s\""), None);
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }
}
