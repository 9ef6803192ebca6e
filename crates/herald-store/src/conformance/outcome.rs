//! Recording attempts: who may, and what each kind of result does to the
//! message, its recipients and its history.

use std::time::Duration;

use super::{
    BOB, CAROL, DAVE, LEASE, at, attempt, claim_one, deferred, delivered, event_kinds, failed, get,
    message,
};
use crate::{AttemptOutcome, MessageStatus, NextStep, RecipientStatus, Store, StoreError};

/// Only the lease holder can record; anyone else gets `LeaseLost` and the
/// message is exactly as before.
pub async fn wrong_owner_cannot_record_and_changes_nothing<S: Store>(store: S) {
    let m = message(1, at(0), &[BOB]);
    store.enqueue(m.clone()).await.expect("enqueue");
    let unclaimed = store
        .record_attempt(
            &m.id,
            "worker-1",
            attempt(at(0), vec![delivered(BOB)], NextStep::GiveUp),
        )
        .await;
    assert!(
        matches!(unclaimed, Err(StoreError::LeaseLost)),
        "got {unclaimed:?}"
    );

    claim_one(&store, "worker-1", at(0)).await;
    let before = get(&store, &m.id).await;
    let wrong = store
        .record_attempt(
            &m.id,
            "worker-2",
            attempt(at(1), vec![delivered(BOB)], NextStep::GiveUp),
        )
        .await;
    assert!(matches!(wrong, Err(StoreError::LeaseLost)), "got {wrong:?}");
    assert_eq!(
        get(&store, &m.id).await,
        before,
        "a refused record changes nothing"
    );
}

/// A transient failure defers the message to the retry time; the next
/// claim, not before then, carries only the recipients still open.
pub async fn transient_failure_defers_and_retries_only_open_recipients<S: Store>(store: S) {
    let m = message(1, at(0), &[BOB, CAROL]);
    store.enqueue(m.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(0)).await;
    let status = store
        .record_attempt(
            &m.id,
            "worker-1",
            attempt(
                at(0),
                vec![delivered(BOB), deferred(CAROL)],
                NextStep::RetryAt(at(600)),
            ),
        )
        .await
        .expect("record");
    assert_eq!(status, MessageStatus::Deferred);

    let record = get(&store, &m.id).await;
    assert_eq!(record.status, MessageStatus::Deferred);
    assert_eq!(record.attempts, 1);
    assert_eq!(record.next_attempt_at, Some(at(600)));
    let bob = &record.recipients[0];
    assert_eq!(
        (bob.status, bob.smtp_code),
        (RecipientStatus::Delivered, Some(250))
    );
    let carol = &record.recipients[1];
    assert_eq!(carol.status, RecipientStatus::Deferred);
    assert_eq!(carol.smtp_code, Some(451));
    assert_eq!(carol.enhanced_code.as_deref(), Some("4.7.1"));
    assert_eq!(carol.response.as_deref(), Some("try again later"));
    assert_eq!(
        event_kinds(&store, &m.id).await,
        ["queued", "attempt", "deferred"]
    );

    let early = store
        .claim("worker-2", 10, LEASE, at(599))
        .await
        .expect("claim");
    assert!(early.is_empty(), "claimed before its retry time: {early:?}");
    let retry = claim_one(&store, "worker-2", at(600)).await;
    assert_eq!(
        retry.recipients,
        [CAROL.to_owned()],
        "delivered recipients are not sent again"
    );
    assert_eq!(retry.attempts, 1);
}

/// Every recipient refused for good: the message fails, finally.
pub async fn permanent_failure_fails_the_message<S: Store>(store: S) {
    let m = message(1, at(0), &[BOB]);
    store.enqueue(m.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(0)).await;
    // The policy may still offer a retry time; nobody is left to retry.
    let status = store
        .record_attempt(
            &m.id,
            "worker-1",
            attempt(at(0), vec![failed(BOB)], NextStep::RetryAt(at(600))),
        )
        .await
        .expect("record");
    assert_eq!(status, MessageStatus::Failed);
    let record = get(&store, &m.id).await;
    assert_eq!(record.status, MessageStatus::Failed);
    assert_eq!(record.next_attempt_at, None);
    let bob = &record.recipients[0];
    assert_eq!(bob.status, RecipientStatus::Failed);
    assert_eq!(bob.smtp_code, Some(550));
    assert_eq!(bob.enhanced_code.as_deref(), Some("5.1.1"));
    assert_eq!(bob.response.as_deref(), Some("user unknown"));
    assert_eq!(
        event_kinds(&store, &m.id).await,
        ["queued", "attempt", "failed"]
    );
    assert!(
        store
            .claim("w", 10, LEASE, at(10_000))
            .await
            .expect("claim")
            .is_empty()
    );
    assert_eq!(store.depth().await.expect("depth"), 0);
}

