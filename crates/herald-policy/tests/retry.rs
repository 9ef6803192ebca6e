//! Exact tables for the retry schedule: un-jittered delays, jitter bounds,
//! one pinned jittered sequence, extremes, and the give-up boundaries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_policy::{Decision, GiveUpReason, Jitter, RetryPolicy};
use rand::{SeedableRng, rngs::StdRng};
use time::{OffsetDateTime, macros::datetime};

const T0: OffsetDateTime = datetime!(2025-01-01 00:00 UTC);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn unjittered() -> RetryPolicy {
    RetryPolicy {
        jitter: Jitter::None,
        ..RetryPolicy::default()
    }
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(42)
}

#[test]
fn default_policy_matches_the_config_defaults_and_validates() {
    let p = RetryPolicy::default();
    assert_eq!(p.initial_delay, secs(30));
    assert_eq!(p.multiplier, 2.0);
    assert_eq!(p.max_delay, secs(3600));
    assert_eq!(p.min_delay, secs(1));
    assert_eq!(p.max_attempts, 12);
    assert_eq!(p.max_age, secs(3 * 24 * 3600));
    assert_eq!(p.jitter, Jitter::Full);
    assert_eq!(p.validate(), Ok(()));
}

#[test]
fn default_base_schedule_doubles_from_30s_and_caps_at_one_hour() {
    let p = RetryPolicy::default();
    let table: [(u32, u64); 14] = [
        (0, 30), // attempt 0 is treated as attempt 1
        (1, 30),
        (2, 60),
        (3, 120),
        (4, 240),
        (5, 480),
        (6, 960),
        (7, 1920),
        (8, 3600), // 3840 capped
        (9, 3600),
        (10, 3600),
        (11, 3600),
        (12, 3600),
        (13, 3600),
    ];
    for (attempt, want) in table {
        assert_eq!(p.base_delay(attempt), secs(want), "attempt {attempt}");
    }
}

#[test]
fn jitter_none_schedules_are_exact_for_several_policies() {
    let cases: [(RetryPolicy, &[Duration]); 3] = [
        (
            RetryPolicy {
                initial_delay: secs(10),
                multiplier: 1.5,
                max_delay: secs(100),
                ..unjittered()
            },
            &[
                secs(10),
                secs(15),
                ms(22_500),
                ms(33_750),
                ms(50_625),
                Duration::from_micros(75_937_500),
                secs(100),
                secs(100),
            ],
        ),
        (
            RetryPolicy {
                initial_delay: ms(1500),
                multiplier: 3.0,
                max_delay: secs(600),
                ..unjittered()
            },
            &[
                ms(1500),
                ms(4500),
                ms(13_500),
                ms(40_500),
                ms(121_500),
                ms(364_500),
                secs(600),
            ],
        ),
        // A multiplier of 1 is a constant delay.
        (
            RetryPolicy {
                initial_delay: secs(5),
                multiplier: 1.0,
                ..unjittered()
            },
            &[secs(5), secs(5), secs(5), secs(5)],
        ),
    ];
    let mut rng = rng();
    for (policy, want) in cases {
        assert_eq!(policy.validate(), Ok(()));
        for (i, want) in want.iter().enumerate() {
            let attempt = u32::try_from(i).unwrap() + 1;
            assert_eq!(policy.base_delay(attempt), *want, "{policy:?} #{attempt}");
            assert_eq!(
                policy.delay(attempt, &mut rng),
                *want,
                "{policy:?} #{attempt}"
            );
        }
    }
}

#[test]
fn float_growth_rounds_to_whole_nanoseconds() {
    // 1.1^2 is 1.2100000000000002 in f64; the schedule must not show it.
    let p = RetryPolicy {
        initial_delay: secs(1),
        multiplier: 1.1,
        ..unjittered()
    };
    let want = [
        ms(1000),
        ms(1100),
        ms(1210),
        ms(1331),
        Duration::from_micros(1_464_100),
    ];
    for (attempt, want) in (1..).zip(want) {
        assert_eq!(p.base_delay(attempt), want, "attempt {attempt}");
    }
}

#[test]
fn jittered_delays_stay_within_bounds_for_10_000_samples() {
    for jitter in [Jitter::Full, Jitter::Equal] {
        // initial 2s with a 1s floor so that the floor is actually reached.
        let p = RetryPolicy {
            initial_delay: secs(2),
            jitter,
            ..RetryPolicy::default()
        };
        let mut rng = rng();
        let mut floored = 0;
        for i in 0..10_000_u32 {
            let attempt = i % 15 + 1;
            let base = p.base_delay(attempt);
            let d = p.delay(attempt, &mut rng);
            let low = match jitter {
                Jitter::Equal => (base / 2).max(p.min_delay),
                _ => p.min_delay,
            };
            assert!(d >= low && d <= base, "{jitter:?} #{attempt}: {d:?}");
            assert!(d <= p.max_delay);
            floored += usize::from(d == p.min_delay);
        }
        if jitter == Jitter::Full {
            assert!(floored > 0, "the 1s floor was never exercised");
        }
    }
}

