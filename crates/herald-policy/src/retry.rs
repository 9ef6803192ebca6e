//! The retry schedule: how long to wait after a failed delivery attempt, and
//! when to stop trying. Kept pure (time and RNG come in as arguments) so the
//! schedule can be pinned by exact tables instead of sleeping tests.

use std::time::Duration;

use rand::Rng;
use time::OffsetDateTime;

use crate::InvalidPolicy;

/// How the backoff delay is randomised, so that messages that failed together
/// do not all retry together (the "thundering herd").
///
/// Names follow the AWS Architecture Blog note "Exponential Backoff and
/// Jitter"; `d` below is [`RetryPolicy::base_delay`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Exactly `d`. Deterministic; meant for tests and for tiny deployments.
    None,
    /// Uniform in `[0, d]`: spreads load best. The policy's `min_delay`
    /// floor keeps a draw near zero from turning into a hot retry loop.
    #[default]
    Full,
    /// `d/2` plus uniform in `[0, d/2]`: never less than half the base delay.
    Equal,
}

/// Exponential backoff with jitter, a cap, a floor and a maximum age.
///
/// Attempt numbers count failed delivery attempts: after attempt `n` failed,
/// the base delay is `initial_delay * multiplier^(n-1)`, capped at
/// `max_delay`. Call [`validate`](Self::validate) once when building the
/// policy from configuration; the methods never panic even on an unvalidated
/// policy, and fall back to `max_delay` (the cautious choice) wherever a
/// nonsensical value makes the arithmetic meaningless.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Base delay after the first failed attempt. Default 30 s.
    pub initial_delay: Duration,
    /// Growth factor per further attempt; must be finite and ≥ 1. Default 2.
    pub multiplier: f64,
    /// Cap on any single delay, before and after jitter. Default 1 h.
    pub max_delay: Duration,
    /// Floor on any scheduled delay, so jitter can never produce a hot loop.
    /// Must not exceed `initial_delay`; zero disables the floor. Default 1 s.
    pub min_delay: Duration,
    /// Total delivery attempts, the first one included; the message gives
    /// up once this many have been made. Default 12.
    pub max_attempts: u32,
    /// How long after the first attempt a message may still be retried.
    /// Default 3 days.
    pub max_age: Duration,
    /// How the base delay is randomised. Default [`Jitter::Full`].
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_secs(30),
            multiplier: 2.0,
            max_delay: Duration::from_secs(60 * 60),
            min_delay: Duration::from_secs(1),
            max_attempts: 12,
            max_age: Duration::from_secs(3 * 24 * 60 * 60),
            jitter: Jitter::Full,
        }
    }
}

/// What to do after a failed delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Schedule the next attempt at this instant.
    RetryAt(OffsetDateTime),
    /// Stop retrying; the message has failed for good.
    GiveUp(GiveUpReason),
}

/// Why a message is no longer retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    /// `max_attempts` attempts have been made.
    MaxAttempts,
    /// No retry fits before `first_attempt_at + max_age`.
    MaxAge,
}

