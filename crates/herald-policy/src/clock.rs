//! The one way herald reads the time: a [`Clock`] passed to whatever
//! decides by time (due times, leases, windows, lockouts), so that tests
//! move time instead of sleeping. [`SystemClock`] reads the machine's
//! clocks; [`ManualClock`] stands still until a test advances it.
//!
//! This module is the only place allowed to read the wall clock or the
//! monotonic clock directly (see `clippy.toml`).

#![allow(clippy::disallowed_methods)]

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

/// Where the time comes from.
pub trait Clock: fmt::Debug + Send + Sync {
    /// The calendar time (UTC): what is stored, compared with due times
    /// and shown.
    fn now(&self) -> OffsetDateTime;

    /// A monotonic reading, for durations and deadlines that must not jump
    /// when the calendar time is set.
    fn instant(&self) -> Instant;
}

/// A shared clock, as the service passes it around.
pub type SharedClock = Arc<dyn Clock>;

/// The machine's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock, shared.
    pub fn shared() -> SharedClock {
        Arc::new(Self)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told: both readings advance together by
/// [`advance`](Self::advance). For tests.
#[derive(Debug)]
pub struct ManualClock {
    start_wall: OffsetDateTime,
    start_instant: Instant,
    elapsed: Mutex<Duration>,
}

impl ManualClock {
    /// A clock standing at `wall`.
    pub fn new(wall: OffsetDateTime) -> Self {
        Self {
            start_wall: wall,
            start_instant: Instant::now(),
            elapsed: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves both readings forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut elapsed = self.elapsed.lock().unwrap_or_else(PoisonError::into_inner);
        *elapsed = elapsed.saturating_add(by);
    }

    fn elapsed(&self) -> Duration {
        *self.elapsed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        self.start_wall
            .saturating_add(time::Duration::try_from(self.elapsed()).unwrap_or(time::Duration::MAX))
    }

    fn instant(&self) -> Instant {
        let elapsed = self.elapsed();
        self.start_instant
            .checked_add(elapsed)
            .unwrap_or(self.start_instant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new(datetime!(2026-01-02 03:04:05 UTC));
        let t0 = clock.instant();
        assert_eq!(clock.now(), datetime!(2026-01-02 03:04:05 UTC));
        assert_eq!(clock.instant(), t0);
        clock.advance(Duration::from_millis(2500));
        assert_eq!(clock.now(), datetime!(2026-01-02 03:04:07.5 UTC));
        assert_eq!(clock.instant() - t0, Duration::from_millis(2500));
    }

    #[test]
    fn the_system_clock_reads_the_machine() {
        let before = OffsetDateTime::now_utc();
        let now = SystemClock.now();
        assert!(now >= before && now - before < time::Duration::minutes(1));
    }
}
