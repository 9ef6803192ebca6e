//! The circuit breaker's transitions, driven by a fake timeline: one real
//! `Instant` as the origin, everything else is the origin plus a duration.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Tests measure real time (deadlines, elapsed) on the machine's clocks.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use herald_policy::{BreakerConfig, BreakerOutcome as O, BreakerState, CircuitBreaker};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const NANO: Duration = Duration::from_nanos(1);

/// A default breaker, opened by five timeouts at `at`.
fn opened_at(at: Instant) -> CircuitBreaker {
    let mut b = CircuitBreaker::new(BreakerConfig::default());
    for _ in 0..5 {
        assert!(b.allow(at));
        b.record(O::Timeout, at);
    }
    assert_eq!(
        b.state(),
        BreakerState::Open {
            since: at,
            open_for: secs(30)
        }
    );
    b
}

#[test]
fn defaults_match_the_config_and_validate() {
    let c = BreakerConfig::default();
    assert_eq!(c.failure_threshold, 5);
    assert_eq!(c.open_for, secs(30));
    assert_eq!(c.max_open_for, secs(600));
    assert_eq!(c.half_open_probes, 1);
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn only_relay_faults_count() {
    let table = [
        (O::Success, false),
        (O::ConnectionFailure, true),
        (O::Timeout, true),
        (O::Throttled, true),
        (O::RecipientRejected, false),
    ];
    for (outcome, counts) in table {
        assert_eq!(outcome.counts_as_failure(), counts, "{outcome:?}");
    }
}

#[test]
fn recipient_rejections_never_open_the_breaker() {
    let t0 = Instant::now();
    let mut b = CircuitBreaker::new(BreakerConfig::default());
    for i in 0..10_000 {
        let now = t0 + Duration::from_millis(i);
        assert!(b.allow(now));
        b.record(O::RecipientRejected, now);
    }
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn five_consecutive_timeouts_open_it_and_four_do_not() {
    let t0 = Instant::now();
    let mut b = CircuitBreaker::new(BreakerConfig::default());
    for _ in 0..4 {
        b.record(O::Timeout, t0);
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert!(b.allow(t0));
    let t1 = t0 + secs(1);
    b.record(O::Timeout, t1);
    assert_eq!(
        b.state(),
        BreakerState::Open {
            since: t1,
            open_for: secs(30)
        }
    );
}

#[test]
fn every_relay_fault_kind_counts_towards_opening() {
    let t0 = Instant::now();
    let mut b = CircuitBreaker::new(BreakerConfig::default());
    for outcome in [O::ConnectionFailure, O::Timeout, O::Throttled, O::Throttled] {
        b.record(outcome, t0);
    }
    assert_eq!(b.state(), BreakerState::Closed);
    b.record(O::ConnectionFailure, t0);
    assert!(matches!(b.state(), BreakerState::Open { .. }));
}

#[test]
fn a_success_resets_the_tally_but_a_rejection_does_not() {
    let t0 = Instant::now();
    let mut b = CircuitBreaker::new(BreakerConfig::default());
    for _ in 0..4 {
        b.record(O::Timeout, t0);
    }
    b.record(O::Success, t0);
    for _ in 0..4 {
        b.record(O::Timeout, t0);
    }
    assert_eq!(b.state(), BreakerState::Closed);
    // A 550 in between neither counts nor resets: 4 + 1 timeouts open it.
    b.record(O::RecipientRejected, t0);
    b.record(O::Timeout, t0);
    assert!(matches!(b.state(), BreakerState::Open { .. }));
}

#[test]
fn allow_is_false_while_open_then_one_probe_goes_through() {
    let t0 = Instant::now();
    let mut b = opened_at(t0);
    for at in [t0, t0 + secs(1), t0 + secs(30) - NANO] {
        assert!(!b.allow(at), "allowed at {:?}", at - t0);
    }
    let t30 = t0 + secs(30);
    assert!(b.allow(t30));
    assert_eq!(b.state(), BreakerState::HalfOpen);
    // Only one probe at a time by default.
    assert!(!b.allow(t30));
    assert!(!b.allow(t30 + secs(29)));
}

#[test]
fn outcomes_while_open_are_stale_and_ignored() {
    let t0 = Instant::now();
    let mut b = opened_at(t0);
    let open = b.state();
    b.record(O::Success, t0 + secs(1));
    b.record(O::Timeout, t0 + secs(2));
    assert_eq!(b.state(), open);
    assert!(b.allow(t0 + secs(30)));
}

#[test]
fn probe_success_closes_and_resets_the_open_period() {
    let t0 = Instant::now();
    let mut b = opened_at(t0);
    let t30 = t0 + secs(30);
    assert!(b.allow(t30));
    b.record(O::Timeout, t30); // re-opens for 60s
    let t90 = t30 + secs(60);
    assert!(b.allow(t90));
    b.record(O::Success, t90);
    assert_eq!(b.state(), BreakerState::Closed);
    assert!(b.allow(t90));
    // The next opening starts from open_for again, not 120s.
    for _ in 0..5 {
        b.record(O::Timeout, t90);
    }
    assert_eq!(
        b.state(),
        BreakerState::Open {
            since: t90,
            open_for: secs(30)
        }
    );
}

#[test]
fn probe_failures_reopen_with_doubled_period_up_to_the_cap() {
    let t0 = Instant::now();
    let mut b = opened_at(t0);
    let mut now = t0;
    let mut periods = Vec::new();
    for _ in 0..7 {
        let BreakerState::Open { since, open_for } = b.state() else {
            panic!("not open: {:?}", b.state());
        };
        assert_eq!(since, now);
        periods.push(open_for.as_secs());
        assert!(!b.allow(now + open_for - NANO));
        now += open_for;
        assert!(b.allow(now));
        b.record(O::Throttled, now);
    }
    assert_eq!(periods, [30, 60, 120, 240, 480, 600, 600]);
}

#[test]
fn several_probes_when_configured_and_any_failure_reopens() {
    let t0 = Instant::now();
    let config = BreakerConfig {
        half_open_probes: 2,
        ..BreakerConfig::default()
    };
    let mut b = CircuitBreaker::new(config);
    for _ in 0..5 {
        b.record(O::ConnectionFailure, t0);
    }
    let t30 = t0 + secs(30);
    assert!(b.allow(t30));
    assert!(b.allow(t30));
    assert!(!b.allow(t30));
    b.record(O::Timeout, t30);
    assert!(matches!(b.state(), BreakerState::Open { open_for, .. } if open_for == secs(60)));
}

#[test]
fn a_rejected_probe_hands_its_slot_back() {
    let t0 = Instant::now();
    let mut b = opened_at(t0);
    let t30 = t0 + secs(30);
    assert!(b.allow(t30));
    b.record(O::RecipientRejected, t30);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert!(b.allow(t30));
    b.record(O::Success, t30);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn a_lost_probe_does_not_wedge_the_relay() {
    // The probe's outcome is never recorded (say the worker died).
    let t0 = Instant::now();
    let mut b = opened_at(t0);
    let t30 = t0 + secs(30);
    assert!(b.allow(t30));
    assert!(!b.allow(t30 + secs(30) - NANO));
    assert!(b.allow(t30 + secs(30)));
    assert!(!b.allow(t30 + secs(30)));
}

#[test]
fn a_clock_going_backwards_keeps_it_open() {
    let t0 = Instant::now() + secs(60);
    let mut b = opened_at(t0);
    assert!(!b.allow(t0 - secs(60)));
    assert!(matches!(b.state(), BreakerState::Open { .. }));
}

#[test]
fn unvalidated_zero_threshold_and_probes_behave_like_one() {
    let t0 = Instant::now();
    let config = BreakerConfig {
        failure_threshold: 0,
        half_open_probes: 0,
        open_for: secs(900), // above max_open_for: the cap wins
        ..BreakerConfig::default()
    };
    assert!(config.validate().is_err());
    let mut b = CircuitBreaker::new(config);
    b.record(O::Success, t0);
    assert_eq!(b.state(), BreakerState::Closed);
    b.record(O::Timeout, t0);
    assert_eq!(
        b.state(),
        BreakerState::Open {
            since: t0,
            open_for: secs(600)
        }
    );
    assert!(b.allow(t0 + secs(600)));
    assert!(!b.allow(t0 + secs(600)));
}

#[test]
fn validation_errors_name_the_field() {
    let d = BreakerConfig::default;
    let cases = [
        (
            BreakerConfig {
                failure_threshold: 0,
                ..d()
            },
            "failure_threshold",
        ),
        (
            BreakerConfig {
                open_for: Duration::ZERO,
                ..d()
            },
            "open_for",
        ),
        (
            BreakerConfig {
                max_open_for: secs(29),
                ..d()
            },
            "max_open_for",
        ),
        (
            BreakerConfig {
                half_open_probes: 0,
                ..d()
            },
            "half_open_probes",
        ),
    ];
    for (config, field) in cases {
        let err = config.validate().unwrap_err();
        assert_eq!(err.field(), field, "{config:?}");
        assert!(err.to_string().contains(field), "{err}");
    }
    let ok = BreakerConfig {
        failure_threshold: 1,
        max_open_for: secs(30),
        ..d()
    };
    assert_eq!(ok.validate(), Ok(()));
}
