//! The ring of recent backend failures behind `GET /api/v1/daemon/events`.
//!
//! Callers pass text that is already free of secrets (no URLs with
//! credentials, no auth headers): it is served to any API client.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use nydus_protocol::api::Events;
use serde_json::Value;

/// Upstream's limits: at most 500 entries and 50 KiB of text.
pub const MAX_ERRORS: usize = 500;
pub const MAX_SIZE: usize = 51200;

#[derive(Default)]
struct Ring {
    errors: VecDeque<String>,
    total_size: usize,
}

#[derive(Default)]
pub struct EventLog {
    ring: Mutex<Ring>,
}

impl EventLog {
    /// Records one failure as `"<HTTP-date> - <text>"`, dropping the oldest
    /// entries to stay within the limits.
    pub fn push(&self, text: &str) {
        let mut entry = format!("{} - {}", httpdate::fmt_http_date(SystemTime::now()), text);
        if entry.len() > MAX_SIZE {
            let mut cut = MAX_SIZE;
            while !entry.is_char_boundary(cut) {
                cut -= 1;
            }
            entry.truncate(cut);
        }
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        while ring.errors.len() >= MAX_ERRORS || ring.total_size + entry.len() > MAX_SIZE {
            match ring.errors.pop_front() {
                Some(old) => ring.total_size -= old.len(),
                None => break,
            }
        }
        ring.total_size += entry.len();
        ring.errors.push_back(entry);
    }

    /// `GET /api/v1/daemon/events` body.
    pub fn to_json(&self) -> Value {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let events = Events {
            max_errors: MAX_ERRORS as u64,
            total_errors: ring.errors.len() as u64,
            max_size: MAX_SIZE as u64,
            total_size: ring.total_size as u64,
            errors: ring.errors.iter().cloned().collect(),
        };
        serde_json::to_value(events).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_events_ring_bounds() {
        let log = EventLog::default();
        for i in 0..(MAX_ERRORS + 10) {
            log.push(&format!("error {i}"));
        }
        let v = log.to_json();
        assert_eq!(v["total_errors"], MAX_ERRORS);
        let errors = v["errors"].as_array().cloned().unwrap_or_default();
        assert!(errors[0].as_str().unwrap_or("").ends_with(" - error 10"));
        log.push(&"x".repeat(MAX_SIZE * 2));
        let v = log.to_json();
        assert_eq!(v["total_errors"], 1);
        assert!(v["total_size"].as_u64().unwrap_or(u64::MAX) <= MAX_SIZE as u64);
    }
}
