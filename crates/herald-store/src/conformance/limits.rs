//! Relay limits that every node shares: a daily quota counted per period
//! (taken one unit or a block at a time), and a rate's slots taken by the
//! GCRA rule (one or several at once).

use std::sync::Arc;
use std::time::Duration;

use herald_policy::{Rate, RateLimit};

use super::at;
use crate::{RateSlots, Store};

/// A quota counts up to its limit, then refuses without counting; giving
/// one back frees it; the next period starts from zero; relays count apart.
pub async fn a_quota_counts_to_its_limit_and_resets_with_the_period<S: Store>(store: S) {
    let (day1, day2) = (at(0), at(86_400));
    let take = |relay: &'static str, period, limit| {
        let store = &store;
        async move {
            store
                .take_quota(relay, period, limit, 1)
                .await
                .expect("take")
        }
    };
    for n in 1..=3 {
        assert_eq!(take("gmail", day1, 3).await, 1, "take {n} of 3");
    }
    assert_eq!(take("gmail", day1, 3).await, 0, "the 4th");
    assert_eq!(store.quota_used("gmail", day1).await.expect("used"), 3);
    store
        .return_quota("gmail", day1, 1)
        .await
        .expect("give back");
    assert_eq!(store.quota_used("gmail", day1).await.expect("used"), 2);
    assert_eq!(take("gmail", day1, 3).await, 1);
    assert_eq!(take("gmail", day1, 3).await, 0);
    // Another relay has its own count.
    assert_eq!(store.quota_used("qq", day1).await.expect("used"), 0);
    assert_eq!(take("qq", day1, 1).await, 1);
    // The next day starts again; the old day no longer counts.
    assert_eq!(store.quota_used("gmail", day2).await.expect("used"), 0);
    assert_eq!(take("gmail", day2, 3).await, 1);
    assert_eq!(store.quota_used("gmail", day2).await.expect("used"), 1);
    assert_eq!(store.quota_used("gmail", day1).await.expect("used"), 0);
    // A lagging node's old period counts against the current one.
    assert_eq!(take("gmail", day1, 3).await, 1);
    assert_eq!(store.quota_used("gmail", day2).await.expect("used"), 2);
    // Giving back to a period that is over changes nothing.
    store
        .return_quota("gmail", day1, 1)
        .await
        .expect("give back");
    assert_eq!(store.quota_used("gmail", day2).await.expect("used"), 2);
}

/// A block takes as many units as asked while they last, then what is
/// left, then nothing; giving a block back frees all of it but never
/// takes the count below zero.
pub async fn a_quota_hands_out_blocks_and_takes_them_back<S: Store>(store: S) {
    let day = at(0);
    let take = |want| {
        let store = &store;
        async move { store.take_quota("ses", day, 10, want).await.expect("take") }
    };
    assert_eq!(take(4).await, 4);
    assert_eq!(take(4).await, 4);
    assert_eq!(take(4).await, 2, "only 2 of 10 were left");
    assert_eq!(take(4).await, 0, "spent");
    assert_eq!(store.quota_used("ses", day).await.expect("used"), 10);
    store.return_quota("ses", day, 3).await.expect("give back");
    assert_eq!(store.quota_used("ses", day).await.expect("used"), 7);
    assert_eq!(take(5).await, 3);
    store.return_quota("ses", day, 50).await.expect("give back");
    assert_eq!(store.quota_used("ses", day).await.expect("used"), 0);
    // A new period's first block.
    let next = at(86_400);
    assert_eq!(store.take_quota("ses", next, 10, 4).await.expect("take"), 4);
    assert_eq!(store.quota_used("ses", next).await.expect("used"), 4);
}

/// Concurrent takers never take more than the quota between them, in
/// single units or in blocks.
pub async fn a_quota_is_never_overdrawn_under_concurrency<S: Store>(store: S) {
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for taker in 0..8u64 {
        let store = Arc::clone(&store);
        // Half take one at a time, half blocks of three.
        let want = if taker % 2 == 0 { 1 } else { 3 };
        tasks.push(tokio::spawn(async move {
            let mut taken = 0u64;
            for _ in 0..10 {
                taken += store
                    .take_quota("shared", at(0), 25, want)
                    .await
                    .expect("take");
            }
            taken
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("taker");
    }
    assert_eq!(total, 25);
    assert_eq!(store.quota_used("shared", at(0)).await.expect("used"), 25);
}

/// The rate's slots: a burst at once, then one per interval, with the
/// wait until the next one when none is free; several slots taken at
/// once move the rule as far as taking them one by one.
pub async fn rate_slots_follow_the_gcra_rule<S: Store>(store: S) {
    let limit = RateLimit {
        rate: Rate {
            count: 2,
            per: Duration::from_secs(1),
        },
        burst: 2,
    };
    let ms = |n: i64| at(0) + time::Duration::milliseconds(n);
    let take = |relay: &'static str, now, count| {
        let store = &store;
        async move {
            store
                .take_rate_slots(relay, limit, now, count)
                .await
                .expect("slot")
        }
    };
    let taken = |count, ahead_ms| RateSlots::Taken {
        count,
        ahead: Duration::from_millis(ahead_ms),
    };
    let wait = |n| RateSlots::Wait(Duration::from_millis(n));
    assert_eq!(take("r", ms(0), 1).await, taken(1, 0));
    assert_eq!(take("r", ms(0), 1).await, taken(1, 500));
    assert_eq!(
        take("r", ms(0), 1).await,
        wait(500),
        "burst spent: the next slot in one interval"
    );
    assert_eq!(take("r", ms(200), 1).await, wait(300));
    assert_eq!(take("r", ms(500), 1).await, taken(1, 500));
    // Another relay is not held up.
    assert_eq!(take("s", ms(500), 1).await, taken(1, 0));
    // After a quiet spell the whole burst is back.
    assert_eq!(take("r", ms(5_000), 1).await, taken(1, 0));
    assert_eq!(take("r", ms(5_000), 1).await, taken(1, 500));
    assert!(matches!(take("r", ms(5_000), 1).await, RateSlots::Wait(_)));

    // Four at once from idle: the rule moves on by four intervals, so
    // the next slot is free two seconds later (less the burst's 500 ms).
    assert_eq!(take("b", ms(0), 4).await, taken(4, 0));
    assert_eq!(take("b", ms(0), 1).await, wait(1_500));
    assert_eq!(take("b", ms(1_500), 2).await, taken(2, 500));
}
