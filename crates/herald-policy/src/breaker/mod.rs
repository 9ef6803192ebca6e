//! The per-relay circuit breaker: when a relay keeps failing or turns slow,
//! stop sending to it for a while instead of piling retries onto it. It
//! opens on consecutive failures, or on the failure rate or the slow-call
//! rate over a sliding window. A pure state machine fed outcomes, call
//! durations and the current time, so its tests need no sleeping.
//!
//! Time is a [`std::time::Instant`] passed in by the caller (monotonic, which
//! is what "open for 30 s" means); the breaker never reads a clock itself.

mod window;

use std::time::{Duration, Instant};

use crate::InvalidPolicy;
use window::Window;

/// Settings for a [`CircuitBreaker`].
///
/// Call [`validate`](Self::validate) once when building from configuration.
/// An unvalidated value never panics: a zero threshold or probe count
/// behaves like 1, and `max_open_for` wins over a larger `open_for`.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive counted failures that open a closed breaker, whatever
    /// the window says (a dead relay with little traffic never reaches
    /// `min_calls`). Default 5.
    pub failure_threshold: u32,
    /// Share of counted failures among the calls of the window at or above
    /// which the breaker opens, in `(0, 1]`. Default 0.05.
    pub failure_rate: f64,
    /// A call that takes at least this long is slow. Default 800 ms.
    pub slow_call: Duration,
    /// Share of slow calls in the window at or above which the breaker
    /// opens, in `(0, 1]`. Default 0.5.
    pub slow_rate: f64,
    /// Calls the window must hold before its rates are judged. Default 20.
    pub min_calls: u32,
    /// How far back the rates look. Default 1 min.
    pub window: Duration,
    /// How long the first opening lasts; each re-opening after a failed
    /// probe doubles it. Default 30 s.
    pub open_for: Duration,
    /// Cap on the doubled open period. Default 10 min.
    pub max_open_for: Duration,
    /// Probe calls let through while half-open; all must succeed, none
    /// slow, to close the breaker. Default 3.
    pub half_open_calls: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            failure_rate: 0.05,
            slow_call: Duration::from_millis(800),
            slow_rate: 0.5,
            min_calls: 20,
            window: Duration::from_secs(60),
            open_for: Duration::from_secs(30),
            max_open_for: Duration::from_secs(10 * 60),
            half_open_calls: 3,
        }
    }
}

