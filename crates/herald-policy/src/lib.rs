//! When to try again, for herald: the retry schedule (exponential backoff with
//! jitter, a cap, a floor and a maximum age) and the per-relay circuit breaker, and the class of a bounce.
//! Everything here is a pure decision over time and randomness passed in, so
//! the delivery workers only carry decisions out and the tests are exact tables.
//!
//! - [`RetryPolicy`] answers "retry this message at T, or give up?".
//! - [`CircuitBreaker`] answers "may we talk to this relay right now?".
//! - [`classify`] answers "what does this failure say?" ([`BounceClass`]).
//! - [`Gcra`] answers "may the next message go to this relay yet, or in
//!   how long?" for a [`RateLimit`] such as `20/s`.
//! - [`DailyQuota`] says which period a relay's quota counts in and when
//!   it resets.
//! - [`QuotaBlock`] and [`SlotBlock`] answer "may this node spend one of
//!   the quota units or rate slots it already holds?", so that nodes
//!   sharing a limit take it from the store a block at a time.
//! - [`Clock`] is where the time comes from, for every decision by time in
//!   herald (the system's clocks, or a [`ManualClock`] in tests).
//!
//! Both are plain structs with public fields plus a `validate()` that the
//! service's config layer calls once; an unvalidated value never panics, it
//! just behaves conservatively (documented on each type).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod blocks;
mod bounce;
mod breaker;
mod clock;
mod quota;
mod rate;
mod retry;
mod sleep;

pub use blocks::{MAX_BLOCK, QuotaBlock, SLOT_GRACE, Slot, SlotBlock, quota_block, rate_block};
pub use bounce::{BounceClass, RULES, Rule, classify, classify_with};
pub use breaker::{BreakerConfig, BreakerOutcome, BreakerState, CircuitBreaker};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use quota::{DailyQuota, QuotaReset, ResetZone};
pub use rate::{Gcra, Rate, RateLimit};
pub use retry::{Decision, GiveUpReason, Jitter, RetryPolicy};
#[cfg(feature = "tokio")]
pub use sleep::TokioSleeper;
pub use sleep::{ManualSleeper, Sleeper};

/// A policy value that makes no sense, naming the offending field.
///
/// The field is the Rust field name (`"multiplier"`, `"failure_threshold"`);
/// the config layer prefixes its own section name when it reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidPolicy {
    field: &'static str,
    reason: std::borrow::Cow<'static, str>,
}

impl InvalidPolicy {
    pub(crate) fn new(
        field: &'static str,
        reason: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }

    /// The name of the field that failed validation.
    pub const fn field(&self) -> &'static str {
        self.field
    }

    /// Why the value was rejected, in words.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}
