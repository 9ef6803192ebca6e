//! The breaker's sliding window: counts of calls, failures and slow calls
//! over the last `window`, kept in a fixed number of time buckets so that
//! memory stays constant however many calls a relay takes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Buckets per window: the window slides in steps of `window / BUCKETS`.
const BUCKETS: u32 = 20;

/// Counts over a span of time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

/// Counts over the last `window`, as of the latest call recorded.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    width: Duration,
    origin: Option<Instant>,
    /// (bucket number since `origin`, its counts), oldest first.
    buckets: VecDeque<(u64, Counts)>,
}

impl Window {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            width: (window / BUCKETS).max(Duration::from_millis(1)),
            origin: None,
            buckets: VecDeque::new(),
        }
    }

    /// Forgets every call (the breaker closed again, or opened).
    pub(crate) fn clear(&mut self) {
        self.buckets.clear();
    }

    /// Adds one call at `now` and returns the counts over the window that
    /// ends at `now`.
    pub(crate) fn add(&mut self, now: Instant, failed: bool, slow: bool) -> Counts {
        let origin = *self.origin.get_or_insert(now);
        let width = self.width.as_nanos().max(1);
        let bucket = (now.saturating_duration_since(origin).as_nanos() / width) as u64;
        // A clock that went backwards lands in the newest bucket.
        let bucket = bucket.max(self.buckets.back().map_or(0, |(b, _)| *b));
        let oldest = bucket.saturating_sub(u64::from(BUCKETS) - 1);
        while self.buckets.front().is_some_and(|(b, _)| *b < oldest) {
            self.buckets.pop_front();
        }
        match self.buckets.back_mut() {
            Some((b, counts)) if *b == bucket => bump(counts, failed, slow),
            _ => {
                let mut counts = Counts::default();
                bump(&mut counts, failed, slow);
                self.buckets.push_back((bucket, counts));
            }
        }
        self.buckets
            .iter()
            .fold(Counts::default(), |sum, (_, c)| Counts {
                calls: sum.calls + c.calls,
                failures: sum.failures + c.failures,
                slow: sum.slow + c.slow,
            })
    }
}

fn bump(counts: &mut Counts, failed: bool, slow: bool) {
    counts.calls = counts.calls.saturating_add(1);
    counts.failures = counts.failures.saturating_add(u32::from(failed));
    counts.slow = counts.slow.saturating_add(u32::from(slow));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Clock as _;

    #[test]
    fn calls_older_than_the_window_drop_out() {
        let t0 = crate::SystemClock.instant();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // A 1 s window in 50 ms buckets.
        let mut w = Window::new(Duration::from_secs(1));
        assert_eq!(w.add(at(0), true, false).failures, 1);
        assert_eq!(w.add(at(500), false, true).calls, 2);
        let c = w.add(at(999), false, false);
        assert_eq!((c.calls, c.failures, c.slow), (3, 1, 1));
        // The first call's bucket [0, 50) leaves once the window's start
        // passes 50 ms.
        let c = w.add(at(1050), false, false);
        assert_eq!((c.calls, c.failures, c.slow), (3, 0, 1));
        let c = w.add(at(2600), false, false);
        assert_eq!((c.calls, c.failures, c.slow), (1, 0, 0));
        w.clear();
        assert_eq!(w.add(at(2600), false, false).calls, 1);
    }
}
