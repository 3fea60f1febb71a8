//! End-to-end tests of the server over a real unix socket, with a fake
//! daemon behind it and a plain hyper client in front.

mod routes;
mod server;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::*;
use crate::metrics::{Metrics, MetricsSource};

#[derive(Default)]
struct Fake {
    metrics: Metrics,
    mounts: Mutex<BTreeSet<String>>,
    calls: Mutex<Vec<String>>,
    inflight: Mutex<Vec<InflightOp>>,
    /// How long each mount takes.
    mount_delay: Duration,
}

impl Fake {
    fn log(&self, s: String) {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl DaemonControl for Fake {
    fn info(&self) -> Value {
        json!({"id": null, "state": "RUNNING", "version": {"package_ver": "v0"},
               "backend_collection": {"/": {"backend_type": "Rafs"}}})
    }
    fn mount(
        &self,
        mp: &str,
        source: &str,
        fs_type: &str,
        config: &str,
        prefetch: Option<Vec<String>>,
    ) -> Result<(), ApiError> {
        std::thread::sleep(self.mount_delay);
        self.log(format!(
            "mount {mp} {source} {fs_type} {config} {prefetch:?}"
        ));
        if !self
            .mounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(mp.into())
        {
            return Err(ApiError::internal("object or filesystem already exists"));
        }
        Ok(())
    }
    fn remount(&self, mp: &str, source: &str, config: &str) -> Result<(), ApiError> {
        self.log(format!("remount {mp} {source} {config}"));
        Ok(())
    }
    fn umount(&self, mp: &str) -> Result<(), ApiError> {
        self.log(format!("umount {mp}"));
        if !self
            .mounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(mp)
        {
            return Err(ApiError::internal("object or filesystem doesn't exist"));
        }
        Ok(())
    }
    fn exit(&self) {
        self.log("exit".into());
    }
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
    fn inflight(&self) -> Result<Vec<InflightOp>, ApiError> {
        Ok(self
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone())
    }
    fn set_config(&self, id: Option<&str>, key: &str, _value: &str) -> Result<(), ApiError> {
        self.log(format!("config {id:?} {key}"));
        Ok(())
    }
}

struct FakeStorage;
impl MetricsSource for FakeStorage {
    fn backend_json(&self) -> Value {
        json!({"backend_type": "localfs", "read_count": 3})
    }
    fn blobcache_json(&self) -> Value {
        json!({"store_path": "/cache", "total": 9})
    }
}

/// One request on a fresh connection; returns (status, headers' content
/// type and server, parsed body or Null when empty).
fn call(sock: &Path, method: Method, uri: &str, body: &str) -> (u16, String, String, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(sock)
            .await
            .expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "localhost")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request");
        let resp = sender.send_request(req).await.expect("send");
        let status = resp.status().as_u16();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let (ct, server) = (header("content-type"), header("server"));
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            // Non-JSON bodies (the Prometheus text of `/metrics`) come back as a string.
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, ct, server, v)
    })
}

fn setup() -> (tempfile::TempDir, Arc<Fake>, ApiServerHandle) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = Arc::new(Fake::default());
    let sock = dir.path().join("api.sock");
    let handle = spawn_api_server(&sock, fake.clone()).expect("spawn");
    (dir, fake, handle)
}

fn is_error(v: &Value) -> bool {
    v["code"] == "UNDEFINED" && v["message"].is_string()
}
