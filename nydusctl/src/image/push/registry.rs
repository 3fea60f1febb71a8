//! A minimal client of the OCI distribution API for pushing: blob HEAD,
//! monolithic upload (POST, then PUT of the streamed body), manifest PUT,
//! and the 401 → `WWW-Authenticate` flow for Basic and Bearer tokens.
//! The password lives only in the `Authorization` value (marked sensitive)
//! and is never formatted into a message.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::blocking::{Body, Client, RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};

use super::reference::Reference;

pub struct Credentials {
    pub user: String,
    pub password: String,
}

pub struct Tls {
    pub cacert: Option<PathBuf>,
    pub skip_verify: bool,
}

/// What an upload sends: a file streamed from disk, or bytes made here.
pub enum Source {
    File(PathBuf),
    Bytes(Vec<u8>),
}

pub struct Registry {
    client: Client,
    base: String,
    repo: String,
    creds: Option<Credentials>,
    auth: Option<HeaderValue>,
    /// Credentials were sent: another 401 means they are wrong.
    authed: bool,
    /// When the current Bearer token was fetched.
    token_at: Option<Instant>,
}

/// One line for a transport error, with its causes (reqwest's own
/// message is often just "error sending request").
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text = format!("{text}: {s}");
        }
        cause = c.source();
    }
    text
}

