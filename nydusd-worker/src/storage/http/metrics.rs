//! Counters of one network backend's HTTP traffic.
//!
//! The storage layer counts *backend reads* (one per merged range, §10.3);
//! these count what happened on the wire underneath: every request (each
//! retry, redirect hop, token fetch and proxy fallback is one), bytes of
//! blob data received, and how the proxy and auth behaved. Relaxed atomics,
//! as in `storage::metrics`: independent counters, readers never block.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

#[derive(Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    request_errors: AtomicU64,
    latency_millis_total: AtomicU64,
    pub(crate) data_bytes: AtomicU64,
    pub(crate) read_retries: AtomicU64,
    pub(crate) read_failures: AtomicU64,
    pub(crate) redirects: AtomicU64,
    pub(crate) proxy_requests: AtomicU64,
    pub(crate) proxy_fallbacks: AtomicU64,
    pub(crate) proxy_unhealthy: AtomicU64,
    pub(crate) token_requests: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
}

/// A snapshot, as JSON for the metrics API. Names never carry a secret.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct HttpMetrics {
    /// HTTP requests sent (including retries, redirect hops, pings excluded).
    pub requests: u64,
    /// Requests that failed at transport level or answered >= 400.
    pub request_errors: u64,
    pub latency_millis_total: u64,
    /// Blob bytes received into callers' buffers.
    pub data_bytes: u64,
    /// Extra attempts of a blob read after a failed one.
    pub read_retries: u64,
    /// Blob reads that failed after every attempt (EIO to the reader).
    pub read_failures: u64,
    pub redirects: u64,
    /// Requests sent through `proxy.url`.
    pub proxy_requests: u64,
    /// Requests resent to the origin after the proxy failed.
    pub proxy_fallbacks: u64,
    /// Times the proxy was found unhealthy.
    pub proxy_unhealthy: u64,
    /// Registry token fetches.
    pub token_requests: u64,
    /// Requests refused (401/403) even with fresh credentials.
    pub auth_failures: u64,
    /// Whether the proxy is currently used (true when none is configured).
    pub proxy_healthy: bool,
}

impl Counters {
    pub(crate) fn request(&self, elapsed: Duration, ok: bool) {
        self.requests.fetch_add(1, Relaxed);
        self.latency_millis_total
            .fetch_add(elapsed.as_millis() as u64, Relaxed);
        if !ok {
            self.request_errors.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, proxy_healthy: bool) -> HttpMetrics {
        HttpMetrics {
            requests: self.requests.load(Relaxed),
            request_errors: self.request_errors.load(Relaxed),
            latency_millis_total: self.latency_millis_total.load(Relaxed),
            data_bytes: self.data_bytes.load(Relaxed),
            read_retries: self.read_retries.load(Relaxed),
            read_failures: self.read_failures.load(Relaxed),
            redirects: self.redirects.load(Relaxed),
            proxy_requests: self.proxy_requests.load(Relaxed),
            proxy_fallbacks: self.proxy_fallbacks.load(Relaxed),
            proxy_unhealthy: self.proxy_unhealthy.load(Relaxed),
            token_requests: self.token_requests.load(Relaxed),
            auth_failures: self.auth_failures.load(Relaxed),
            proxy_healthy,
        }
    }
}