impl BreakerConfig {
    /// Checks that the settings make sense; the error names the first
    /// offending field.
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        let share = |x: f64| x > 0.0 && x <= 1.0;
        if self.failure_threshold == 0 {
            return Err(InvalidPolicy::new(
                "failure_threshold",
                "must be at least 1",
            ));
        }
        if !share(self.failure_rate) {
            return Err(InvalidPolicy::new(
                "failure_rate",
                "must be more than 0 and at most 1",
            ));
        }
        if self.slow_call.is_zero() {
            return Err(InvalidPolicy::new("slow_call", "must be more than zero"));
        }
        if !share(self.slow_rate) {
            return Err(InvalidPolicy::new(
                "slow_rate",
                "must be more than 0 and at most 1",
            ));
        }
        if self.min_calls == 0 {
            return Err(InvalidPolicy::new("min_calls", "must be at least 1"));
        }
        if self.window.is_zero() {
            return Err(InvalidPolicy::new("window", "must be more than zero"));
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
        if self.half_open_calls == 0 {
            return Err(InvalidPolicy::new("half_open_calls", "must be at least 1"));
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
/// - Closed: every request is allowed. It opens when `failure_threshold`
///   consecutive counted failures arrive (see
///   [`BreakerOutcome::counts_as_failure`]; a success resets the tally), or
///   when the window holds at least `min_calls` calls and the share of
///   counted failures reaches `failure_rate` or the share of slow calls
///   (at least `slow_call` long) reaches `slow_rate`. A
///   [`BreakerOutcome::RecipientRejected`] is no call at all: it neither
///   counts nor resets.
/// - Open: [`allow`](Self::allow) refuses until the open period has passed,
///   then the breaker turns half-open. Outcomes arriving while open come
///   from requests let through before it opened and are ignored; only a
///   probe decides.
/// - HalfOpen: up to `half_open_calls` probes are allowed. When that many
///   have succeeded, none slow, the breaker closes (with an empty window)
///   and the open period goes back to `open_for`; a failed or slow probe
///   re-opens it for twice the previous period, at most `max_open_for`. A
///   `RecipientRejected` probe settles nothing, so it hands its slot back.
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
    window: Window,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        since: Instant,
    },
    HalfOpen {
        since: Instant,
        granted: u32,
        passed: u32,
    },
}

impl CircuitBreaker {
    /// A closed breaker with the given settings.
    pub fn new(config: BreakerConfig) -> Self {
        let open_for = base_open_for(&config);
        let window = Window::new(config.window);
        Self {
            config,
            state: State::Closed { failures: 0 },
            open_for,
            window,
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
        let probes = self.config.half_open_calls.max(1);
        match self.state {
            State::Closed { .. } => true,
            State::Open { since } => {
                if elapsed(since, now) < self.open_for {
                    return false;
                }
                self.state = State::HalfOpen {
                    since: now,
                    granted: 1,
                    passed: 0,
                };
                true
            }
            State::HalfOpen {
                since,
                granted,
                passed,
            } => {
                if granted < probes {
                    self.state = State::HalfOpen {
                        since,
                        granted: granted + 1,
                        passed,
                    };
                    true
                } else if elapsed(since, now) >= self.open_for {
                    // A probe whose outcome was never recorded (worker
                    // crashed, shutdown) must not wedge the relay for good:
                    // after another open period, hand out fresh probes.
                    self.state = State::HalfOpen {
                        since: now,
                        granted: 1,
                        passed: 0,
                    };
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Feeds the outcome of one exchange with the relay, observed at `now`,
    /// as if it took no time (never slow).
    pub fn record(&mut self, outcome: BreakerOutcome, now: Instant) {
        self.record_call(outcome, Duration::ZERO, now);
    }

    /// Feeds the outcome of one exchange with the relay that took `took`,
    /// observed at `now`.
    pub fn record_call(&mut self, outcome: BreakerOutcome, took: Duration, now: Instant) {
        if outcome == BreakerOutcome::RecipientRejected {
            if let State::HalfOpen {
                since,
                granted,
                passed,
            } = self.state
            {
                self.state = State::HalfOpen {
                    since,
                    granted: granted.saturating_sub(1),
                    passed,
                };
            }
            return;
        }
        let failed = outcome.counts_as_failure();
        let slow = took >= self.config.slow_call;
        match self.state {
            State::Closed { failures } => {
                let failures = if failed {
                    failures.saturating_add(1)
                } else {
                    0
                };
                let counts = self.window.add(now, failed, slow);
                let judged = counts.calls >= self.config.min_calls.max(1);
                let share = |n: u32| f64::from(n) / f64::from(counts.calls.max(1));
                let open = failures >= self.config.failure_threshold.max(1)
                    || (judged
                        && (share(counts.failures) >= self.config.failure_rate
                            || share(counts.slow) >= self.config.slow_rate));
                self.state = if open {
                    self.window.clear();
                    State::Open { since: now }
                } else {
                    State::Closed { failures }
                };
            }
            State::Open { .. } => {}
            State::HalfOpen {
                since,
                granted,
                passed,
            } => {
                if failed || slow {
                    self.open_for = self
                        .open_for
                        .saturating_mul(2)
                        .min(self.config.max_open_for);
                    self.state = State::Open { since: now };
                } else if passed + 1 >= self.config.half_open_calls.max(1) {
                    self.open_for = base_open_for(&self.config);
                    self.window.clear();
                    self.state = State::Closed { failures: 0 };
                } else {
                    self.state = State::HalfOpen {
                        since,
                        granted,
                        passed: passed + 1,
                    };
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
