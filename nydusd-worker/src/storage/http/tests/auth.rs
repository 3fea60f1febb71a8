//! Credentials over time against the scripted server: Bearer tokens
//! fetched once, renewed when they expire (and not before every request),
//! a failed renewal backed off, new credentials and a new proxy URL at
//! run time.

use super::*;

/// A 401 asking for a Bearer token from this server's `/token`.
fn bearer_challenge(port: usize) -> Vec<u8> {
    let realm = format!("Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"reg\"");
    let h = ("WWW-Authenticate", realm);
    answer(
        "401 Unauthorized",
        &[h, ("Content-Length", "0".into())],
        b"",
    )
}

/// Token number `n`, valid for `secs`.
fn token_answer(n: usize, secs: u64) -> Vec<u8> {
    let body = format!("{{\"token\":\"tok{n}\",\"expires_in\":{secs}}}");
    answer(
        "200 OK",
        &[("Content-Length", body.len().to_string())],
        body.as_bytes(),
    )
}

#[test]
fn bearer_token_fetched_once_renewed_on_401_and_replaced_by_set_auth() {
    let port = Arc::new(AtomicUsize::new(0));
    let p2 = port.clone();
    let tokens = Arc::new(AtomicUsize::new(0));
    let t2 = tokens.clone();
    let s = Server::start(move |req, _| {
        if req.path.starts_with("/token") {
            // POST is refused, so the client switches to GET for good.
            if !req.path.contains('?') {
                return answer(
                    "405 Method Not Allowed",
                    &[("Content-Length", "0".into())],
                    b"",
                );
            }
            assert!(
                req.path.contains("scope=repository%3Alib%2Fimg%3Apull"),
                "{req:?}"
            );
            let n = t2.fetch_add(1, Ordering::SeqCst) + 1;
            return token_answer(n, 600);
        }
        let n = t2.load(Ordering::SeqCst);
        if req.auth.as_deref() != Some(&format!("Bearer tok{n}")) || n == 0 {
            return bearer_challenge(p2.load(Ordering::SeqCst));
        }
        partial(req)
    });
    port.store(s.port.into(), Ordering::SeqCst);
    let b = registry(s.port, Some("dTpw"));
    let mut buf = [0u8; 4];
    for off in [0, 4, 8] {
        assert_eq!(b.read_at(ID, off, &mut buf).unwrap(), 4);
        assert_eq!(&buf, &BLOB[off as usize..off as usize + 4]);
    }
    assert_eq!(tokens.load(Ordering::SeqCst), 1);
    // Token requests carry the Basic credentials.
    assert!(s
        .seen()
        .iter()
        .any(|r| r.path.starts_with("/token?") && r.auth.as_deref() == Some("Basic dTpw")));
    b.set_auth(Some(Secret::from("dTpx"))).unwrap();
    assert!(b.set_auth(Some(Secret::from("not base64 !"))).is_err());
    assert_eq!(b.read_at(ID, 12, &mut buf).unwrap(), 4);
    assert_eq!(tokens.load(Ordering::SeqCst), 2);
    assert!(s
        .seen()
        .iter()
        .any(|r| r.auth.as_deref() == Some("Basic dTpx")));
    // POST refused once, GET from then on.
    assert_eq!(b.http_metrics().unwrap().token_requests, 3);
}

