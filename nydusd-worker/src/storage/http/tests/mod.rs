//! Connection-layer cases a real registry cannot produce on demand
//! (truncated bodies, wrong ranges, redirect chains, token renewals),
//! against a small HTTP/1.1 server on 127.0.0.1 that each test scripts;
//! plus known-answer tests of the signing code.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nydus_protocol::config::{BackendConfig, HttpConfig, RegistryConfig, Secret};

use super::objstore::{amz_date, sigv4};
use super::*;
use crate::storage::Backend;

mod auth;

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    auth: Option<String>,
    range: Option<String>,
}

type Handler = dyn Fn(&Seen, usize) -> Vec<u8> + Send + Sync;

/// A scripted server: `handler(request, index)` returns the raw answer.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(handler: impl Fn(&Seen, usize) -> Vec<u8> + Send + Sync + 'static) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, st2) = (seen.clone(), stop.clone());
        let handler: Arc<Handler> = Arc::new(handler);
        let count = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if st2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut c) = conn else { continue };
                let Some(req) = read_request(&c) else {
                    // What a plain HTTP server says to a TLS ClientHello.
                    let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
                    continue;
                };
                s2.lock().unwrap().push(req.clone());
                let i = count.fetch_add(1, Ordering::Relaxed);
                let _ = c.write_all(&handler(&req, i));
            }
        });
        Server { port, seen, stop }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn read_request(c: &TcpStream) -> Option<Seen> {
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut r = BufReader::new(c);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let (mut auth, mut range, mut len) = (None, None, 0usize);
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        match k.to_ascii_lowercase().as_str() {
            "authorization" => auth = Some(v.trim().to_string()),
            "range" => range = Some(v.trim().to_string()),
            "content-length" => len = v.trim().parse().ok()?,
            _ => {}
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Seen { path, auth, range })
}