#[test]
fn pinned_full_jitter_sequence_for_seed_42() {
    // Pinned so that any change to the algorithm (or to rand's StdRng) is
    // noticed; update deliberately, never casually.
    let want_nanos: [u64; 12] = [
        15_796_722_270,
        32_563_512_594,
        76_375_811_897,
        97_416_421_975,
        16_484_552_618,
        398_358_572_338,
        1_415_854_901_231,
        3_057_305_776_018,
        472_604_001_002,
        11_707_546_870,
        3_355_722_475_834,
        1_822_137_704_807,
    ];
    let p = RetryPolicy::default();
    let mut rng = rng();
    for (attempt, want) in (1..).zip(want_nanos) {
        assert_eq!(
            p.delay(attempt, &mut rng),
            Duration::from_nanos(want),
            "#{attempt}"
        );
    }
}

#[test]
fn pinned_equal_jitter_sequence_for_seed_42() {
    let want_nanos: [u64; 12] = [
        22_898_361_135,
        46_281_756_297,
        98_187_905_949,
        168_708_210_988,
        248_242_276_309,
        679_179_286_169,
        1_667_927_450_616,
        3_328_652_888_009,
        2_036_302_000_501,
        1_805_853_773_435,
        3_477_861_237_917,
        2_711_068_852_404,
    ];
    let p = RetryPolicy {
        jitter: Jitter::Equal,
        ..RetryPolicy::default()
    };
    let mut rng = rng();
    for (attempt, want) in (1..).zip(want_nanos) {
        assert_eq!(
            p.delay(attempt, &mut rng),
            Duration::from_nanos(want),
            "#{attempt}"
        );
    }
}

#[test]
fn extreme_attempts_and_multipliers_neither_panic_nor_overflow() {
    let mut rng = rng();
    for multiplier in [1.0, 2.0, 1e300, f64::MAX] {
        let p = RetryPolicy {
            multiplier,
            ..RetryPolicy::default()
        };
        assert_eq!(p.validate(), Ok(()));
        for attempt in [10_000, u32::MAX - 1, u32::MAX] {
            let want = if multiplier == 1.0 {
                secs(30)
            } else {
                secs(3600)
            };
            assert_eq!(p.base_delay(attempt), want, "{multiplier} #{attempt}");
            let d = p.delay(attempt, &mut rng);
            assert!(d >= p.min_delay && d <= p.max_delay);
        }
    }
    // Unvalidated nonsense still must not panic; it falls back to the cap.
    for multiplier in [f64::INFINITY, f64::NAN, -3.0, 0.5, 0.0] {
        let p = RetryPolicy {
            multiplier,
            ..unjittered()
        };
        assert!(p.validate().is_err());
        for attempt in [1, 2, 10_000, u32::MAX] {
            let d = p.base_delay(attempt);
            assert!(
                d >= p.min_delay && d <= p.max_delay,
                "{multiplier} #{attempt}: {d:?}"
            );
        }
    }
    // A cap beyond anything f64 or u64 nanoseconds can hold.
    let p = RetryPolicy {
        multiplier: 1e300,
        max_delay: Duration::MAX,
        ..RetryPolicy::default()
    };
    assert_eq!(p.base_delay(u32::MAX), Duration::MAX);
    let d = p.delay(u32::MAX, &mut rng);
    assert!(d >= p.min_delay);
    // min_delay > max_delay must not make the clamp panic: the cap wins.
    let p = RetryPolicy {
        min_delay: secs(7200),
        ..unjittered()
    };
    assert_eq!(p.base_delay(1), secs(3600));
}

#[test]
fn next_step_gives_up_at_exactly_max_attempts() {
    let p = unjittered();
    let mut rng = rng();
    assert_eq!(
        p.next_step(11, T0, T0, &mut rng),
        Decision::RetryAt(T0 + secs(3600))
    );
    for attempts_made in [12, 13, u32::MAX] {
        assert_eq!(
            p.next_step(attempts_made, T0, T0, &mut rng),
            Decision::GiveUp(GiveUpReason::MaxAttempts)
        );
    }
    let once = RetryPolicy {
        max_attempts: 1,
        ..unjittered()
    };
    assert_eq!(
        once.next_step(1, T0, T0, &mut rng),
        Decision::GiveUp(GiveUpReason::MaxAttempts)
    );
}

#[test]
fn default_unjittered_life_of_a_message_ends_by_attempts_after_18210s() {
    // With the defaults, 12 attempts end long before the 3-day max_age.
    let p = unjittered();
    let mut rng = rng();
    let mut now = T0;
    let mut gaps = Vec::new();
    for attempts_made in 1.. {
        match p.next_step(attempts_made, T0, now, &mut rng) {
            Decision::RetryAt(at) => {
                gaps.push((at - now).whole_seconds());
                now = at;
            }
            Decision::GiveUp(reason) => {
                assert_eq!(reason, GiveUpReason::MaxAttempts);
                assert_eq!(attempts_made, 12);
                break;
            }
        }
    }
    assert_eq!(
        gaps,
        [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600, 3600]
    );
    assert_eq!(now, T0 + secs(18_210));
}

