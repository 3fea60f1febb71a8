//! Health of the P2P proxy (reference §4.6).
//!
//! Upstream pings `ping_url` from a thread that lives as long as the
//! backend. Here a ping is started by a request that finds the last one
//! older than `check_interval`, on a short-lived thread, so an idle daemon
//! sends nothing and runs nothing (which is what `check_pause_elapsed`
//! approximates upstream), and no request waits for a ping.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;

use super::metrics::Counters;

pub(crate) struct ProxyHealth {
    ping_url: String,
    interval: Duration,
    healthy: AtomicBool,
    pinging: AtomicBool,
    last_ping: Mutex<Option<Instant>>,
}

impl ProxyHealth {
    pub(crate) fn new(ping_url: &str, check_interval: u64) -> Arc<Self> {
        Arc::new(ProxyHealth {
            ping_url: ping_url.to_string(),
            interval: Duration::from_secs(check_interval.max(1)),
            // Upstream starts healthy, so the first requests use the proxy.
            healthy: AtomicBool::new(true),
            pinging: AtomicBool::new(false),
            last_ping: Mutex::new(None),
        })
    }

    /// Whether to use the proxy now; starts a ping if one is due. Without
    /// a `ping_url` the proxy is always healthy.
    pub(crate) fn is_healthy(self: &Arc<Self>, client: &Client, metrics: &Arc<Counters>) -> bool {
        if self.ping_url.is_empty() {
            return true;
        }
        let due = {
            let mut last = self.last_ping.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= self.interval);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due && !self.pinging.swap(true, Ordering::AcqRel) {
            let (me, client, metrics) = (self.clone(), client.clone(), metrics.clone());
            let spawned = std::thread::Builder::new()
                .name("proxy-ping".into())
                .spawn(move || {
                    let ok = client
                        .get(&me.ping_url)
                        .send()
                        .is_ok_and(|r| r.status().as_u16() < 400);
                    me.set(ok, &metrics);
                    me.pinging.store(false, Ordering::Release);
                });
            if spawned.is_err() {
                self.pinging.store(false, Ordering::Release);
            }
        }
        self.healthy.load(Ordering::Acquire)
    }

    /// A request through the proxy failed at transport level: stop using
    /// it until a ping says otherwise (only when pings can say so).
    pub(crate) fn failed(&self, metrics: &Counters) {
        if !self.ping_url.is_empty() {
            *self.last_ping.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            self.set(false, metrics);
        }
    }

    pub(crate) fn healthy_now(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    fn set(&self, ok: bool, metrics: &Counters) {
        let was = self.healthy.swap(ok, Ordering::AcqRel);
        if was && !ok {
            Counters::inc(&metrics.proxy_unhealthy);
            log::warn!("P2P proxy is unhealthy; sending requests to the origin while it is");
        } else if !was && ok {
            log::info!("P2P proxy is healthy again; using it");
        }
    }
}
