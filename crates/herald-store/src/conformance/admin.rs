//! A user's changes: cancel and retry, and what they may not do.

use super::{
    BOB, CAROL, LEASE, at, attempt, claim_one, delivered, event_kinds, failed, get, message,
};
use crate::{MessageStatus, NextStep, RecipientStatus, Store, StoreError};

/// Cancelling a waiting message (queued or scheduled) fails its open
/// recipients as "cancelled"; it is never claimed; a second cancel is
/// illegal.
pub async fn cancel_stops_a_queued_or_scheduled_message<S: Store>(store: S) {
    let queued = message(1, at(0), &[BOB, CAROL]);
    let mut scheduled = message(2, at(0), &[BOB]);
    scheduled.send_at = Some(at(3600));
    store.enqueue(queued.clone()).await.expect("enqueue");
    store.enqueue(scheduled.clone()).await.expect("enqueue");

    let record = store.cancel(&queued.id, at(5)).await.expect("cancel");
    assert_eq!(record.status, MessageStatus::Cancelled);
    assert_eq!(record.updated_at, at(5));
    assert_eq!(record.next_attempt_at, None);
    for r in &record.recipients {
        assert_eq!(r.status, RecipientStatus::Failed, "{r:?}");
        assert_eq!(r.response.as_deref(), Some("cancelled"));
    }
    assert_eq!(
        record.events.last().map(|e| e.kind.as_str()),
        Some("cancelled")
    );
    assert_eq!(
        get(&store, &queued.id).await,
        record,
        "cancel answers with the stored record"
    );

    let record = store.cancel(&scheduled.id, at(6)).await.expect("cancel");
    assert_eq!(record.status, MessageStatus::Cancelled);
    assert!(
        store
            .claim("w", 10, LEASE, at(10_000))
            .await
            .expect("claim")
            .is_empty()
    );
    assert_eq!(store.depth().await.expect("depth"), 0);

    let again = store.cancel(&queued.id, at(7)).await;
    assert!(
        matches!(
            again,
            Err(StoreError::IllegalState(MessageStatus::Cancelled))
        ),
        "got {again:?}"
    );
}

/// A final message cannot be cancelled, and stays as it was.
pub async fn cancel_final_message_is_illegal<S: Store>(store: S) {
    let m = message(1, at(0), &[BOB]);
    store.enqueue(m.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(0)).await;
    store
        .record_attempt(
            &m.id,
            "worker-1",
            attempt(at(0), vec![delivered(BOB)], NextStep::GiveUp),
        )
        .await
        .expect("record");
    let before = get(&store, &m.id).await;
    let answer = store.cancel(&m.id, at(5)).await;
    assert!(
        matches!(
            answer,
            Err(StoreError::IllegalState(MessageStatus::Delivered))
        ),
        "got {answer:?}"
    );
    assert_eq!(get(&store, &m.id).await, before);
}

/// Cancelling a message while a worker sends it wins: the worker's result
/// is refused with `LeaseLost` and the message stays cancelled.
pub async fn cancel_while_sending_makes_the_worker_lose_its_lease<S: Store>(store: S) {
    let m = message(1, at(0), &[BOB]);
    store.enqueue(m.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(0)).await;
    let record = store
        .cancel(&m.id, at(1))
        .await
        .expect("cancel while sending");
    assert_eq!(record.status, MessageStatus::Cancelled);

    let late = store
        .record_attempt(
            &m.id,
            "worker-1",
            attempt(at(0), vec![delivered(BOB)], NextStep::GiveUp),
        )
        .await;
    assert!(matches!(late, Err(StoreError::LeaseLost)), "got {late:?}");
    let extend = store.extend_lease(&m.id, "worker-1", at(100)).await;
    assert!(
        matches!(extend, Err(StoreError::LeaseLost)),
        "got {extend:?}"
    );
    let release = store.release(&m.id, "worker-1").await;
    assert!(
        matches!(release, Err(StoreError::LeaseLost)),
        "got {release:?}"
    );

    let after = get(&store, &m.id).await;
    assert_eq!(
        (after.status, after.attempts),
        (MessageStatus::Cancelled, 0)
    );
    assert_eq!(event_kinds(&store, &m.id).await, ["queued", "cancelled"]);
    assert!(
        store
            .claim("w", 10, LEASE, at(10_000))
            .await
            .expect("claim")
            .is_empty()
    );
}