#[test]
fn next_step_at_the_max_age_boundary_clamps_then_gives_up() {
    // max_age 1h, delay 30s (attempt 1), floor 1s.
    let p = RetryPolicy {
        max_age: secs(3600),
        ..unjittered()
    };
    let deadline = T0 + secs(3600);
    let nano = Duration::from_nanos(1);
    let mut rng = rng();
    let table = [
        // Lands exactly on the deadline: allowed as is.
        (deadline - secs(30), Decision::RetryAt(deadline)),
        // One nanosecond past it: moved back to the deadline.
        (deadline - secs(30) + nano, Decision::RetryAt(deadline)),
        (deadline - secs(5), Decision::RetryAt(deadline)),
        // Exactly min_delay left: still one last try, at the deadline.
        (deadline - secs(1), Decision::RetryAt(deadline)),
        // Less than min_delay left: give up rather than hot-loop.
        (
            deadline - secs(1) + nano,
            Decision::GiveUp(GiveUpReason::MaxAge),
        ),
        (deadline, Decision::GiveUp(GiveUpReason::MaxAge)),
        (
            deadline + secs(86_400),
            Decision::GiveUp(GiveUpReason::MaxAge),
        ),
    ];
    for (now, want) in table {
        assert_eq!(p.next_step(1, T0, now, &mut rng), want, "now = {now}");
    }
}

#[test]
fn next_step_handles_the_edges_of_the_calendar() {
    let mut rng = rng();
    // A max_age past the year 9999 means no age limit.
    let unlimited = RetryPolicy {
        max_age: Duration::MAX,
        ..unjittered()
    };
    assert_eq!(
        unlimited.next_step(1, T0, T0, &mut rng),
        Decision::RetryAt(T0 + secs(30))
    );
    // now + delay overflows the calendar with no deadline: give up.
    let end = datetime!(9999-12-31 23:59:50 UTC);
    assert_eq!(
        unlimited.next_step(1, end, end, &mut rng),
        Decision::GiveUp(GiveUpReason::MaxAge)
    );
    // A huge delay overflows, but the deadline is representable: clamp.
    let huge = RetryPolicy {
        initial_delay: Duration::MAX,
        max_delay: Duration::MAX,
        ..unjittered()
    };
    assert_eq!(
        huge.next_step(1, T0, T0, &mut rng),
        Decision::RetryAt(T0 + huge.max_age)
    );
}

#[test]
fn jittered_lives_never_retry_too_soon_or_past_the_deadline() {
    let p = RetryPolicy {
        max_attempts: 1_000,
        max_age: secs(6 * 3600),
        ..RetryPolicy::default()
    };
    let deadline = T0 + p.max_age;
    let mut rng = rng();
    for _ in 0..200 {
        let mut now = T0;
        let mut attempts_made = 1;
        while let Decision::RetryAt(at) = p.next_step(attempts_made, T0, now, &mut rng) {
            assert!(at - now >= p.min_delay && at - now <= p.max_delay);
            assert!(at <= deadline);
            now = at;
            attempts_made += 1;
        }
        assert!(deadline - now < p.min_delay, "gave up early at {now}");
    }
}

#[test]
fn validation_errors_name_the_field() {
    let d = RetryPolicy::default;
    let cases: [(RetryPolicy, &str); 10] = [
        (
            RetryPolicy {
                multiplier: 0.99,
                ..d()
            },
            "multiplier",
        ),
        (
            RetryPolicy {
                multiplier: f64::NAN,
                ..d()
            },
            "multiplier",
        ),
        (
            RetryPolicy {
                multiplier: f64::INFINITY,
                ..d()
            },
            "multiplier",
        ),
        (
            RetryPolicy {
                multiplier: -2.0,
                ..d()
            },
            "multiplier",
        ),
        (
            RetryPolicy {
                initial_delay: Duration::ZERO,
                min_delay: Duration::ZERO,
                ..d()
            },
            "initial_delay",
        ),
        (
            RetryPolicy {
                initial_delay: secs(3601),
                ..d()
            },
            "initial_delay",
        ),
        (
            RetryPolicy {
                max_delay: secs(29),
                ..d()
            },
            "initial_delay",
        ),
        (
            RetryPolicy {
                min_delay: secs(31),
                ..d()
            },
            "min_delay",
        ),
        (
            RetryPolicy {
                max_attempts: 0,
                ..d()
            },
            "max_attempts",
        ),
        (
            RetryPolicy {
                max_age: Duration::ZERO,
                ..d()
            },
            "max_age",
        ),
    ];
    for (policy, field) in cases {
        let err = policy.validate().unwrap_err();
        assert_eq!(err.field(), field, "{policy:?}");
        assert!(err.to_string().contains(field), "{err}");
    }
    // Edge values that are allowed.
    let ok = RetryPolicy {
        multiplier: 1.0,
        initial_delay: secs(3600),
        min_delay: Duration::ZERO,
        max_attempts: 1,
        ..d()
    };
    assert_eq!(ok.validate(), Ok(()));
}
