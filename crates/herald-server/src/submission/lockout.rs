//! Failed AUTH attempts per client address: after [`MAX_FAILURES`] within
//! [`WINDOW`], the address is refused (421) until the oldest of them is a
//! window old. Times are passed in (the service's clock), so tests decide
//! the clock.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures that lock an address out.
pub(crate) const MAX_FAILURES: usize = 5;
/// The window failures are counted in.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked before expired entries are swept.
const SWEEP_AT: usize = 10_000;

/// The failures of every address that failed recently.
#[derive(Debug, Default)]
pub(crate) struct Lockout {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl Lockout {
    /// Whether `ip` is locked out at `now`.
    pub(crate) fn is_locked(&self, ip: IpAddr, now: Instant) -> bool {
        let mut map = self.lock();
        match map.get_mut(&ip) {
            Some(times) => {
                expire(times, now);
                times.len() >= MAX_FAILURES
            }
            None => false,
        }
    }

    /// Records a failure of `ip` at `now`; whether `ip` is now locked out.
    pub(crate) fn fail(&self, ip: IpAddr, now: Instant) -> bool {
        let mut map = self.lock();
        if map.len() >= SWEEP_AT {
            map.retain(|_, times| {
                expire(times, now);
                !times.is_empty()
            });
        }
        let times = map.entry(ip).or_default();
        expire(times, now);
        times.push_back(now);
        while times.len() > MAX_FAILURES {
            times.pop_front();
        }
        times.len() >= MAX_FAILURES
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<Instant>>> {
        // Each step is a whole update: a poisoned lock is still usable.
        crate::lock(&self.failures)
    }
}

/// Drops the failures older than the window.
fn expire(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_policy::Clock as _;

    #[test]
    fn five_failures_in_a_minute_lock_out_until_they_age() {
        let lockout = Lockout::default();
        let ip: IpAddr = [192, 0, 2, 1].into();
        let other: IpAddr = [192, 0, 2, 2].into();
        let t0 = herald_policy::SystemClock.instant();
        for i in 0..4 {
            assert!(!lockout.fail(ip, t0 + Duration::from_secs(i)));
        }
        assert!(!lockout.is_locked(ip, t0 + Duration::from_secs(4)));
        assert!(lockout.fail(ip, t0 + Duration::from_secs(10)));
        assert!(lockout.is_locked(ip, t0 + Duration::from_secs(59)));
        assert!(!lockout.is_locked(other, t0 + Duration::from_secs(59)));
        // The first failure is a minute old: four remain.
        assert!(!lockout.is_locked(ip, t0 + Duration::from_secs(60)));
    }

    #[test]
    fn failures_spread_over_more_than_a_minute_do_not_lock() {
        let lockout = Lockout::default();
        let ip: IpAddr = [192, 0, 2, 1].into();
        let t0 = herald_policy::SystemClock.instant();
        for i in 0..10 {
            assert!(!lockout.fail(ip, t0 + Duration::from_secs(16 * i)), "{i}");
        }
    }
}
