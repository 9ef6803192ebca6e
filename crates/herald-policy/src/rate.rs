//! Rate limits as GCRA (the generic cell rate algorithm): a rate such as
//! `20/s` with a burst, kept as one number, the *theoretical arrival time*
//! (TAT) of the next message. No token counting, no timer: a decision is
//! arithmetic on the TAT and the time passed in, so the same rule runs in
//! memory here and as one conditional `UPDATE` in a shared store.
//!
//! With emission interval `T = per / count` and burst tolerance
//! `τ = (burst − 1) · T`, a message arriving at `now` conforms when
//! `max(TAT, now) − now ≤ τ`; it then moves the TAT to `max(TAT, now) + T`.
//! Otherwise it must wait `max(TAT, now) − τ − now` and the TAT stays.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::InvalidPolicy;

/// A rate: `count` messages per `per`, written `"20/s"`, `"300/min"`,
/// `"5000/h"` or `"10000/d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Messages per period. At least 1.
    pub count: u32,
    /// The period. More than zero.
    pub per: Duration,
}

impl Rate {
    /// The time between two messages at this rate.
    pub fn interval(&self) -> Duration {
        self.per / self.count.max(1)
    }
}

impl FromStr for Rate {
    type Err = InvalidPolicy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const FORMAT: &str = "must look like \"20/s\", \"300/min\", \"5000/h\" or \"10000/d\"";
        let (count, unit) = text
            .trim()
            .split_once('/')
            .ok_or(InvalidPolicy::new("rate", FORMAT))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| InvalidPolicy::new("rate", FORMAT))?;
        if count == 0 {
            return Err(InvalidPolicy::new("rate", "must allow at least 1 message"));
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            _ => return Err(InvalidPolicy::new("rate", FORMAT)),
        };
        Ok(Self { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            86_400 => "d",
            _ => return write!(f, "{}/{:?}", self.count, self.per),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// A [`Rate`] with the burst it tolerates: up to `burst` messages may go
/// back to back after a quiet spell, never more than the rate on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// The sustained rate.
    pub rate: Rate,
    /// Messages allowed at once. At least 1 (1: strictly spaced).
    pub burst: u32,
}

impl RateLimit {
    /// Checks the burst; the rate is checked when parsed.
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        if self.burst == 0 {
            return Err(InvalidPolicy::new("burst", "must be at least 1"));
        }
        Ok(())
    }

    /// The emission interval `T`.
    pub fn interval(&self) -> Duration {
        self.rate.interval()
    }

    /// The burst tolerance `τ = (burst − 1) · T`.
    pub fn tolerance(&self) -> Duration {
        self.interval() * self.burst.max(1).saturating_sub(1)
    }

    /// The GCRA rule on a TAT kept as time since some origin (a store keeps
    /// it that way): `Ok(new_tat)` when a message at `now` conforms,
    /// `Err(wait)` with how long until it would.
    pub fn decide(&self, tat: Duration, now: Duration) -> Result<Duration, Duration> {
        let start = tat.max(now);
        let ahead = start - now;
        let tolerance = self.tolerance();
        if ahead <= tolerance {
            Ok(start + self.interval())
        } else {
            Err(ahead - tolerance)
        }
    }
}

/// One relay's limiter on one node: the GCRA over a monotonic clock passed
/// in by the caller.
#[derive(Debug, Clone)]
pub struct Gcra {
    limit: RateLimit,
    origin: Option<Instant>,
    tat: Duration,
}

impl Gcra {
    /// A limiter that has seen no message yet (a full burst is available).
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            origin: None,
            tat: Duration::ZERO,
        }
    }

    /// The limit this limiter enforces.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes a slot for one message at `now`: `Ok(())`, or `Err(wait)` with
    /// how long until a slot is free (nothing is taken then).
    pub fn acquire(&mut self, now: Instant) -> Result<(), Duration> {
        let origin = *self.origin.get_or_insert(now);
        let since = now.saturating_duration_since(origin);
        self.tat = self.limit.decide(self.tat, since)?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Clock as _;

    fn limit(text: &str, burst: u32) -> RateLimit {
        RateLimit {
            rate: text.parse().unwrap_or_else(|e| panic!("{text}: {e}")),
            burst,
        }
    }

    #[test]
    fn rates_parse_and_print() {
        for (text, count, secs, shown) in [
            ("20/s", 20, 1, "20/s"),
            ("300/min", 300, 60, "300/min"),
            (" 5000 / h ", 5000, 3600, "5000/h"),
            ("500/d", 500, 86_400, "500/d"),
            ("1/second", 1, 1, "1/s"),
        ] {
            let rate: Rate = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((rate.count, rate.per.as_secs()), (count, secs), "{text}");
            assert_eq!(rate.to_string(), shown);
        }
        for bad in ["", "20", "0/s", "-1/s", "20/week", "x/s", "20/"] {
            let error = bad.parse::<Rate>().unwrap_err();
            assert_eq!(error.field(), "rate", "{bad}");
        }
    }

    #[test]
    fn a_burst_goes_at_once_then_the_rate_holds() {
        // 10/s with a burst of 3: three at t=0, then one every 100 ms.
        let mut gcra = Gcra::new(limit("10/s", 3));
        let t0 = crate::SystemClock.instant();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let table: &[(u64, Result<(), Duration>)] = &[
            (0, Ok(())),
            (0, Ok(())),
            (0, Ok(())),
            (0, Err(Duration::from_millis(100))),
            (50, Err(Duration::from_millis(50))),
            (100, Ok(())),
            (100, Err(Duration::from_millis(100))),
            (200, Ok(())),
            // A quiet second refills the whole burst, and no more.
            (1200, Ok(())),
            (1200, Ok(())),
            (1200, Ok(())),
            (1200, Err(Duration::from_millis(100))),
        ];
        for (n, (ms, want)) in table.iter().enumerate() {
            assert_eq!(gcra.acquire(at(*ms)), *want, "row {n} at {ms} ms");
        }
    }

    #[test]
    fn a_burst_of_one_spaces_every_message() {
        let mut gcra = Gcra::new(limit("2/s", 1));
        let t0 = crate::SystemClock.instant();
        assert_eq!(gcra.acquire(t0), Ok(()));
        assert_eq!(gcra.acquire(t0), Err(Duration::from_millis(500)));
        assert_eq!(
            gcra.acquire(t0 + Duration::from_millis(499)),
            Err(Duration::from_millis(1))
        );
        assert_eq!(gcra.acquire(t0 + Duration::from_millis(500)), Ok(()));
    }

    #[test]
    fn over_any_window_no_more_than_the_rate_plus_the_burst_pass() {
        // Offered far above the limit for 10 s, in 1 ms steps.
        let mut gcra = Gcra::new(limit("20/s", 5));
        let t0 = crate::SystemClock.instant();
        let mut passed = 0u32;
        for ms in 0..10_000u64 {
            if gcra.acquire(t0 + Duration::from_millis(ms)).is_ok() {
                passed += 1;
            }
        }
        // 5 at once, then 20 per second for the rest of the 10 s.
        assert_eq!(passed, 5 + 200 - 1, "{passed}");
    }

    #[test]
    fn a_zero_burst_is_refused() {
        assert_eq!(limit("1/s", 0).validate().unwrap_err().field(), "burst");
        assert!(limit("1/s", 1).validate().is_ok());
    }
}
