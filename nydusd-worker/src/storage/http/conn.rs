//! The connection layer shared by every network backend: HTTP clients
//! built from the common keys (§3.3), proxy routing with fallback (§4.6),
//! and per-request metrics.

use std::io;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use nydus_protocol::config::{HttpConfig, Secret};
use reqwest::blocking::{Client, ClientBuilder, Response};
use reqwest::header::{HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{Method, Url};

use super::metrics::Counters;
use super::proxy::ProxyHealth;

/// Upstream's user agent; registries and proxies may key on it.
const AGENT: &str = "nydusd/1.0.0";

/// One request as the origin wants it sent.
pub(crate) struct Req {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
}

/// How a request failed before any response.
pub(crate) struct SendError {
    pub(crate) message: String,
    /// A TLS handshake problem (for the registry's https → http fallback).
    pub(crate) tls: bool,
}

pub(crate) struct Conn {
    direct: Client,
    /// Replaced at run time by `proxy_url` (`PUT /api/v1/config`).
    proxy: RwLock<Option<Arc<ProxyRoute>>>,
    /// What a new proxy route is built from.
    cfg: HttpConfig,
    loopback: Vec<String>,
    pub(crate) metrics: Arc<Counters>,
}

struct ProxyRoute {
    client: Client,
    /// Plain client for the pings (never through the proxy).
    ping_client: Client,
    health: Arc<ProxyHealth>,
    fallback: bool,
    use_http: bool,
}

fn secs(s: u32) -> Option<Duration> {
    (s > 0).then(|| Duration::from_secs(s.into()))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// A client with the common settings. `loopback` lists host names that
/// resolve to 127.0.0.1 whatever DNS says (RFC 6761 `.localhost` names,
/// which glibc does not resolve but curl and browsers do).
fn builder(cfg: &HttpConfig, loopback: &[String]) -> io::Result<ClientBuilder> {
    // reqwest comes without a TLS crypto provider: its default, aws-lc,
    // made the program 0.8 MB larger, and a cold start reads all of it from
    // disk. Err only says a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = Client::builder()
        .user_agent(AGENT)
        // Redirects are followed by the backend, which caches the final
        // location per blob and drops registry credentials on the way.
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(16);
    if let Some(t) = secs(cfg.timeout) {
        b = b.timeout(t);
    } else {
        b = b.timeout(None);
    }
    if let Some(t) = secs(cfg.connect_timeout) {
        b = b.connect_timeout(t);
    }
    if cfg.skip_verify {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    for path in &cfg.ca_cert_files {
        let pem = std::fs::read(path)
            .map_err(|e| invalid(format!("ca_cert_files: {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| invalid(format!("ca_cert_files: {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(invalid(format!(
                "ca_cert_files: {}: no PEM certificate in it",
                path.display()
            )));
        }
        b = b.tls_certs_merge(certs);
    }
    for host in loopback {
        b = b.resolve(host, ([127, 0, 0, 1], 0).into());
    }
    Ok(b)
}

fn build(b: ClientBuilder, what: &str) -> io::Result<Client> {
    b.build()
        .map_err(|e| io::Error::other(format!("{what} HTTP client: {}", describe(&e))))
}

impl Conn {
    pub(crate) fn new(cfg: &HttpConfig, loopback: &[String]) -> io::Result<Conn> {
        // The direct path ignores HTTP(S)_PROXY like upstream: the proxy is
        // configured explicitly or not at all.
        let direct = build(builder(cfg, loopback)?.no_proxy(), "direct")?;
        if !cfg.proxy.dragonfly_scheduler_endpoint.is_empty() {
            log::warn!("proxy.dragonfly_scheduler_endpoint is not supported; using proxy.url only");
        }
        let proxy = proxy_route(cfg, loopback, &cfg.proxy.url)?;
        Ok(Conn {
            direct,
            proxy: RwLock::new(proxy),
            cfg: cfg.clone(),
            loopback: loopback.to_vec(),
            metrics: Arc::new(Counters::default()),
        })
    }

    /// A new proxy URL (empty: none) with the other `proxy` keys as
    /// configured, for every later request. The URL may carry
    /// credentials: it is never part of a message.
    pub(crate) fn set_proxy_url(&self, url: &Secret) -> io::Result<()> {
        let route = proxy_route(&self.cfg, &self.loopback, url)?;
        let on = route.is_some();
        *self.proxy.write().unwrap_or_else(|e| e.into_inner()) = route;
        log::info!(
            "proxy {} at run time",
            if on { "replaced" } else { "removed" }
        );
        Ok(())
    }

    fn route(&self) -> Option<Arc<ProxyRoute>> {
        self.proxy.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn proxy_healthy(&self) -> bool {
        self.route().is_none_or(|p| p.health.healthy_now())
    }

    /// Sends `req` by the configured route. The last attempt of a read
    /// bypasses the proxy when `fallback` allows the origin.
    pub(crate) fn send(&self, req: &Req, last_attempt: bool) -> Result<Response, SendError> {
        if let Some(p) = &self.route() {
            if last_attempt && p.fallback {
                return self.send_direct(req);
            }
            if p.health.is_healthy(&p.ping_client, &self.metrics) {
                let mut url = req.url.clone();
                if p.use_http && url.scheme() == "https" {
                    // Infallible for http(s) URLs.
                    let _ = url.set_scheme("http");
                }
                Counters::inc(&self.metrics.proxy_requests);
                match self.once(&p.client, &req.method, url, &req.headers) {
                    Ok(r) if r.status().as_u16() < 500 || !p.fallback => return Ok(r),
                    Ok(r) => log::debug!("proxy answered {}; trying the origin", r.status()),
                    Err(e) => {
                        p.health.failed(&self.metrics);
                        if !p.fallback {
                            return Err(e);
                        }
                        log::debug!("proxy failed ({}); trying the origin", e.message);
                    }
                }
                Counters::inc(&self.metrics.proxy_fallbacks);
            } else if !p.fallback {
                return Err(SendError {
                    message: "proxy is not healthy and fallback is disabled".into(),
                    tls: false,
                });
            }
        }
        self.send_direct(req)
    }

    /// Straight to the origin (token requests never use the proxy).
    pub(crate) fn send_direct(&self, req: &Req) -> Result<Response, SendError> {
        self.once(&self.direct, &req.method, req.url.clone(), &req.headers)
    }

    /// A direct request with a body (registry token POST).
    pub(crate) fn send_form(
        &self,
        url: Url,
        headers: HeaderMap,
        form: String,
    ) -> Result<Response, SendError> {
        let t = Instant::now();
        let r = self
            .direct
            .post(url)
            .headers(headers)
            .header(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(form)
            .send();
        self.finish(t, r)
    }

    fn once(
        &self,
        client: &Client,
        method: &Method,
        url: Url,
        headers: &HeaderMap,
    ) -> Result<Response, SendError> {
        let t = Instant::now();
        let mut h = headers.clone();
        h.entry(USER_AGENT)
            .or_insert(HeaderValue::from_static(AGENT));
        let r = client.request(method.clone(), url).headers(h).send();
        self.finish(t, r)
    }

    fn finish(&self, t: Instant, r: reqwest::Result<Response>) -> Result<Response, SendError> {
        let ok = matches!(&r, Ok(resp) if resp.status().as_u16() < 400);
        self.metrics.request(t.elapsed(), ok);
        r.map_err(|e| SendError {
            tls: is_tls(&e),
            message: describe(&e),
        })
    }
}

/// The proxy route for `url` (none if empty), with `cfg`'s other keys.
fn proxy_route(
    cfg: &HttpConfig,
    loopback: &[String],
    url: &Secret,
) -> io::Result<Option<Arc<ProxyRoute>>> {
    if url.is_empty() {
        return Ok(None);
    }
    let p = &cfg.proxy;
    let url = reqwest::Proxy::all(url.expose())
        .map_err(|_| invalid("proxy.url is not a valid URL".into()))?;
    let client = build(builder(cfg, loopback)?.proxy(url), "proxy")?;
    let mut ping = builder(cfg, loopback)?.no_proxy();
    if let Some(t) = secs(cfg.connect_timeout) {
        ping = ping.timeout(t);
    }
    Ok(Some(Arc::new(ProxyRoute {
        client,
        ping_client: build(ping, "proxy ping")?,
        health: ProxyHealth::new(&p.ping_url, p.check_interval),
        fallback: p.fallback,
        use_http: p.use_http,
    })))
}

/// The error and its causes, without the URL (which may carry a presigned
/// query) — reqwest puts the URL in its own message otherwise.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut out = String::new();
    let mut kind = "request failed";
    if e.is_timeout() {
        kind = "timed out";
    } else if e.is_connect() {
        kind = "connect failed";
    } else if e.is_body() || e.is_decode() {
        kind = "body read failed";
    }
    out.push_str(kind);
    let mut src = std::error::Error::source(e);
    let mut last = String::new();
    while let Some(s) = src {
        let text = s.to_string();
        if text != last && !text.contains("://") {
            out.push_str(": ");
            out.push_str(&text);
        }
        last = text;
        src = s.source();
    }
    out
}

fn is_tls(e: &reqwest::Error) -> bool {
    if !e.is_connect() {
        return false;
    }
    let text = describe(e).to_ascii_lowercase();
    [
        "tls",
        "ssl",
        "corrupt message",
        "wrong version",
        "handshake",
    ]
    .iter()
    .any(|w| text.contains(w))
}
