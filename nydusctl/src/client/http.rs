//! A small blocking client for nydusd's admin API: HTTP/1.1 over the unix
//! socket, one connection per call, on a throwaway current-thread runtime.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub struct DaemonClient {
    sock: PathBuf,
}

/// Percent-encodes a query value (all but unreserved characters and `/`).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/api/<path>?k=v&...` with the values encoded.
pub fn uri(path: &str, query: &[(&str, &str)]) -> String {
    let mut s = format!("/api/{path}");
    for (i, (k, v)) in query.iter().enumerate() {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(k);
        s.push('=');
        s.push_str(&encode(v));
    }
    s
}

impl DaemonClient {
    pub fn new(sock: &Path) -> Self {
        DaemonClient {
            sock: sock.to_path_buf(),
        }
    }

    /// `GET`: the JSON body (`Null` for 204).
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        self.call(Method::GET, &uri(path, query), None)
    }

    pub fn put(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<Value, String> {
        self.call(Method::PUT, &uri(path, query), body)
    }

    pub fn post(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<Value, String> {
        self.call(Method::POST, &uri(path, query), body)
    }

    pub fn delete(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        self.call(Method::DELETE, &uri(path, query), None)
    }

    /// One request. A 4xx/5xx answer becomes `Request failed. <body>`, as
    /// upstream nydusctl prints it.
    fn call(&self, method: Method, uri: &str, body: Option<String>) -> Result<Value, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the I/O runtime: {e}"))?;
        let (status, bytes) = rt.block_on(self.send(method, uri, body))?;
        let text = String::from_utf8_lossy(&bytes);
        let parsed = if bytes.is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_slice::<Value>(&bytes)
        };
        if status >= 400 {
            let shown = match &parsed {
                Ok(v) => v.to_string(),
                Err(_) => text.trim().to_string(),
            };
            return Err(format!("Request failed. {shown}"));
        }
        parsed.map_err(|e| {
            format!("daemon answered HTTP {status} with a body that is not JSON ({e})")
        })
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        body: Option<String>,
    ) -> Result<(u16, Bytes), String> {
        let sock = self.sock.display();
        let stream = tokio::net::UnixStream::connect(&self.sock)
            .await
            .map_err(|e| format!("connecting to the API socket {sock}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("{sock}: {e}"))?;
        // The connection future drives the socket; it ends with the call.
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::USER_AGENT, "nydusctl");
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("building the request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("{sock}: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{sock}: reading the reply: {e}"))?
            .to_bytes();
        Ok((status, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_encodes_query_values() {
        assert_eq!(uri("v1/daemon", &[]), "/api/v1/daemon");
        assert_eq!(
            uri("v1/mount", &[("mountpoint", "/a b&c=d")]),
            "/api/v1/mount?mountpoint=/a%20b%26c%3Dd"
        );
        assert_eq!(
            uri("v1/metrics", &[("id", "/x"), ("latest", "true")]),
            "/api/v1/metrics?id=/x&latest=true"
        );
    }
}
