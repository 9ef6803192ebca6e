//! Claims and leases: exclusive, oldest first, expiring, extendable,
//! releasable.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{BOB, LEASE, at, attempt, claim_one, deferred, delivered, event_kinds, get, message};
use crate::{Leases, MessageStatus, NextStep, Store, StoreError};

/// Two workers claiming at once from 100 due messages get disjoint sets
/// that together are all 100.
pub async fn claim_is_exclusive_under_concurrency<S: Store>(store: S) {
    let messages: Vec<_> = (0..100).map(|n| message(n, at(0), &[BOB])).collect();
    let all: BTreeSet<String> = messages.iter().map(|m| m.id.clone()).collect();
    let results = store.enqueue_batch(messages).await.expect("batch");
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    let store = Arc::new(store);
    let worker = |owner: &'static str| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.claim(owner, 7, LEASE, at(10)).await.expect("claim");
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|c| c.id));
            }
        })
    };
    let (a, b) = (worker("worker-a"), worker("worker-b"));
    let a = a.await.expect("worker a");
    let b = b.await.expect("worker b");

    let set_a: BTreeSet<String> = a.iter().cloned().collect();
    let set_b: BTreeSet<String> = b.iter().cloned().collect();
    assert_eq!(set_a.len(), a.len(), "worker a got a message twice");
    assert_eq!(set_b.len(), b.len(), "worker b got a message twice");
    let both: Vec<_> = set_a.intersection(&set_b).collect();
    assert!(both.is_empty(), "claimed by both workers: {both:?}");
    let union: BTreeSet<String> = set_a.union(&set_b).cloned().collect();
    assert_eq!(union, all, "every due message is claimed once");
    let sample = get(
        store.as_ref(),
        &a.first().or(b.first()).expect("some claim").clone(),
    )
    .await;
    assert_eq!(sample.status, MessageStatus::Sending);
}

/// Claims hand out the longest-due messages first (scheduled ones by
/// their send time) and never more than asked.
pub async fn claim_takes_oldest_due_first_within_limit<S: Store>(store: S) {
    let newest = message(1, at(5), &[BOB]);
    let oldest = message(2, at(1), &[BOB]);
    let middle = message(3, at(3), &[BOB]);
    let mut scheduled = message(4, at(0), &[BOB]);
    scheduled.send_at = Some(at(2));
    for m in [&newest, &oldest, &middle, &scheduled] {
        store.enqueue(m.clone()).await.expect("enqueue");
    }
    assert!(
        store
            .claim("w", 0, LEASE, at(10))
            .await
            .expect("claim 0")
            .is_empty()
    );
    let first: Vec<String> = store
        .claim("w", 2, LEASE, at(10))
        .await
        .expect("claim")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(first, [oldest.id.clone(), scheduled.id.clone()]);
    let rest: Vec<String> = store
        .claim("w", 10, LEASE, at(10))
        .await
        .expect("claim")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(rest, [middle.id.clone(), newest.id.clone()]);
}

/// While a lease holds, nobody else gets the message; once it has expired
/// another worker does, and the first worker's late result is refused.
pub async fn expired_lease_goes_to_another_owner<S: Store>(store: S) {
    let m = message(1, at(0), &[BOB]);
    store.enqueue(m.clone()).await.expect("enqueue");
    let first = claim_one(&store, "worker-1", at(0)).await;
    assert_eq!(first.lease_until, at(60));

    let during = store
        .claim("worker-2", 10, LEASE, at(30))
        .await
        .expect("claim");
    assert!(during.is_empty(), "claimed under a live lease: {during:?}");

    let second = claim_one(&store, "worker-2", at(61)).await;
    assert_eq!(second.id, m.id);
    assert_eq!(second.attempts, 0, "an expired lease is not an attempt");
    assert_eq!(second.lease_until, at(121));
    assert_eq!(
        event_kinds(&store, &m.id).await,
        ["queued", "lease_expired"]
    );

    let late = store
        .record_attempt(
            &m.id,
            "worker-1",
            attempt(at(5), vec![delivered(BOB)], NextStep::GiveUp),
        )
        .await;
    assert!(matches!(late, Err(StoreError::LeaseLost)), "got {late:?}");
    let status = store
        .record_attempt(
            &m.id,
            "worker-2",
            attempt(at(62), vec![delivered(BOB)], NextStep::GiveUp),
        )
        .await
        .expect("the new owner records");
    assert_eq!(status, MessageStatus::Delivered);
}