impl RetryPolicy {
    /// Checks that the policy makes sense; the error names the first
    /// offending field.
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        // Written as a negation so that NaN, which fails every comparison,
        // is rejected too.
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(InvalidPolicy::new(
                "multiplier",
                "must be a finite number of at least 1",
            ));
        }
        if self.initial_delay.is_zero() {
            return Err(InvalidPolicy::new(
                "initial_delay",
                "must be more than zero",
            ));
        }
        if self.initial_delay > self.max_delay {
            return Err(InvalidPolicy::new(
                "initial_delay",
                "must not exceed max_delay",
            ));
        }
        if self.min_delay > self.initial_delay {
            return Err(InvalidPolicy::new(
                "min_delay",
                "must not exceed initial_delay",
            ));
        }
        if self.max_attempts == 0 {
            return Err(InvalidPolicy::new("max_attempts", "must be at least 1"));
        }
        if self.max_age.is_zero() {
            return Err(InvalidPolicy::new("max_age", "must be more than zero"));
        }
        Ok(())
    }

    /// The un-jittered delay after failed attempt number `attempt`:
    /// `initial_delay * multiplier^(attempt-1)`, clamped to
    /// `[min_delay, max_delay]`. Attempt 0 is treated as attempt 1.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1);
        // powf in f64 instead of repeated multiplication: one step for any
        // attempt number, and overflow shows up as infinity, never a panic.
        let factor = self.multiplier.powf(f64::from(exponent));
        let secs = self.initial_delay.as_secs_f64() * factor;
        // try_from rejects infinity, NaN and negatives; all of them mean
        // "too large" or "nonsense", and the cap is the safe answer to both.
        let raw = Duration::try_from_secs_f64(secs).unwrap_or(self.max_delay);
        self.clamp(raw)
    }

    /// The jittered delay after failed attempt number `attempt`, always
    /// within `[min_delay, max_delay]`.
    pub fn delay<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let base = self.base_delay(attempt);
        let jittered = match self.jitter {
            Jitter::None => base,
            Jitter::Full => uniform_up_to(base, rng),
            Jitter::Equal => {
                let half = base / 2;
                // `base - half`, not `half`, so an odd nanosecond count still
                // reaches `base` at the top of the range.
                half + uniform_up_to(base - half, rng)
            }
        };
        self.clamp(jittered)
    }

    /// Decides what follows a failed attempt, given how many attempts have
    /// been made (this one included), when the first one started, and now.
    ///
    /// Gives up with [`GiveUpReason::MaxAttempts`] once `attempts_made >=
    /// max_attempts`. Otherwise the retry is `now + delay(attempts_made)`.
    /// At the age boundary the retry is **clamped**: if that time lies after
    /// the deadline `first_attempt_at + max_age`, the retry is moved back to
    /// the deadline itself, provided at least `min_delay` remains until it;
    /// if less remains (or the deadline has passed) the result is
    /// [`GiveUpReason::MaxAge`]. So a message gets a final attempt at exactly
    /// its deadline instead of losing up to `max_delay` of its lifetime, a
    /// retry is never scheduled past the deadline, and never sooner than
    /// `min_delay` from now.
    pub fn next_step<R: Rng + ?Sized>(
        &self,
        attempts_made: u32,
        first_attempt_at: OffsetDateTime,
        now: OffsetDateTime,
        rng: &mut R,
    ) -> Decision {
        if attempts_made >= self.max_attempts {
            return Decision::GiveUp(GiveUpReason::MaxAttempts);
        }
        let wanted = add(now, self.delay(attempts_made, rng));
        let Some(deadline) = add(first_attempt_at, self.max_age) else {
            // The deadline lies beyond the calendar time can represent, so
            // no age limit applies in practice.
            return match wanted {
                Some(at) => Decision::RetryAt(at),
                None => Decision::GiveUp(GiveUpReason::MaxAge),
            };
        };
        match wanted {
            Some(at) if at <= deadline => Decision::RetryAt(at),
            // Past the deadline, or so far ahead that it overflowed.
            _ => {
                let remaining = deadline - now;
                if remaining >= self.min_delay {
                    Decision::RetryAt(deadline)
                } else {
                    Decision::GiveUp(GiveUpReason::MaxAge)
                }
            }
        }
    }

    /// Floor then cap, without `Ord::clamp`, which panics when an
    /// unvalidated policy has `min_delay > max_delay`; the cap wins then.
    fn clamp(&self, delay: Duration) -> Duration {
        delay.max(self.min_delay).min(self.max_delay)
    }
}

/// Uniform in `[0, max]` at nanosecond resolution. Delays beyond `u64`
/// nanoseconds (about 584 years) are sampled up to that bound instead.
fn uniform_up_to<R: Rng + ?Sized>(max: Duration, rng: &mut R) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}

/// `at + delay`, or `None` past the end of `OffsetDateTime`'s range.
fn add(at: OffsetDateTime, delay: Duration) -> Option<OffsetDateTime> {
    at.checked_add(time::Duration::try_from(delay).ok()?)
}