/// Some recipients accepted, others refused: `partial`, and each recipient
/// tells its own story.
pub async fn mixed_results_are_partial_with_per_recipient_detail<S: Store>(store: S) {
    let m = message(1, at(0), &[BOB, CAROL]);
    store.enqueue(m.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(0)).await;
    let status = store
        .record_attempt(
            &m.id,
            "worker-1",
            attempt(
                at(0),
                vec![delivered(BOB), failed(CAROL)],
                NextStep::RetryAt(at(600)),
            ),
        )
        .await
        .expect("record");
    assert_eq!(status, MessageStatus::Partial);
    let record = get(&store, &m.id).await;
    assert_eq!(record.status, MessageStatus::Partial);
    let states: Vec<_> = record
        .recipients
        .iter()
        .map(|r| {
            (
                r.address.as_str(),
                r.status,
                r.smtp_code,
                r.response.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (
                BOB,
                RecipientStatus::Delivered,
                Some(250),
                Some("OK queued as ABC")
            ),
            (
                CAROL,
                RecipientStatus::Failed,
                Some(550),
                Some("user unknown")
            ),
        ]
    );
    assert_eq!(
        event_kinds(&store, &m.id).await,
        ["queued", "attempt", "partial"]
    );
}

/// Giving up fails every recipient still open: a deferred one keeps its
/// last reply, one never answered says "retries exhausted".
pub async fn give_up_fails_open_recipients<S: Store>(store: S) {
    let m = message(1, at(0), &[BOB, CAROL, DAVE]);
    store.enqueue(m.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(0)).await;
    // Dave's result never came (the connection dropped before his turn).
    let status = store
        .record_attempt(
            &m.id,
            "worker-1",
            attempt(
                at(0),
                vec![delivered(BOB), deferred(CAROL)],
                NextStep::GiveUp,
            ),
        )
        .await
        .expect("record");
    assert_eq!(status, MessageStatus::Partial);
    let record = get(&store, &m.id).await;
    let carol = &record.recipients[1];
    assert_eq!(carol.status, RecipientStatus::Failed);
    assert_eq!(carol.smtp_code, Some(451));
    assert_eq!(carol.response.as_deref(), Some("try again later"));
    let dave = &record.recipients[2];
    assert_eq!(dave.status, RecipientStatus::Failed);
    assert_eq!(dave.response.as_deref(), Some("retries exhausted"));

    let lone = message(2, at(1), &[BOB]);
    store.enqueue(lone.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(1)).await;
    let status = store
        .record_attempt(
            &lone.id,
            "worker-1",
            attempt(at(1), vec![deferred(BOB)], NextStep::GiveUp),
        )
        .await
        .expect("record");
    assert_eq!(status, MessageStatus::Failed);
    assert_eq!(
        get(&store, &lone.id).await.recipients[0].status,
        RecipientStatus::Failed
    );
}

/// Every recipient accepted: `delivered`, the lease gone, nothing due.
pub async fn all_accepted_is_delivered<S: Store>(store: S) {
    let m = message(1, at(0), &[BOB, CAROL]);
    store.enqueue(m.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(0)).await;
    let status = store
        .record_attempt(
            &m.id,
            "worker-1",
            attempt(
                at(0),
                vec![delivered(BOB), delivered(CAROL)],
                NextStep::GiveUp,
            ),
        )
        .await
        .expect("record");
    assert_eq!(status, MessageStatus::Delivered);
    let record = get(&store, &m.id).await;
    assert_eq!(record.status, MessageStatus::Delivered);
    assert_eq!(record.attempts, 1);
    assert_eq!(record.next_attempt_at, None);
    assert!(
        record
            .recipients
            .iter()
            .all(|r| r.status == RecipientStatus::Delivered)
    );
    assert_eq!(
        event_kinds(&store, &m.id).await,
        ["queued", "attempt", "delivered"]
    );
    let release = store.release(&m.id, "worker-1").await;
    assert!(
        matches!(release, Err(StoreError::LeaseLost)),
        "the lease ended: {release:?}"
    );
    assert!(
        store
            .claim("w", 10, LEASE, at(10_000))
            .await
            .expect("claim")
            .is_empty()
    );
}

/// The history reads in order, each event with its details: attempt
/// numbers, relay, outcome, codes, duration.
pub async fn events_tell_the_story_in_order<S: Store>(store: S) {
    let m = message(1, at(0), &[BOB]);
    store.enqueue(m.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(0)).await;
    store
        .record_attempt(
            &m.id,
            "worker-1",
            attempt(at(0), vec![deferred(BOB)], NextStep::RetryAt(at(600))),
        )
        .await
        .expect("first attempt");
    claim_one(&store, "worker-2", at(600)).await;
    store
        .record_attempt(
            &m.id,
            "worker-2",
            attempt(at(600), vec![delivered(BOB)], NextStep::GiveUp),
        )
        .await
        .expect("second attempt");

    let events = get(&store, &m.id).await.events;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["queued", "attempt", "deferred", "attempt", "delivered"]
    );
    assert!(
        events.windows(2).all(|w| w[0].at <= w[1].at),
        "events out of time order: {events:?}"
    );
    let first = &events[1];
    assert_eq!(first.at, at(0));
    assert_eq!(first.attempt, Some(1));
    assert_eq!(first.relay.as_deref(), Some("primary"));
    assert_eq!(first.outcome, Some(AttemptOutcome::Transient));
    assert_eq!(first.smtp_code, Some(451));
    assert_eq!(first.enhanced_code.as_deref(), Some("4.7.1"));
    assert_eq!(first.detail.as_deref(), Some("451 4.7.1 try again later"));
    assert_eq!(first.duration_ms, Some(84));
    let second = &events[3];
    assert_eq!(second.attempt, Some(2));
    assert_eq!(second.outcome, Some(AttemptOutcome::Delivered));
    assert_eq!(second.smtp_code, Some(250));
    assert!(events[4].at >= at(600) && events[4].at <= at(600) + Duration::from_secs(1));
}
