//! Short-lived registry tokens: the token server `registry-server --token`
//! starts issues tokens for 300 s; a test that wants them to expire while
//! it runs swaps in a copy whose lifetimes it chooses. Plus a minimal HTTP
//! GET, to fetch a token or probe the registry with one.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{wait_port, Registry};

/// A token server started by the test (killed on drop).
pub struct TokenServer {
    child: Child,
    pub port: u16,
    /// Where it logs one line per request (shared with the original).
    pub log: PathBuf,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the pid exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

impl Registry {
    /// Stops the registry's token server and starts a copy whose tokens
    /// carry `exp` = now + `exp_secs` (what the registry checks) and
    /// `expires_in` = `expires_in` (what clients are told).
    pub fn short_tokens(&self, exp_secs: i64, expires_in: u64) -> TokenServer {
        let url = self
            .token_url
            .clone()
            .expect("registry started without --token");
        let port: u16 = url
            .trim_start_matches("http://127.0.0.1:")
            .trim_end_matches("/token")
            .parse()
            .unwrap_or_else(|_| panic!("unexpected token URL {url}"));
        let tdir = self.dir.join("token");
        let script = std::fs::read_to_string(tdir.join("token-server.py"))
            .expect("read the token server registry-server wrote");
        let (exp, ttl) = ("\"exp\": now + 300", "\"expires_in\": 300");
        assert!(
            script.contains(exp) && script.contains(ttl),
            "token-server.py no longer has {exp:?} and {ttl:?}: update this helper"
        );
        let script = script
            .replace(exp, &format!("\"exp\": now + ({exp_secs})"))
            .replace(ttl, &format!("\"expires_in\": {expires_in}"));
        let short = tdir.join("token-server-short.py");
        std::fs::write(&short, script).expect("write the short-lived token server");

        let pidfile = self.dir.join("token.pid");
        let old: i32 = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .expect("no token.pid: is the token server running?");
        // SAFETY: kill(2) of the token server registry-server started for
        // this test (its pid file lives in the test's own directory).
        unsafe { libc::kill(old, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid_alive(old) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!pid_alive(old), "token server {old} did not stop");

        let (user, pass) = self
            .opts
            .token
            .as_deref()
            .and_then(|t| t.split_once(':'))
            .expect("--token USER:PASS");
        let log = self.dir.join("token.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open token.log");
        let child = Command::new("python3")
            .arg(&short)
            .arg(port.to_string())
            .arg(tdir.join("key.pem"))
            .arg(tdir.join("cert.der"))
            .args(["registry-token-issuer", user, pass, "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start python3 token server");
        // `registry-server stop` kills whatever token.pid names.
        std::fs::write(&pidfile, child.id().to_string()).expect("write token.pid");
        wait_port(port, 20);
        TokenServer { child, port, log }
    }
}

/// `GET path` from `127.0.0.1:port` with extra `headers`; the status and
/// body (the whole answer is read; `Connection: close`).
pub fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status from 127.0.0.1:{port}{path}: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}
