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

/// The defaults with a single probe, as most transition tests want.
fn one_probe() -> BreakerConfig {
    BreakerConfig {
        half_open_calls: 1,
        ..BreakerConfig::default()
    }
}

/// A single-probe breaker, opened by five timeouts at `at`.
fn opened_at(at: Instant) -> CircuitBreaker {
    let mut b = CircuitBreaker::new(one_probe());
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
    assert_eq!(c.half_open_calls, 3);
    assert_eq!(c.failure_rate, 0.05);
    assert_eq!(c.slow_call, Duration::from_millis(800));
    assert_eq!(c.slow_rate, 0.5);
    assert_eq!(c.min_calls, 20);
    assert_eq!(c.window, secs(60));
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
    let mut b = CircuitBreaker::new(one_probe());
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
    let mut b = CircuitBreaker::new(one_probe());
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
    let mut b = CircuitBreaker::new(one_probe());
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
    let mut b = CircuitBreaker::new(one_probe());
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
        half_open_calls: 2,
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
        half_open_calls: 0,
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
                half_open_calls: 0,
                ..d()
            },
            "half_open_calls",
        ),
        (
            BreakerConfig {
                failure_rate: 0.0,
                ..d()
            },
            "failure_rate",
        ),
        (
            BreakerConfig {
                slow_rate: 1.5,
                ..d()
            },
            "slow_rate",
        ),
        (
            BreakerConfig {
                slow_call: Duration::ZERO,
                ..d()
            },
            "slow_call",
        ),
        (
            BreakerConfig {
                min_calls: 0,
                ..d()
            },
            "min_calls",
        ),
        (
            BreakerConfig {
                window: Duration::ZERO,
                ..d()
            },
            "window",
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

/// Feeds `calls` at `at`: (outcome, duration in ms).
fn feed(b: &mut CircuitBreaker, at: Instant, calls: &[(O, u64)]) {
    for (outcome, ms) in calls {
        b.record_call(*outcome, Duration::from_millis(*ms), at);
    }
}

fn is_open(b: &CircuitBreaker) -> bool {
    matches!(b.state(), BreakerState::Open { .. })
}

#[test]
fn the_failure_rate_opens_it_once_the_window_holds_min_calls() {
    // The defaults: 5 % of at least 20 calls in a minute. Failures are
    // spread out so that the consecutive rule never fires.
    let t0 = Instant::now();
    let table: &[(&str, u32, u32, bool)] = &[
        // (case, successes, failures interleaved, open?)
        ("19 calls, 1 failed: too few to judge", 18, 1, false),
        ("20 calls, 1 failed: 5 %", 19, 1, true),
        ("40 calls, 1 failed: 2.5 %", 39, 1, false),
        ("40 calls, 2 failed: 5 %", 38, 2, true),
        ("100 calls, 4 failed: 4 %", 96, 4, false),
    ];
    for (case, ok, failed, want) in table {
        let mut b = CircuitBreaker::new(BreakerConfig::default());
        // Successes first, then the failures, each after a success.
        for _ in 0..(ok - failed) {
            b.record_call(O::Success, Duration::ZERO, t0);
        }
        for _ in 0..*failed {
            b.record_call(O::ConnectionFailure, Duration::ZERO, t0);
            b.record_call(O::Success, Duration::ZERO, t0);
        }
        assert_eq!(is_open(&b), *want, "{case}: {:?}", b.state());
    }
}

#[test]
fn slow_calls_open_it_at_the_slow_rate() {
    let t0 = Instant::now();
    let config = BreakerConfig {
        min_calls: 10,
        ..BreakerConfig::default()
    };
    // 4 slow of 10: below half.
    let mut b = CircuitBreaker::new(config.clone());
    feed(&mut b, t0, &[(O::Success, 900); 4]);
    feed(&mut b, t0, &[(O::Success, 100); 6]);
    assert!(!is_open(&b), "{:?}", b.state());
    // 799 ms is not slow, 800 ms is; half of the window opens it.
    let mut b = CircuitBreaker::new(config);
    feed(&mut b, t0, &[(O::Success, 799); 6]);
    feed(&mut b, t0, &[(O::Success, 800); 4]);
    assert!(!is_open(&b), "4 slow of 10");
    feed(&mut b, t0, &[(O::Success, 800)]);
    assert!(!is_open(&b), "5 slow of 11");
    feed(&mut b, t0, &[(O::Success, 800)]);
    assert!(is_open(&b), "6 slow of 12: {:?}", b.state());
}

#[test]
fn recipient_rejections_are_not_calls_at_all() {
    // 550 user unknown, however many, neither counts as failure nor fills
    // the window with successes that would dilute real failures.
    let t0 = Instant::now();
    let mut b = CircuitBreaker::new(BreakerConfig {
        min_calls: 4,
        failure_rate: 0.5,
        ..BreakerConfig::default()
    });
    feed(&mut b, t0, &[(O::RecipientRejected, 0); 100]);
    feed(
        &mut b,
        t0,
        &[(O::Success, 0), (O::Timeout, 0), (O::Success, 0)],
    );
    assert!(!is_open(&b));
    feed(&mut b, t0, &[(O::Throttled, 0)]);
    assert!(is_open(&b), "2 of 4 failed: {:?}", b.state());
}

#[test]
fn old_failures_slide_out_of_the_window() {
    let t0 = Instant::now();
    let mut b = CircuitBreaker::new(BreakerConfig {
        min_calls: 10,
        failure_rate: 0.2,
        ..BreakerConfig::default()
    });
    // 1 failure among 9 calls at t0 …
    feed(&mut b, t0, &[(O::Success, 0); 4]);
    feed(&mut b, t0, &[(O::Timeout, 0)]);
    feed(&mut b, t0, &[(O::Success, 0); 4]);
    // … and a minute later, 1 failure among 10 fresh calls: 10 %, not the
    // 2 of 19 the whole history would make.
    let later = t0 + secs(61);
    feed(&mut b, later, &[(O::Success, 0); 9]);
    feed(&mut b, later, &[(O::Timeout, 0)]);
    assert!(!is_open(&b), "{:?}", b.state());
    feed(&mut b, later, &[(O::Timeout, 0)]);
    assert!(!is_open(&b), "2 of 11 failed");
    feed(&mut b, later, &[(O::Timeout, 0)]);
    assert!(is_open(&b), "3 of 12 failed: {:?}", b.state());
}

#[test]
fn by_default_three_quick_probes_close_it_and_a_slow_one_reopens_it() {
    let t0 = Instant::now();
    let mut b = CircuitBreaker::new(BreakerConfig::default());
    feed(&mut b, t0, &[(O::ConnectionFailure, 0); 5]);
    assert!(is_open(&b));
    let t30 = t0 + secs(30);
    for _ in 0..3 {
        assert!(b.allow(t30));
    }
    assert!(!b.allow(t30), "only three probes");
    feed(&mut b, t30, &[(O::Success, 10), (O::Success, 10)]);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    // The third probe is slow: open again, for twice as long.
    feed(&mut b, t30, &[(O::Success, 900)]);
    assert_eq!(
        b.state(),
        BreakerState::Open {
            since: t30,
            open_for: secs(60)
        }
    );
    let t90 = t30 + secs(60);
    for _ in 0..3 {
        assert!(b.allow(t90));
    }
    feed(&mut b, t90, &[(O::Success, 10); 3]);
    assert_eq!(b.state(), BreakerState::Closed);
    // Closed with an empty window: earlier calls do not count again.
    feed(&mut b, t90, &[(O::Timeout, 0); 4]);
    assert_eq!(b.state(), BreakerState::Closed);
}