fn answer(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut out = out.into_bytes();
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

const BLOB: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const ID: &str = "5dfa4fbda603416f93b6f37a5548820ee6962cb3d0f5eb6ac9963b8a574205a7";

/// A 206 for the `Range` asked (`bytes=a-b`) out of `BLOB`.
fn partial(seen: &Seen) -> Vec<u8> {
    let r = seen.range.as_deref().unwrap_or("bytes=0-0");
    let (a, b) = r.trim_start_matches("bytes=").split_once('-').unwrap();
    let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
    let b = b.min(BLOB.len() - 1);
    let cr = format!("bytes {a}-{b}/{}", BLOB.len());
    let cl = (b - a + 1).to_string();
    answer(
        "206 Partial Content",
        &[("Content-Range", cr), ("Content-Length", cl)],
        &BLOB[a..=b],
    )
}

fn registry(port: u16, auth: Option<&str>) -> Arc<HttpBackend> {
    let cfg = BackendConfig::Registry(RegistryConfig {
        scheme: "http".into(),
        host: format!("127.0.0.1:{port}"),
        repo: "lib/img".into(),
        auth: auth.map(Secret::from),
        http: HttpConfig {
            timeout: 3,
            connect_timeout: 1,
            ..Default::default()
        },
        ..Default::default()
    });
    backend_from_config(&cfg).unwrap()
}

#[test]
fn truncated_body_and_wrong_range_are_retried_never_returned() {
    let s = Server::start(|req, i| match i {
        // Promises 10 bytes, sends 4, closes.
        0 => answer(
            "206 Partial Content",
            &[
                ("Content-Range", "bytes 2-11/36".into()),
                ("Content-Length", "10".into()),
            ],
            b"2345",
        ),
        // A range other than the one asked.
        1 => answer(
            "206 Partial Content",
            &[
                ("Content-Range", "bytes 0-9/36".into()),
                ("Content-Length", "10".into()),
            ],
            &BLOB[..10],
        ),
        _ => partial(req),
    });
    let b = registry(s.port, None);
    let mut buf = [0u8; 10];
    assert_eq!(b.read_at(ID, 2, &mut buf).unwrap(), 10);
    assert_eq!(&buf, &BLOB[2..12]);
    let m = b.http_metrics().unwrap();
    assert_eq!(m.read_retries, 2, "{m:?}");
    assert_eq!(m.data_bytes, 10);
    // Short only at the end of the blob; nothing at or past it.
    let mut big = [0u8; 16];
    assert_eq!(b.read_at(ID, 30, &mut big).unwrap(), 6);
    assert_eq!(&big[..6], &BLOB[30..]);
    assert!(s
        .seen()
        .iter()
        .all(|r| r.path.ends_with(&format!("sha256:{ID}"))));
}

#[test]
fn not_found_fails_at_once_and_garbage_fails_after_retries() {
    let s = Server::start(|req, _| {
        if req.path.contains("sha256:0000") {
            answer("404 Not Found", &[("Content-Length", "0".into())], b"")
        } else {
            answer("500 Oops", &[("Content-Length", "0".into())], b"")
        }
    });
    let b = registry(s.port, None);
    let mut buf = [0u8; 4];
    let e = b.read_at(&"0".repeat(64), 0, &mut buf).unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    assert_eq!(s.seen().len(), 1);
    let e = b.read_at(ID, 0, &mut buf).unwrap_err();
    assert!(e.to_string().contains("HTTP 500"), "{e}");
    assert_eq!(s.seen().len(), 1 + 1 + blob::MIN_RETRIES as usize);
    assert!(b.read_at("../../etc", 0, &mut buf).is_err());
}

#[test]
fn redirect_chain_is_followed_without_credentials_and_cached() {
    let s = Server::start(|req, _| {
        if req.path.starts_with("/v2/") {
            if req.auth.is_none() {
                let h = ("WWW-Authenticate", "Basic realm=\"r\"".to_string());
                return answer(
                    "401 Unauthorized",
                    &[h, ("Content-Length", "0".into())],
                    b"",
                );
            }
            let loc = ("Location", "/hop1?sig=abc".to_string());
            return answer("302 Found", &[loc, ("Content-Length", "0".into())], b"");
        }
        if req.path.starts_with("/hop1") {
            let loc = ("Location", "/final/blob?sig=def".to_string());
            return answer(
                "307 Temporary Redirect",
                &[loc, ("Content-Length", "0".into())],
                b"",
            );
        }
        partial(req)
    });
    let b = registry(s.port, Some("dTpw")); // "u:p"
    let mut buf = [0u8; 5];
    assert_eq!(b.read_at(ID, 3, &mut buf).unwrap(), 5);
    assert_eq!(&buf, &BLOB[3..8]);
    assert_eq!(b.read_at(ID, 10, &mut buf).unwrap(), 5);
    assert_eq!(&buf, &BLOB[10..15]);
    let seen = s.seen();
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    // 401, authorized GET, two hops; then straight to the cached location.
    assert_eq!(paths.len(), 5, "{paths:?}");
    assert!(paths[4].starts_with("/final/blob?sig=def"), "{paths:?}");
    assert_eq!(seen[1].auth.as_deref(), Some("Basic dTpw"));
    assert!(seen[2..].iter().all(|r| r.auth.is_none()), "{seen:?}");
    assert!(seen[2..].iter().all(|r| r.range.is_some()), "{seen:?}");
    assert_eq!(b.http_metrics().unwrap().redirects, 2);
}

#[test]
fn wrong_credentials_are_one_permanent_error() {
    let s = Server::start(|_, _| {
        let h = ("WWW-Authenticate", "Basic realm=\"r\"".to_string());
        answer(
            "401 Unauthorized",
            &[h, ("Content-Length", "0".into())],
            b"",
        )
    });
    let b = registry(s.port, Some("dTpw"));
    let mut buf = [0u8; 4];
    let e = b.read_at(ID, 0, &mut buf).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    assert!(!e.to_string().contains("dTpw"), "{e}");
    // No retries of refused credentials: anonymous, then Basic.
    assert_eq!(s.seen().len(), 2);
    let anon = registry(s.port, None);
    let e = anon.read_at(ID, 0, &mut buf).unwrap_err();
    assert!(e.to_string().contains("no `auth` is configured"), "{e}");
}

#[test]
fn skip_verify_falls_back_from_https_to_http() {
    let s = Server::start(|req, _| partial(req));
    let cfg = BackendConfig::Registry(RegistryConfig {
        scheme: "https".into(),
        host: format!("127.0.0.1:{}", s.port),
        repo: "lib/img".into(),
        http: HttpConfig {
            skip_verify: true,
            timeout: 3,
            connect_timeout: 1,
            ..Default::default()
        },
        ..Default::default()
    });
    let b = backend_from_config(&cfg).unwrap();
    let mut buf = [0u8; 3];
    assert_eq!(b.read_at(ID, 1, &mut buf).unwrap(), 3);
    assert_eq!(&buf, &BLOB[1..4]);
    assert_eq!(b.http_metrics().unwrap().read_retries, 0, "{:?}", s.seen());
}

#[test]
fn sigv4_matches_the_aws_example() {
    // The GET Object example of the AWS SigV4 documentation.
    let mut headers = vec![
        (
            "host".to_string(),
            "examplebucket.s3.amazonaws.com".to_string(),
        ),
        ("range".to_string(), "bytes=0-9".to_string()),
        (
            "x-amz-content-sha256".to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_string(),
        ),
        ("x-amz-date".to_string(), "20130524T000000Z".to_string()),
    ];
    let auth = sigv4(
        "GET",
        "/test.txt",
        &mut headers,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "20130524T000000Z",
        "us-east-1",
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    );
    assert_eq!(
        auth,
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
         SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
         Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    );
    assert_eq!(amz_date(0), "19700101T000000Z");
    assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
    assert_eq!(amz_date(951_782_400 + 86_399), "20000229T235959Z");
}