/// Extending a lease keeps the message from other workers past the first
/// deadline; only the owner may extend it.
pub async fn extend_lease_keeps_the_claim<S: Store>(store: S) {
    let m = message(1, at(0), &[BOB]);
    store.enqueue(m.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(0)).await;
    store
        .extend_lease(&m.id, "worker-1", at(120))
        .await
        .expect("owner extends");
    let stolen = store.extend_lease(&m.id, "worker-2", at(500)).await;
    assert!(
        matches!(stolen, Err(StoreError::LeaseLost)),
        "got {stolen:?}"
    );
    let during = store
        .claim("worker-2", 10, LEASE, at(90))
        .await
        .expect("claim");
    assert!(
        during.is_empty(),
        "claimed under an extended lease: {during:?}"
    );
    assert_eq!(claim_one(&store, "worker-2", at(121)).await.id, m.id);
    let old = store.extend_lease(&m.id, "worker-1", at(300)).await;
    assert!(matches!(old, Err(StoreError::LeaseLost)), "got {old:?}");
}

/// A released message is due again at once, its attempt count unchanged;
/// only its owner can release it.
pub async fn release_makes_the_message_due_again<S: Store>(store: S) {
    let m = message(1, at(0), &[BOB]);
    store.enqueue(m.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(10)).await;
    let wrong = store.release(&m.id, "worker-2").await;
    assert!(matches!(wrong, Err(StoreError::LeaseLost)), "got {wrong:?}");
    store.release(&m.id, "worker-1").await.expect("release");
    let record = get(&store, &m.id).await;
    assert_eq!((record.status, record.attempts), (MessageStatus::Queued, 0));
    let again = claim_one(&store, "worker-2", at(10)).await;
    assert_eq!(again.attempts, 0);

    // After an attempt, a released message is waiting for a retry.
    store
        .record_attempt(
            &m.id,
            "worker-2",
            attempt(at(10), vec![deferred(BOB)], NextStep::RetryAt(at(100))),
        )
        .await
        .expect("record");
    claim_one(&store, "worker-3", at(100)).await;
    store.release(&m.id, "worker-3").await.expect("release");
    let record = get(&store, &m.id).await;
    assert_eq!(
        (record.status, record.attempts),
        (MessageStatus::Deferred, 1)
    );
    assert_eq!(claim_one(&store, "worker-4", at(100)).await.attempts, 1);

    let twice = store.release(&m.id, "worker-3").await;
    assert!(matches!(twice, Err(StoreError::LeaseLost)), "got {twice:?}");
}

