//! The admin HTTP API (`--apisock`): upstream's `/api/v1` (and the few
//! `/api/v2` daemon calls) over a unix socket, reference §6.
//!
//! The server knows nothing about FUSE: it decodes a request, calls the
//! daemon through [`DaemonControl`] and encodes the reply. Calls that may
//! block (mount, umount, exit, ...) run on tokio's blocking pool, one at a
//! time; reads (daemon info, metrics) are not queued behind them, unlike
//! upstream's single handler thread.

mod body;
mod routes;
mod server;
#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::Value;

// The handle type is part of this module's interface even where callers
// only hold it without naming it.
#[allow(unused_imports)]
pub use server::{spawn_api_server, ApiServerHandle};

/// What the API needs from the daemon. Only the first six methods are
/// required; the rest default to "not supported" (501), which is what a
/// daemon without that feature should answer.
///
/// Every method may be called from any thread, concurrently with reads;
/// mutating calls (mount, remount, umount, exit, start, takeover, sendfd,
/// set_config) are serialized by the server.
pub trait DaemonControl: Send + Sync {
    /// `GET /api/v1/daemon` body: `version`, `id`, `supervisor`, `state`,
    /// `backend_collection` (reference §6.3), with secrets removed.
    fn info(&self) -> Value;

    /// `POST /api/v1/mount?mountpoint=`: mount `source` (a bootstrap, or a
    /// directory for passthrough) at the VFS path `mountpoint`. `fs_type` is
    /// passed through as sent (`rafs`, `passthrough`, `passthroughfs`,
    /// `passthrough_fs`; possibly empty); `config_text` is the whole config
    /// file (v1 JSON, v2 JSON or v2 TOML).
    fn mount(
        &self,
        mountpoint: &str,
        source: &str,
        fs_type: &str,
        config_text: &str,
        prefetch_files: Option<Vec<String>>,
    ) -> Result<(), ApiError>;

    /// `PUT /api/v1/mount?mountpoint=`: swap bootstrap and config.
    fn remount(&self, mountpoint: &str, source: &str, config_text: &str) -> Result<(), ApiError>;

    /// `DELETE /api/v1/mount?mountpoint=`.
    fn umount(&self, mountpoint: &str) -> Result<(), ApiError>;

    /// `PUT /api/v1/daemon/exit`: stop serving without unmounting and make
    /// the process exit. Must return (the 204 is sent afterwards) and let
    /// the main loop do the exit; the API server is stopped by its handle.
    fn exit(&self);

    /// Counters served by `/api/v1/metrics*` and `/api/v1/daemon/events`.
    fn metrics(&self) -> &crate::metrics::Metrics;

    /// `PUT /api/v1/daemon` `{"log_level": ..}`. The default sets the `log`
    /// crate's global filter, which every `log` backend honours.
    fn set_log_level(&self, level: log::LevelFilter) -> Result<(), ApiError> {
        log::set_max_level(level);
        Ok(())
    }

    /// `GET /api/v1/metrics/inflight`: requests being served right now.
    /// The default reads `metrics().inflight()`, filled by the FUSE threads'
    /// hooks; without any (virtio-fs) it is unsupported.
    fn inflight(&self) -> Result<Vec<InflightOp>, ApiError> {
        self.metrics()
            .inflight()
            .snapshot()
            .ok_or_else(|| ApiError::unsupported("in-flight request tracking"))
    }

    /// `GET /api/v1/daemon/backend?mountpoint=`: the RAFS superblock summary.
    fn backend_info(&self, _mountpoint: &str) -> Result<Value, ApiError> {
        Err(ApiError::unsupported("superblock info"))
    }

    /// `PUT /api/v1/daemon/start` (READY → RUNNING).
    fn start(&self) -> Result<(), ApiError> {
        Err(ApiError::unsupported("start"))
    }

    /// `PUT /api/v1/daemon/fuse/takeover` (INIT → READY by restore).
    fn takeover(&self) -> Result<(), ApiError> {
        Err(ApiError::unsupported("takeover"))
    }

    /// `PUT /api/v1/daemon/fuse/sendfd` (save state to the supervisor).
    fn sendfd(&self) -> Result<(), ApiError> {
        Err(ApiError::unsupported("sendfd"))
    }

    /// `PUT /api/v1/config?id=`: one recognised key (`registry_auth`,
    /// `dragonfly_scheduler_endpoint`, `proxy_url`) for the instance at
    /// mountpoint `id` (None: the only/every instance).
    fn set_config(&self, _id: Option<&str>, key: &str, _value: &str) -> Result<(), ApiError> {
        Err(ApiError::unsupported(&format!("setting {key}")))
    }
}

/// An error reply: `status` is the HTTP status, the body is
/// `{"code": code, "message": message}`. `message` must not contain secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

pub use nydus_protocol::api::InflightOp;
use nydus_protocol::api::{ErrorBody, ERROR_CODE};

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: ERROR_CODE.to_string(),
            message: message.into(),
        }
    }

    /// 400: bad method, bad query, bad body, or a forbidden state transition.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// 404: unknown path, or no such metrics set.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    /// 500: the operation failed (mount error, no such mount, bad value).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }

    /// 501: this daemon does not support the operation.
    pub fn unsupported(what: &str) -> Self {
        Self::new(
            501,
            format!("Unsupported: {what} is not supported by this daemon"),
        )
    }

    /// 503: the daemon is not ready for the operation yet.
    #[allow(dead_code)] // for DaemonControl implementations (e.g. sendfd before INIT)
    pub fn not_ready(message: impl Into<String>) -> Self {
        Self::new(503, message)
    }

    pub(crate) fn body(&self) -> Value {
        let body = ErrorBody {
            code: self.code.clone(),
            message: self.message.clone(),
        };
        serde_json::to_value(body).unwrap_or_default()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