impl Registry {
    pub fn new(r: &Reference, creds: Option<Credentials>, tls: &Tls) -> Result<Registry, String> {
        // reqwest comes without a TLS crypto provider (see nydusd's http
        // conn); Err only says one is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // No overall timeout: a large blob may take long; a dead peer is
        // caught by the connect timeout and TCP keepalive.
        let mut b = Client::builder()
            .user_agent(concat!("nydusctl/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .tcp_keepalive(Duration::from_secs(30))
            .timeout(None)
            .no_proxy();
        if tls.skip_verify {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        if let Some(path) = &tls.cacert {
            let pem =
                std::fs::read(path).map_err(|e| format!("--cacert {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("--cacert {}: {}", path.display(), describe(&e)))?;
            if certs.is_empty() {
                return Err(format!(
                    "--cacert {}: no PEM certificate in it",
                    path.display()
                ));
            }
            b = b.tls_certs_merge(certs);
        }
        let client = b
            .build()
            .map_err(|e| format!("HTTP client: {}", describe(&e)))?;
        Ok(Registry {
            client,
            base: r.base(),
            repo: r.repo.clone(),
            creds,
            auth: None,
            authed: false,
            token_at: None,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repo)
    }

    fn unreachable(&self, e: reqwest::Error) -> String {
        let text = describe(&e.without_url());
        let hint = if text.contains("certificate") {
            " (trust its CA with --cacert FILE, or --insecure-skip-verify)"
        } else {
            ""
        };
        format!("cannot reach registry {}: {text}{hint}", self.base)
    }

    /// Sends the request `make` builds, authenticating once on a 401.
    fn send(
        &mut self,
        make: &dyn Fn(&Client) -> Result<RequestBuilder, String>,
    ) -> Result<Response, String> {
        loop {
            let mut req = make(&self.client)?;
            if let Some(a) = &self.auth {
                req = req.header(AUTHORIZATION, a.clone());
            }
            let resp = req.send().map_err(|e| self.unreachable(e))?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            // A Bearer token may expire during a long push: fetch a new
            // one, but a fresh token refused means the credentials are.
            let stale = self
                .token_at
                .is_some_and(|t| t.elapsed() > Duration::from_secs(30));
            if self.authed && !stale {
                // Without credentials we only had an anonymous token.
                return Err(match self.creds {
                    Some(_) => self.refused(),
                    None => self.needs_credentials(),
                });
            }
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            self.authenticate(&challenge)?;
            self.authed = true;
        }
    }

    fn refused(&self) -> String {
        format!("registry refused credentials for {}", self.repo)
    }

    fn needs_credentials(&self) -> String {
        format!(
            "registry requires credentials for {}: pass --user with the password on \
             --password-stdin or in NYDUS_REGISTRY_PASSWORD",
            self.repo
        )
    }

    fn basic(&self) -> Result<HeaderValue, String> {
        let Some(c) = &self.creds else {
            return Err(self.needs_credentials());
        };
        let raw = format!("{}:{}", c.user, c.password);
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        let mut v = HeaderValue::from_str(&format!("Basic {encoded}"))
            .map_err(|_| "--user: not a valid HTTP header value".to_string())?;
        v.set_sensitive(true);
        Ok(v)
    }

    fn authenticate(&mut self, challenge: &str) -> Result<(), String> {
        let (scheme, params) = nydus_protocol::www_authenticate::parse(challenge);
        match scheme.as_str() {
            "basic" => {
                self.auth = Some(self.basic()?);
                Ok(())
            }
            "bearer" => self.fetch_token(&params),
            _ => Err(format!(
                "registry answered 401 for {} with no usable WWW-Authenticate challenge",
                self.repo
            )),
        }
    }

    fn fetch_token(&mut self, params: &[(String, String)]) -> Result<(), String> {
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let realm = get("realm").ok_or("registry's Bearer challenge has no realm")?;
        let mut url = Url::parse(realm)
            .map_err(|_| format!("registry's Bearer realm {realm:?} is not a URL"))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = get("service") {
                q.append_pair("service", s);
            }
            q.append_pair("scope", &format!("repository:{}:pull,push", self.repo));
        }
        let mut req = self.client.get(url);
        if self.creds.is_some() {
            req = req.header(AUTHORIZATION, self.basic()?);
        }
        let resp = req.send().map_err(|e| {
            format!(
                "cannot reach token server {realm}: {}",
                describe(&e.without_url())
            )
        })?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if self.creds.is_some() => {
                return Err(self.refused())
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(self.needs_credentials())
            }
            s => return Err(format!("token server {realm} answered {s}")),
        }
        let text = resp
            .text()
            .map_err(|e| format!("token server {realm}: {}", describe(&e)))?;
        let body: serde_json::Value = serde_json::from_str(&text)
            .map_err(|_| format!("token server {realm}: reply is not JSON"))?;
        let token = body["token"]
            .as_str()
            .or(body["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("token server {realm}: reply has no token"))?;
        let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| format!("token server {realm}: token is not a valid header value"))?;
        v.set_sensitive(true);
        self.auth = Some(v);
        self.token_at = Some(Instant::now());
        Ok(())
    }

    /// Whether the registry already has blob `digest` in the repository.
    pub fn has_blob(&mut self, digest: &str) -> Result<bool, String> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send(&|c| Ok(c.head(&url)))?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(self.unexpected("HEAD", &url, s, resp)),
        }
    }

    /// Uploads `source` as blob `digest`: POST for an upload session, then
    /// one PUT of the whole body (streamed from disk for files).
    pub fn upload(&mut self, digest: &str, source: &Source) -> Result<(), String> {
        let start = self.url("blobs/uploads/");
        let resp = self.send(&|c| Ok(c.post(&start)))?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.unexpected("POST", &start, resp.status(), resp));
        }
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("POST {start}: registry gave no upload Location"))?;
        let mut url = Url::parse(&self.base)
            .and_then(|b| b.join(location))
            .map_err(|_| format!("POST {start}: bad upload Location {location:?}"))?;
        url.query_pairs_mut().append_pair("digest", digest);
        let resp = self.send(&|c| {
            let body = match source {
                Source::File(path) => Body::from(
                    std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?,
                ),
                Source::Bytes(b) => Body::from(b.clone()),
            };
            Ok(c.put(url.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(body))
        })?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.unexpected("PUT", &format!("blob {digest}"), resp.status(), resp));
        }
        Ok(())
    }

    /// PUTs the manifest under `tag`.
    pub fn put_manifest(&mut self, tag: &str, media_type: &str, body: &[u8]) -> Result<(), String> {
        let url = self.url(&format!("manifests/{tag}"));
        let resp = self.send(&|c| {
            Ok(c.put(&url)
                .header(CONTENT_TYPE, media_type)
                .body(body.to_vec()))
        })?;
        if !resp.status().is_success() {
            return Err(self.unexpected("PUT", &url, resp.status(), resp));
        }
        Ok(())
    }

    /// One line for a status we did not expect, with the registry's own
    /// error code when it sent one.
    fn unexpected(&self, method: &str, what: &str, status: StatusCode, resp: Response) -> String {
        if status == StatusCode::FORBIDDEN {
            return format!("registry denied access to {} (403)", self.repo);
        }
        let text = resp.text().unwrap_or_default();
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                let e = &v["errors"][0];
                Some(format!(
                    ": {} {}",
                    e["code"].as_str()?,
                    e["message"].as_str().unwrap_or("")
                ))
            })
            .unwrap_or_default();
        format!("{method} {what}: registry answered {status}{detail}")
    }
}