#[test]
fn short_lived_token_is_renewed_once_per_lifetime_not_per_request() {
    let port = Arc::new(AtomicUsize::new(0));
    let p2 = port.clone();
    let tokens = Arc::new(AtomicUsize::new(0));
    let t2 = tokens.clone();
    let s = Server::start(move |req, _| {
        if req.path.starts_with("/token") {
            let n = t2.fetch_add(1, Ordering::SeqCst) + 1;
            return token_answer(n, 2);
        }
        if req.auth.is_none() {
            return bearer_challenge(p2.load(Ordering::SeqCst));
        }
        partial(req)
    });
    port.store(s.port.into(), Ordering::SeqCst);
    let b = registry(s.port, None);
    let mut buf = [0u8; 4];
    for off in 0..8 {
        assert_eq!(b.read_at(ID, off, &mut buf).unwrap(), 4);
    }
    // A 2 s token is younger than the 20 s renewal margin, yet it is used
    // for the reads of its first 1.5 s rather than renewed before each.
    assert_eq!(tokens.load(Ordering::SeqCst), 1);
    std::thread::sleep(Duration::from_millis(1600));
    for off in 0..4 {
        assert_eq!(b.read_at(ID, off, &mut buf).unwrap(), 4);
    }
    assert_eq!(tokens.load(Ordering::SeqCst), 2);
    let last = s.seen().last().and_then(|r| r.auth.clone());
    assert_eq!(last.as_deref(), Some("Bearer tok2"));
}

#[test]
fn failed_renewal_backs_off_instead_of_retrying_every_request() {
    let port = Arc::new(AtomicUsize::new(0));
    let p2 = port.clone();
    let tokens = Arc::new(AtomicUsize::new(0));
    let t2 = tokens.clone();
    let s = Server::start(move |req, _| {
        if req.path.starts_with("/token") {
            // One 2 s token, then the token server is broken.
            if t2.fetch_add(1, Ordering::SeqCst) > 0 {
                return answer("500 Broken", &[("Content-Length", "0".into())], b"");
            }
            let body = "{\"token\":\"tok1\",\"expires_in\":2}";
            return answer(
                "200 OK",
                &[("Content-Length", body.len().to_string())],
                body.as_bytes(),
            );
        }
        // Like a registry's leeway: the old token still works.
        if req.auth.as_deref() != Some("Bearer tok1") {
            return bearer_challenge(p2.load(Ordering::SeqCst));
        }
        partial(req)
    });
    port.store(s.port.into(), Ordering::SeqCst);
    let b = registry(s.port, None);
    let mut buf = [0u8; 4];
    assert_eq!(b.read_at(ID, 0, &mut buf).unwrap(), 4);
    assert_eq!(tokens.load(Ordering::SeqCst), 1);
    std::thread::sleep(Duration::from_millis(1600));
    for off in 0..20 {
        assert_eq!(b.read_at(ID, off, &mut buf).unwrap(), 4);
        std::thread::sleep(Duration::from_millis(20));
    }
    // One renewal try (POST, then GET), then a back-off of 5 s.
    assert_eq!(tokens.load(Ordering::SeqCst), 3);
}

#[test]
fn proxy_url_is_replaced_and_removed_at_run_time() {
    let origin = Server::start(|req, _| partial(req));
    // A forward proxy sees absolute URLs; it answers like the origin.
    let proxy = Server::start(|req, _| partial(req));
    let b = registry(origin.port, None);
    let mut buf = [0u8; 4];
    let bad = b.set_proxy_url(&Secret::from("no url :pw@")).unwrap_err();
    assert_eq!(bad.kind(), std::io::ErrorKind::InvalidInput);
    assert!(!bad.to_string().contains("pw"), "{bad}");
    b.set_proxy_url(&Secret::new(format!(
        "http://u:pw@127.0.0.1:{}",
        proxy.port
    )))
    .unwrap();
    assert_eq!(b.read_at(ID, 1, &mut buf).unwrap(), 4);
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].path.starts_with("http://127.0.0.1:"), "{seen:?}");
    assert!(origin.seen().is_empty());
    b.set_proxy_url(&Secret::from("")).unwrap();
    assert_eq!(b.read_at(ID, 5, &mut buf).unwrap(), 4);
    assert_eq!(&buf, &BLOB[5..9]);
    assert_eq!((proxy.seen().len(), origin.seen().len()), (1, 1));
    assert_eq!(b.http_metrics().unwrap().proxy_requests, 1);
}
