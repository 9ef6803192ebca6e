//! The per-relay circuit breaker: after repeated relay faults, stop sending
//! to that relay for a while instead of piling retries onto it. A pure state
//! machine fed outcomes and the current time, so its tests need no sleeping.
//!
//! Time is a [`std::time::Instant`] passed in by the caller (monotonic, which
//! is what "open for 30 s" means); the breaker never reads a clock itself.

use std::time::{Duration, Instant};

use crate::InvalidPolicy;

/// Settings for a [`CircuitBreaker`].
///
/// Call [`validate`](Self::validate) once when building from configuration.
/// An unvalidated value never panics: a zero threshold or probe count
/// behaves like 1, and `max_open_for` wins over a larger `open_for`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive counted failures that open a closed breaker. Default 5.
    pub failure_threshold: u32,
    /// How long the first opening lasts; each re-opening after a failed
    /// probe doubles it. Default 30 s.
    pub open_for: Duration,
    /// Cap on the doubled open period. Default 10 min.
    pub max_open_for: Duration,
    /// Requests let through while half-open to probe the relay. Default 1.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            max_open_for: Duration::from_secs(10 * 60),
            half_open_probes: 1,
        }
    }
}

impl BreakerConfig {
    /// Checks that the settings make sense; the error names the first
    /// offending field.
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        if self.failure_threshold == 0 {
            return Err(InvalidPolicy::new(
                "failure_threshold",
                "must be at least 1",
            ));
        }
        if self.open_for.is_zero() {
            return Err(InvalidPolicy::new("open_for", "must be more than zero"));
        }
        if self.max_open_for < self.open_for {
            return Err(InvalidPolicy::new(
                "max_open_for",
                "must not be less than open_for",
            ));
        }
        if self.half_open_probes == 0 {
            return Err(InvalidPolicy::new("half_open_probes", "must be at least 1"));
        }
        Ok(())
    }
}

/// What one exchange with the relay told us about the relay's health.
///
/// The caller maps SMTP results onto these using the error's own
/// classification, never its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerOutcome {
    /// The relay accepted the transaction.
    Success,
    /// Could not connect, or the connection broke (refused, reset, TLS).
    ConnectionFailure,
    /// A connect or protocol-phase timeout.
    Timeout,
    /// A 421-style "service not available / try later" reply.
    Throttled,
    /// A permanent per-recipient rejection such as 550 "user unknown".
    /// It is the recipient's fault, not the relay's, so it is ignored.
    RecipientRejected,
}

impl BreakerOutcome {
    /// Whether this outcome counts towards opening the breaker.
    pub const fn counts_as_failure(self) -> bool {
        matches!(
            self,
            Self::ConnectionFailure | Self::Timeout | Self::Throttled
        )
    }
}

/// The breaker's state as observers (metrics, logs, the API) see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow; counted failures are being tallied.
    Closed,
    /// Requests are refused until `since + open_for`.
    Open {
        /// When the breaker (re-)opened.
        since: Instant,
        /// How long this opening lasts.
        open_for: Duration,
    },
    /// The open period has passed; a few probe requests decide what next.
    HalfOpen,
}

/// A circuit breaker for one relay: Closed → Open → HalfOpen → Closed/Open.
///
/// - Closed: every request is allowed; `failure_threshold` consecutive
///   counted failures (see [`BreakerOutcome::counts_as_failure`]) open it. A
///   success resets the tally; a [`BreakerOutcome::RecipientRejected`]
///   leaves it unchanged.
/// - Open: [`allow`](Self::allow) refuses until the open period has passed,
///   then the breaker turns half-open. Outcomes arriving while open come
///   from requests let through before it opened and are ignored; only a
///   probe decides.
/// - HalfOpen: up to `half_open_probes` requests are allowed. A probe
///   success closes the breaker and resets the open period to `open_for`; a
///   counted failure re-opens it for twice the previous period, at most
///   `max_open_for`. A `RecipientRejected` probe settles nothing, so it
///   hands its probe slot back.
///
/// The Open → HalfOpen step happens in `allow`, so [`state`](Self::state)
/// reports `Open` until the first `allow` after the period has passed.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: State,
    /// Length of the current or most recent open period, which the next
    /// re-opening doubles.
    open_for: Duration,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { since: Instant },
    HalfOpen { since: Instant, granted: u32 },
}

impl CircuitBreaker {
    /// A closed breaker with the given settings.
    pub fn new(config: BreakerConfig) -> Self {
        let open_for = base_open_for(&config);
        Self {
            config,
            state: State::Closed { failures: 0 },
            open_for,
        }
    }

    /// The settings this breaker was built with.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The current state, as of the last call to `allow` or `record`.
    pub fn state(&self) -> BreakerState {
        match self.state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { since } => BreakerState::Open {
                since,
                open_for: self.open_for,
            },
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether a request to the relay may go ahead now. While half-open a
    /// `true` hands out a probe slot, so call this only when about to send.
    pub fn allow(&mut self, now: Instant) -> bool {
        let probes = self.config.half_open_probes.max(1);
        match self.state {
            State::Closed { .. } => true,
            State::Open { since } => {
                if elapsed(since, now) < self.open_for {
                    return false;
                }
                self.state = State::HalfOpen {
                    since: now,
                    granted: 1,
                };
                true
            }
            State::HalfOpen { since, granted } => {
                if granted < probes {
                    self.state = State::HalfOpen {
                        since,
                        granted: granted + 1,
                    };
                    true
                } else if elapsed(since, now) >= self.open_for {
                    // A probe whose outcome was never recorded (worker
                    // crashed, shutdown) must not wedge the relay for good:
                    // after another open period, hand out fresh probes.
                    self.state = State::HalfOpen {
                        since: now,
                        granted: 1,
                    };
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Feeds the outcome of one exchange with the relay, observed at `now`.
    pub fn record(&mut self, outcome: BreakerOutcome, now: Instant) {
        if outcome == BreakerOutcome::RecipientRejected {
            if let State::HalfOpen { since, granted } = self.state {
                self.state = State::HalfOpen {
                    since,
                    granted: granted.saturating_sub(1),
                };
            }
            return;
        }
        let failed = outcome.counts_as_failure();
        match self.state {
            State::Closed { failures } => {
                if !failed {
                    self.state = State::Closed { failures: 0 };
                    return;
                }
                let failures = failures.saturating_add(1);
                self.state = if failures >= self.config.failure_threshold {
                    State::Open { since: now }
                } else {
                    State::Closed { failures }
                };
            }
            State::Open { .. } => {}
            State::HalfOpen { .. } => {
                if failed {
                    self.open_for = self
                        .open_for
                        .saturating_mul(2)
                        .min(self.config.max_open_for);
                    self.state = State::Open { since: now };
                } else {
                    self.open_for = base_open_for(&self.config);
                    self.state = State::Closed { failures: 0 };
                }
            }
        }
    }
}

/// The first open period; the cap wins over an unvalidated larger value.
fn base_open_for(config: &BreakerConfig) -> Duration {
    config.open_for.min(config.max_open_for)
}

/// Time from `since` to `now`, zero if the caller's clock went backwards.
fn elapsed(since: Instant, now: Instant) -> Duration {
    now.saturating_duration_since(since)
}
