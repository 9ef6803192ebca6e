//! Relay limits that every node shares: a daily quota counted per period,
//! and a rate's slots taken by the GCRA rule.

use std::sync::Arc;
use std::time::Duration;

use herald_policy::{Rate, RateLimit};

use super::at;
use crate::Store;

/// A quota counts up to its limit, then refuses without counting; giving
/// one back frees it; the next period starts from zero; relays count apart.
pub async fn a_quota_counts_to_its_limit_and_resets_with_the_period<S: Store>(store: S) {
    let (day1, day2) = (at(0), at(86_400));
    for n in 1..=3 {
        assert!(
            store.take_quota("gmail", day1, 3).await.expect("take"),
            "take {n} of 3"
        );
    }
    assert!(
        !store.take_quota("gmail", day1, 3).await.expect("take"),
        "the 4th"
    );
    assert_eq!(store.quota_used("gmail", day1).await.expect("used"), 3);
    store.return_quota("gmail", day1).await.expect("give back");
    assert_eq!(store.quota_used("gmail", day1).await.expect("used"), 2);
    assert!(store.take_quota("gmail", day1, 3).await.expect("take"));
    assert!(!store.take_quota("gmail", day1, 3).await.expect("take"));
    // Another relay has its own count.
    assert_eq!(store.quota_used("qq", day1).await.expect("used"), 0);
    assert!(store.take_quota("qq", day1, 1).await.expect("take"));
    // The next day starts again; the old day no longer counts.
    assert_eq!(store.quota_used("gmail", day2).await.expect("used"), 0);
    assert!(store.take_quota("gmail", day2, 3).await.expect("take"));
    assert_eq!(store.quota_used("gmail", day2).await.expect("used"), 1);
    assert_eq!(store.quota_used("gmail", day1).await.expect("used"), 0);
    // A lagging node's old period counts against the current one.
    assert!(store.take_quota("gmail", day1, 3).await.expect("take"));
    assert_eq!(store.quota_used("gmail", day2).await.expect("used"), 2);
    // Giving back to a period that is over changes nothing.
    store.return_quota("gmail", day1).await.expect("give back");
    assert_eq!(store.quota_used("gmail", day2).await.expect("used"), 2);
}

/// Concurrent takers never take more than the quota between them.
pub async fn a_quota_is_never_overdrawn_under_concurrency<S: Store>(store: S) {
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut taken = 0u64;
            for _ in 0..10 {
                if store.take_quota("shared", at(0), 25).await.expect("take") {
                    taken += 1;
                }
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
/// wait until the next one when none is free.
pub async fn rate_slots_follow_the_gcra_rule<S: Store>(store: S) {
    let limit = RateLimit {
        rate: Rate {
            count: 2,
            per: Duration::from_secs(1),
        },
        burst: 2,
    };
    let ms = |n: i64| at(0) + time::Duration::milliseconds(n);
    assert_eq!(
        store.take_rate_slot("r", limit, ms(0)).await.expect("slot"),
        None
    );
    assert_eq!(
        store.take_rate_slot("r", limit, ms(0)).await.expect("slot"),
        None
    );
    assert_eq!(
        store.take_rate_slot("r", limit, ms(0)).await.expect("slot"),
        Some(Duration::from_millis(500)),
        "burst spent: the next slot in one interval"
    );
    assert_eq!(
        store
            .take_rate_slot("r", limit, ms(200))
            .await
            .expect("slot"),
        Some(Duration::from_millis(300))
    );
    assert_eq!(
        store
            .take_rate_slot("r", limit, ms(500))
            .await
            .expect("slot"),
        None
    );
    // Another relay is not held up.
    assert_eq!(
        store
            .take_rate_slot("s", limit, ms(500))
            .await
            .expect("slot"),
        None
    );
    // After a quiet spell the whole burst is back.
    assert_eq!(
        store
            .take_rate_slot("r", limit, ms(5_000))
            .await
            .expect("slot"),
        None
    );
    assert_eq!(
        store
            .take_rate_slot("r", limit, ms(5_000))
            .await
            .expect("slot"),
        None
    );
    assert!(
        store
            .take_rate_slot("r", limit, ms(5_000))
            .await
            .expect("slot")
            .is_some()
    );
}