/// Retrying a partial message requeues only its failed recipients, due
/// now, attempts kept; delivering them makes the message delivered.
pub async fn retry_requeues_only_failed_recipients<S: Store>(store: S) {
    let m = message(1, at(0), &[BOB, CAROL]);
    store.enqueue(m.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(0)).await;
    store
        .record_attempt(
            &m.id,
            "worker-1",
            attempt(at(0), vec![delivered(BOB), failed(CAROL)], NextStep::GiveUp),
        )
        .await
        .expect("record");

    let record = store.retry(&m.id, at(100)).await.expect("retry");
    assert_eq!(record.status, MessageStatus::Queued);
    assert_eq!(record.attempts, 1, "retry keeps the attempt count");
    assert_eq!(record.next_attempt_at, Some(at(100)));
    let states: Vec<_> = record.recipients.iter().map(|r| r.status).collect();
    assert_eq!(
        states,
        [RecipientStatus::Delivered, RecipientStatus::Pending]
    );
    assert_eq!(
        record.events.last().map(|e| e.kind.as_str()),
        Some("retried")
    );

    let again = claim_one(&store, "worker-2", at(100)).await;
    assert_eq!(again.recipients, [CAROL.to_owned()]);
    let status = store
        .record_attempt(
            &m.id,
            "worker-2",
            attempt(at(100), vec![delivered(CAROL)], NextStep::GiveUp),
        )
        .await
        .expect("record");
    assert_eq!(status, MessageStatus::Delivered);
    assert_eq!(
        event_kinds(&store, &m.id).await,
        [
            "queued",
            "attempt",
            "partial",
            "retried",
            "attempt",
            "delivered"
        ]
    );

    // A wholly failed message comes back whole.
    let lost = message(2, at(200), &[BOB]);
    store.enqueue(lost.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(200)).await;
    store
        .record_attempt(
            &lost.id,
            "worker-1",
            attempt(at(200), vec![failed(BOB)], NextStep::GiveUp),
        )
        .await
        .expect("record");
    let record = store.retry(&lost.id, at(300)).await.expect("retry");
    assert_eq!(record.status, MessageStatus::Queued);
    assert_eq!(record.recipients[0].status, RecipientStatus::Pending);
}

/// Retry is only for failed or partial messages.
pub async fn retry_of_unfinished_or_delivered_is_illegal<S: Store>(store: S) {
    let done = message(1, at(0), &[BOB]);
    let waiting = message(2, at(1), &[BOB]);
    store.enqueue(done.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(0)).await;
    store
        .record_attempt(
            &done.id,
            "worker-1",
            attempt(at(0), vec![delivered(BOB)], NextStep::GiveUp),
        )
        .await
        .expect("record");
    store.enqueue(waiting.clone()).await.expect("enqueue");

    let answer = store.retry(&done.id, at(5)).await;
    assert!(
        matches!(
            answer,
            Err(StoreError::IllegalState(MessageStatus::Delivered))
        ),
        "got {answer:?}"
    );
    let answer = store.retry(&waiting.id, at(5)).await;
    assert!(
        matches!(answer, Err(StoreError::IllegalState(MessageStatus::Queued))),
        "got {answer:?}"
    );
    assert_eq!(
        get(&store, &waiting.id).await.events.len(),
        1,
        "nothing recorded"
    );
}

/// Every operation on an id that does not exist says `NotFound`.
pub async fn unknown_ids_are_not_found<S: Store>(store: S) {
    let id = "01NOSUCHMESSAGE0000000000";
    let outcomes = [
        (
            "record_attempt",
            store
                .record_attempt(
                    id,
                    "w",
                    attempt(at(0), vec![delivered(BOB)], NextStep::GiveUp),
                )
                .await
                .map(drop),
        ),
        ("release", store.release(id, "w").await),
        ("extend_lease", store.extend_lease(id, "w", at(10)).await),
        ("cancel", store.cancel(id, at(0)).await.map(drop)),
        ("retry", store.retry(id, at(0)).await.map(drop)),
    ];
    for (operation, outcome) in outcomes {
        assert!(
            matches!(outcome, Err(StoreError::NotFound)),
            "{operation}: {outcome:?}"
        );
    }
}
