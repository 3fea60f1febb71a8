//! `bandwidth_rate`: a pacing limit on prefetch backend bytes.
//!
//! A virtual clock: each request books `bytes / rate` seconds starting when
//! the previous booking ends (or now, if that is past). Idle time earns no
//! credit, so over any span the bytes started are at most `rate * span`
//! plus the one request that started it: the only burst is one request of
//! at most `merging_size` bytes, whatever the rate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Limiter {
    /// Bytes per second, > 0.
    rate: u64,
    /// When the last booked request's share of time ends.
    free_at: Mutex<Option<Instant>>,
}

/// How often a waiting prefetch worker looks at its cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(50);

impl Limiter {
    /// None for `rate` 0 (unlimited).
    pub fn new(rate: u64) -> Option<Limiter> {
        (rate > 0).then(|| Limiter {
            rate,
            free_at: Mutex::new(None),
        })
    }

    /// Books a request of `bytes` at `now`; returns when it may start.
    fn book(&self, bytes: u64, now: Instant) -> Instant {
        let mut free_at = self.free_at.lock().unwrap_or_else(|e| e.into_inner());
        let start = free_at.map_or(now, |t| t.max(now));
        let share = Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        *free_at = Some(start + share);
        start
    }

    /// Waits until a request of `bytes` may start; false if `cancel` was
    /// set meanwhile (the booking is then simply wasted).
    pub fn acquire(&self, bytes: u64, cancel: &AtomicBool) -> bool {
        let start = self.book(bytes, Instant::now());
        loop {
            if cancel.load(Ordering::Relaxed) {
                return false;
            }
            let now = Instant::now();
            if now >= start {
                return true;
            }
            std::thread::sleep((start - now).min(CANCEL_POLL));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn zero_is_unlimited() {
        assert!(Limiter::new(0).is_none());
    }

    #[test]
    fn bookings_follow_the_rate_without_burst_credit() {
        let l = Limiter::new(MIB).unwrap();
        let t0 = Instant::now();
        // 4 x 256 KiB at 1 MiB/s: starts at 0, .25, .5, .75 s.
        for i in 0..4u32 {
            let at = l.book(MIB / 4, t0);
            assert_eq!(at - t0, Duration::from_millis(250) * i);
        }
        // A long idle gap earns nothing: the next request starts at once
        // and the one after waits its predecessor's full share.
        let later = t0 + Duration::from_secs(100);
        assert_eq!(l.book(MIB / 2, later), later);
        assert_eq!(l.book(1, later), later + Duration::from_millis(500));
    }

    #[test]
    fn small_rates_are_real_limits() {
        // 64 KiB/s (far below 16 MiB/s): 3 x 32 KiB take at least 1 s.
        let l = Limiter::new(64 << 10).unwrap();
        let cancel = AtomicBool::new(false);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.acquire(32 << 10, &cancel));
        }
        assert!(
            t0.elapsed() >= Duration::from_millis(1000),
            "{:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn cancel_stops_a_wait() {
        let l = Limiter::new(1).unwrap();
        let cancel = AtomicBool::new(false);
        assert!(l.acquire(1 << 30, &cancel));
        cancel.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        assert!(!l.acquire(1, &cancel));
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}