/// A message put off for a quota is deferred to the reset with an event
/// that says why, its attempt count and recipients untouched (quota waits
/// never eat `max_attempts`); only the lease holder may put it off, and
/// it is claimable again at the reset, not before.
pub async fn postpone_defers_without_spending_an_attempt<S: Store>(store: S) {
    let m = message(1, at(0), &[BOB]);
    store.enqueue(m.clone()).await.expect("enqueue");
    let postponed = |now: i64, until: i64| crate::Postponed {
        until: at(until),
        at: at(now),
        relay: "gmail".to_owned(),
        detail: "not tried: the daily quota of relay gmail (500) is spent".to_owned(),
    };
    // Tried once already (a transient failure), then held by a quota.
    claim_one(&store, "worker-1", at(0)).await;
    store
        .record_attempt(
            &m.id,
            "worker-1",
            attempt(at(0), vec![deferred(BOB)], NextStep::RetryAt(at(10))),
        )
        .await
        .expect("record");
    claim_one(&store, "worker-2", at(10)).await;
    let before = get(&store, &m.id).await;
    let wrong = store.postpone(&m.id, "worker-1", postponed(10, 500)).await;
    assert!(matches!(wrong, Err(StoreError::LeaseLost)), "got {wrong:?}");
    assert_eq!(
        get(&store, &m.id).await,
        before,
        "a refused postpone changes nothing"
    );

    store
        .postpone(&m.id, "worker-2", postponed(10, 500))
        .await
        .expect("postpone");
    let record = get(&store, &m.id).await;
    assert_eq!(record.status, MessageStatus::Deferred);
    assert_eq!(record.attempts, 1, "a quota wait is not an attempt");
    assert_eq!(record.next_attempt_at, Some(at(500)));
    assert_eq!(record.recipients, before.recipients);
    let last = record.events.last().expect("an event");
    assert_eq!(last.kind, crate::EventKind::Deferred);
    assert_eq!(last.at, at(10));
    assert_eq!(last.relay.as_deref(), Some("gmail"));
    assert!(last.detail.as_deref().unwrap_or_default().contains("quota"));
    let attempts = record
        .events
        .iter()
        .filter(|e| e.kind == crate::EventKind::Attempt)
        .count();
    assert_eq!(attempts, 1, "no attempt event for the wait");

    assert!(
        store
            .claim("worker-3", 10, LEASE, at(499))
            .await
            .expect("claim")
            .is_empty(),
        "due at the reset, not before"
    );
    let again = claim_one(&store, "worker-3", at(500)).await;
    assert_eq!(again.attempts, 1);
    let twice = store.postpone(&m.id, "worker-2", postponed(500, 900)).await;
    assert!(matches!(twice, Err(StoreError::LeaseLost)), "got {twice:?}");
}

/// `reclaim(Leases::Expired)` turns expired leases (only those) back into due
/// messages with a `lease_expired` event: `queued` if never attempted,
/// `deferred` otherwise.
pub async fn reclaim_expired_makes_leases_due_again<S: Store>(store: S) {
    let fresh = message(1, at(0), &[BOB]);
    let tried = message(2, at(1), &[BOB]);
    store.enqueue(fresh.clone()).await.expect("enqueue");
    store.enqueue(tried.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(0)).await;
    claim_one(&store, "worker-1", at(1)).await;
    store
        .record_attempt(
            &tried.id,
            "worker-1",
            attempt(at(1), vec![deferred(BOB)], NextStep::RetryAt(at(10))),
        )
        .await
        .expect("record");
    assert_eq!(claim_one(&store, "worker-2", at(10)).await.id, tried.id);
    // fresh: lease until 60; tried: lease until 70.

    assert_eq!(
        store
            .reclaim(Leases::Expired, at(30))
            .await
            .expect("reclaim"),
        0
    );
    assert_eq!(get(&store, &fresh.id).await.status, MessageStatus::Sending);
    assert_eq!(
        store
            .reclaim(Leases::Expired, at(65))
            .await
            .expect("reclaim"),
        1
    );
    let record = get(&store, &fresh.id).await;
    assert_eq!(record.status, MessageStatus::Queued);
    assert_eq!(record.next_attempt_at, Some(at(65)));
    assert_eq!(
        event_kinds(&store, &fresh.id).await,
        ["queued", "lease_expired"]
    );
    assert_eq!(get(&store, &tried.id).await.status, MessageStatus::Sending);

    assert_eq!(
        store
            .reclaim(Leases::Expired, at(70))
            .await
            .expect("reclaim"),
        1
    );
    let record = get(&store, &tried.id).await;
    assert_eq!(
        (record.status, record.attempts),
        (MessageStatus::Deferred, 1)
    );

    let late = store
        .record_attempt(
            &fresh.id,
            "worker-1",
            attempt(at(2), vec![delivered(BOB)], NextStep::GiveUp),
        )
        .await;
    assert!(matches!(late, Err(StoreError::LeaseLost)), "got {late:?}");
    let due: Vec<String> = store
        .claim("worker-3", 10, LEASE, at(70))
        .await
        .expect("claim")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(due, [fresh.id.clone(), tried.id.clone()]);
}
