//! Sliding-window counts in fixed time buckets: "how many in the last five
//! minutes" without keeping one timestamp per failure, so a storm costs
//! memory in proportion to its duration, not to its size.

use std::collections::VecDeque;
use std::time::Duration;

/// At most this many buckets cover the history; the bucket width follows.
const MAX_BUCKETS: u64 = 360;

/// The bucket width and how far back counts are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resolution {
    /// Bucket width in seconds, at least 1.
    width: i64,
    /// History in seconds, at least one bucket.
    history: i64,
}

impl Resolution {
    /// Buckets of one second for a history of up to six minutes, wider
    /// beyond (ten seconds for an hour), so that no counter holds more than
    /// [`MAX_BUCKETS`] of them.
    pub(crate) fn for_history(history: Duration) -> Self {
        let secs = history.as_secs().max(1);
        let width = secs.div_ceil(MAX_BUCKETS).max(1);
        Self {
            width: i64::try_from(width).unwrap_or(i64::MAX),
            history: i64::try_from(secs).unwrap_or(i64::MAX),
        }
    }

    /// The bucket width.
    pub(crate) fn width(self) -> Duration {
        Duration::from_secs(self.width.unsigned_abs())
    }

    /// The history counts can answer for.
    pub(crate) fn history(self) -> Duration {
        Duration::from_secs(self.history.unsigned_abs())
    }

    fn bucket(self, unix_secs: i64) -> i64 {
        unix_secs.div_euclid(self.width)
    }

    /// The newest bucket that lies wholly before the window ending at
    /// `now`; the window is the buckets after it. With one-second buckets
    /// the window is exactly the seconds `t` with `now - window < t`.
    fn before_window(self, now: i64, window: Duration) -> i64 {
        let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
        self.bucket(now.saturating_sub(window.min(self.history)))
    }
}

/// Event counts per time bucket, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct WindowCounter {
    buckets: VecDeque<(i64, u64)>,
}

impl WindowCounter {
    /// Counts `n` events at `unix_secs`, then forgets what is older than the
    /// history as seen from that time.
    pub(crate) fn add(&mut self, res: Resolution, unix_secs: i64, n: u64) {
        let b = res.bucket(unix_secs);
        // Events arrive nearly in order; an old one is walked back to.
        let mut at = self.buckets.len();
        while at > 0 && self.buckets.get(at - 1).is_some_and(|&(k, _)| k > b) {
            at -= 1;
        }
        match self.buckets.get_mut(at.wrapping_sub(1)) {
            Some((k, count)) if *k == b => *count = count.saturating_add(n),
            _ => self.buckets.insert(at, (b, n)),
        }
        if let Some(&(newest, _)) = self.buckets.back() {
            self.prune(res, newest.saturating_mul(res.width));
        }
    }

    /// Forgets the buckets no window ending at or after `now` can include.
    pub(crate) fn prune(&mut self, res: Resolution, now: i64) {
        let oldest_needed = res.before_window(now, res.history()) + 1;
        while self
            .buckets
            .front()
            .is_some_and(|&(k, _)| k < oldest_needed)
        {
            self.buckets.pop_front();
        }
    }

    /// Events in the window of `window` ending at `now` (windows longer than
    /// the history count the history).
    pub(crate) fn count(&self, res: Resolution, now: i64, window: Duration) -> u64 {
        let before = res.before_window(now, window);
        self.buckets
            .iter()
            .rev()
            .take_while(|&&(k, _)| k > before)
            .fold(0u64, |sum, &(_, n)| sum.saturating_add(n))
    }

    /// Whether nothing is remembered.
    pub(crate) fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn resolution_table() {
        for (history, width) in [
            (Duration::ZERO, 1),
            (Duration::from_secs(1), 1),
            (5 * MIN, 1),
            (6 * MIN, 1),
            (6 * MIN + Duration::from_secs(1), 2),
            (60 * MIN, 10),
            (24 * 60 * MIN, 240),
        ] {
            let res = Resolution::for_history(history);
            assert_eq!(res.width(), Duration::from_secs(width), "{history:?}");
            assert!(res.history() >= history);
        }
    }

    #[test]
    fn one_second_buckets_count_exactly() {
        let res = Resolution::for_history(5 * MIN);
        let mut c = WindowCounter::default();
        for t in [1000, 1000, 1001, 1100, 1299] {
            c.add(res, t, 1);
        }
        // (now, window seconds, expected)
        for (now, window, want) in [
            (1299, 300, 5),
            (1300, 300, 3), // 1000 is exactly 300 s old: out
            (1300, 301, 3), // longer than the history: the history
            (1301, 300, 2),
            (1299, 1, 1),
            (1299, 199, 1),
            (1299, 200, 2),
            (1600, 300, 0),
            (1299, 3600, 5), // longer than the history: the history
        ] {
            assert_eq!(
                c.count(res, now, Duration::from_secs(window)),
                want,
                "now {now}, window {window}"
            );
        }
    }

    #[test]
    fn out_of_order_events_land_in_their_bucket() {
        let res = Resolution::for_history(5 * MIN);
        let mut c = WindowCounter::default();
        c.add(res, 100, 1);
        c.add(res, 110, 1);
        c.add(res, 105, 2);
        c.add(res, 110, 1);
        c.add(res, 100, 1);
        assert_eq!(c.len(), 3);
        assert_eq!(c.count(res, 110, Duration::from_secs(1)), 2);
        assert_eq!(c.count(res, 110, Duration::from_secs(10)), 4);
        assert_eq!(c.count(res, 110, Duration::from_secs(11)), 6);
    }

    #[test]
    fn old_buckets_are_forgotten() {
        let res = Resolution::for_history(MIN);
        let mut c = WindowCounter::default();
        for t in 0..1000 {
            c.add(res, t, 1);
        }
        assert_eq!(c.len(), 60);
        assert_eq!(c.count(res, 999, MIN), 60);
        // An event older than the history is counted nowhere.
        c.add(res, 10, 1);
        assert_eq!(c.len(), 60);
        c.prune(res, 2000);
        assert!(c.is_empty());
    }

    #[test]
    fn wide_buckets_round_the_window_start_up() {
        let res = Resolution::for_history(60 * MIN); // 10 s buckets
        let mut c = WindowCounter::default();
        c.add(res, 1003, 1); // bucket 100
        c.add(res, 1015, 1); // bucket 101
        // Window (1025 - 20, 1025] starts in bucket 100, which is left out.
        assert_eq!(c.count(res, 1025, Duration::from_secs(20)), 1);
        assert_eq!(c.count(res, 1025, Duration::from_secs(30)), 2);
    }
}
