//! Enqueue: what goes in comes out, idempotency keys, batches, schedules.

use std::collections::BTreeMap;

use super::{BOB, CAROL, LEASE, at, claim_one, event_kinds, get, keyed, message};
use crate::{
    Enqueued, IDEMPOTENCY_WINDOW, ListFilter, MessageStatus, NextStep, RecipientRecord,
    RecipientStatus, Store, StoreError, TemplateRef,
};

/// A stored message reads back as it was given: envelope, tags, metadata,
/// recipients pending, one `queued` event; a claim hands out the rendered
/// bytes unchanged.
pub async fn enqueue_then_get_round_trips<S: Store>(store: S) {
    let mut m = message(1, at(0), &[BOB, CAROL]);
    m.tags = vec!["welcome".to_owned(), "eu".to_owned()];
    m.metadata = BTreeMap::from([("user_id".to_owned(), "42".to_owned())]);
    m.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned());
    m.submitted_by = Some("billing-app".to_owned());
    m.template = Some(TemplateRef {
        name: "welcome".to_owned(),
        version: 3,
    });
    m.smtputf8 = true;

    let answer = store.enqueue(m.clone()).await.expect("enqueue");
    assert_eq!(
        answer,
        Enqueued {
            id: m.id.clone(),
            message_id: m.message_id.clone(),
            status: MessageStatus::Queued,
            created: true,
        }
    );

    let record = get(&store, &m.id).await;
    assert_eq!(record.message_id, m.message_id);
    assert_eq!(record.status, MessageStatus::Queued);
    assert_eq!(record.created_at, at(0));
    assert_eq!(record.updated_at, at(0));
    assert_eq!(record.send_at, None);
    assert_eq!(record.attempts, 0);
    assert_eq!(record.next_attempt_at, Some(at(0)), "due as soon as queued");
    assert_eq!(record.sender, m.sender);
    assert_eq!(record.tags, m.tags, "tags keep their order");
    assert_eq!(record.metadata, m.metadata);
    assert_eq!(record.trace_id, m.trace_id);
    assert_eq!(record.submitted_by.as_deref(), Some("billing-app"));
    assert_eq!(
        record.template, m.template,
        "the template version that made it"
    );
    let pending = |address: &str| RecipientRecord {
        address: address.to_owned(),
        status: RecipientStatus::Pending,
        smtp_code: None,
        enhanced_code: None,
        response: None,
        class: None,
    };
    assert_eq!(record.recipients, vec![pending(BOB), pending(CAROL)]);
    assert_eq!(record.events.len(), 1, "one event: {:?}", record.events);
    assert_eq!(record.events[0].kind, "queued");
    assert_eq!(record.events[0].at, at(0));

    assert_eq!(
        store.get("01NOSUCHMESSAGE0000000000").await.expect("get"),
        None
    );

    let claimed = claim_one(&store, "worker-1", at(1)).await;
    assert_eq!(claimed.id, m.id);
    assert_eq!(claimed.message_id, m.message_id);
    assert_eq!(
        claimed.rendered, m.rendered,
        "rendered bytes must be stored byte for byte"
    );
    assert_eq!(claimed.recipients, vec![BOB.to_owned(), CAROL.to_owned()]);
    assert_eq!(claimed.sender, m.sender);
    assert!(claimed.smtputf8);
    assert_eq!(claimed.attempts, 0);
    assert_eq!(claimed.created_at, at(0));
    assert_eq!(claimed.trace_id, m.trace_id);
    assert_eq!(claimed.lease_until, at(1) + LEASE);
    assert_eq!(get(&store, &m.id).await.status, MessageStatus::Sending);

    // Without a template: none, in the record and in a list.
    let plain = message(2, at(2), &[BOB]);
    store.enqueue(plain.clone()).await.expect("enqueue");
    assert_eq!(get(&store, &plain.id).await.template, None);
    let listed = store.list(&ListFilter::default()).await.expect("list");
    let template_of = |id: &str| {
        listed
            .messages
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.template.clone())
    };
    assert_eq!(template_of(&plain.id), Some(None));
    assert_eq!(template_of(&m.id), Some(m.template.clone()));
}

/// The same key with the same body answers with the first message and
/// stores nothing new.
pub async fn idempotent_repeat_returns_the_first_message<S: Store>(store: S) {
    let first = keyed(1, at(0), "order-42", "hash-a");
    let again = keyed(2, at(10), "order-42", "hash-a");
    let answer = store.enqueue(first.clone()).await.expect("first enqueue");
    assert!(answer.created);

    let repeat = store.enqueue(again.clone()).await.expect("repeat enqueue");
    assert_eq!(
        repeat,
        Enqueued {
            id: first.id.clone(),
            message_id: first.message_id.clone(),
            status: MessageStatus::Queued,
            created: false,
        }
    );
    assert_eq!(
        store.get(&again.id).await.expect("get"),
        None,
        "the repeat stored nothing"
    );
    let all = store.list(&ListFilter::default()).await.expect("list");
    assert_eq!(all.messages.len(), 1);
    assert_eq!(store.depth().await.expect("depth"), 1);
    assert_eq!(event_kinds(&store, &first.id).await, ["queued"]);
}

/// The same key with another body is a conflict and stores nothing.
pub async fn idempotency_key_with_another_body_conflicts<S: Store>(store: S) {
    let first = keyed(1, at(0), "order-42", "hash-a");
    let other = keyed(2, at(10), "order-42", "hash-b");
    store.enqueue(first).await.expect("first enqueue");
    let answer = store.enqueue(other.clone()).await;
    assert!(
        matches!(answer, Err(StoreError::IdempotencyConflict)),
        "expected IdempotencyConflict, got {answer:?}"
    );
    assert_eq!(store.get(&other.id).await.expect("get"), None);
    assert_eq!(store.depth().await.expect("depth"), 1);
}

/// The look-up answers a repeat as the first answer was given (even once
/// the message has moved on), a conflict for another body, nothing for an
/// unknown or expired key, and stores nothing either way.
pub async fn replay_answers_with_the_first_answer_and_stores_nothing<S: Store>(store: S) {
    let window = i64::try_from(IDEMPOTENCY_WINDOW.as_secs()).expect("window fits");
    let key = |hash: &str| crate::Idempotency {
        key: "order-7".to_owned(),
        request_hash: hash.to_owned(),
    };
    assert_eq!(
        store.replay(&key("hash-a"), at(0)).await.expect("look-up"),
        None
    );

    let first = keyed(1, at(0), "order-7", "hash-a");
    store.enqueue(first.clone()).await.expect("enqueue");
    let answer = Enqueued {
        id: first.id.clone(),
        message_id: first.message_id.clone(),
        status: MessageStatus::Queued,
        created: false,
    };
    assert_eq!(
        store.replay(&key("hash-a"), at(5)).await.expect("look-up"),
        Some(answer.clone())
    );
    let conflict = store.replay(&key("hash-b"), at(5)).await;
    assert!(
        matches!(conflict, Err(StoreError::IdempotencyConflict)),
        "expected IdempotencyConflict, got {conflict:?}"
    );

    // Sent since: the answer is still the first one.
    let claimed = claim_one(&store, "w", at(10)).await;
    let sent = super::attempt(at(10), vec![super::delivered(BOB)], NextStep::GiveUp);
    store
        .record_attempt(&claimed.id, "w", sent)
        .await
        .expect("record");
    assert_eq!(
        get(&store, &first.id).await.status,
        MessageStatus::Delivered
    );
    assert_eq!(
        store.replay(&key("hash-a"), at(20)).await.expect("look-up"),
        Some(answer.clone())
    );
    let repeat = store
        .enqueue(keyed(2, at(20), "order-7", "hash-a"))
        .await
        .expect("repeat");
    assert_eq!(repeat, answer, "enqueue replays the same first answer");

    // Past the window the key is free.
    assert_eq!(
        store
            .replay(&key("hash-b"), at(window + 1))
            .await
            .expect("look-up"),
        None
    );

    // A scheduled message was first answered `scheduled`.
    let mut later = keyed(3, at(30), "order-8", "hash-c");
    later.send_at = Some(at(3600));
    store
        .enqueue(later.clone())
        .await
        .expect("enqueue scheduled");
    let replayed = store
        .replay(
            &crate::Idempotency {
                key: "order-8".to_owned(),
                request_hash: "hash-c".to_owned(),
            },
            at(31),
        )
        .await
        .expect("look-up")
        .expect("remembered");
    assert_eq!(
        (replayed.id.as_str(), replayed.status),
        (later.id.as_str(), MessageStatus::Scheduled)
    );
    assert_eq!(
        store.depth().await.expect("depth"),
        1,
        "only the scheduled one is open"
    );
    let all = store.list(&ListFilter::default()).await.expect("list");
    assert_eq!(all.messages.len(), 2, "look-ups stored nothing");
}

/// A key is remembered for the window, counted from its first use; after
/// it, the key starts a new message.
pub async fn idempotency_key_expires_after_the_window<S: Store>(store: S) {
    let window = i64::try_from(IDEMPOTENCY_WINDOW.as_secs()).expect("window fits");
    let first = keyed(1, at(0), "order-42", "hash-a");
    store.enqueue(first.clone()).await.expect("first enqueue");

    let inside = store
        .enqueue(keyed(2, at(window - 1), "order-42", "hash-a"))
        .await
        .expect("enqueue inside the window");
    assert_eq!(
        (inside.id.as_str(), inside.created),
        (first.id.as_str(), false)
    );

    let later = keyed(3, at(window + 1), "order-42", "hash-b");
    let answer = store
        .enqueue(later.clone())
        .await
        .expect("enqueue after the window");
    assert_eq!(
        (answer.id.as_str(), answer.created),
        (later.id.as_str(), true)
    );

    // The key now belongs to the new message.
    let repeat = store
        .enqueue(keyed(4, at(window + 2), "order-42", "hash-b"))
        .await
        .expect("repeat of the new message");
    assert_eq!(
        (repeat.id.as_str(), repeat.created),
        (later.id.as_str(), false)
    );
    assert_eq!(store.depth().await.expect("depth"), 2);
}

/// A batch stores its valid items together and answers each item: a
/// conflict fails only its own item, a repeat (even within the batch)
/// answers with the earlier message.
pub async fn batch_commits_valid_items_and_reports_each_conflict<S: Store>(store: S) {
    let existing = keyed(1, at(0), "key-1", "hash-a");
    store.enqueue(existing.clone()).await.expect("enqueue");

    let plain = message(2, at(1), &[BOB]);
    let conflict = keyed(3, at(1), "key-1", "hash-b");
    let repeat = keyed(4, at(1), "key-1", "hash-a");
    let fresh = keyed(5, at(1), "key-2", "hash-c");
    let fresh_again = keyed(6, at(1), "key-2", "hash-c");
    let results = store
        .enqueue_batch(vec![
            plain.clone(),
            conflict.clone(),
            repeat.clone(),
            fresh.clone(),
            fresh_again.clone(),
        ])
        .await
        .expect("batch");
    assert_eq!(results.len(), 5, "one result per item: {results:?}");
    let summary: Vec<Option<(String, bool)>> = results
        .iter()
        .map(|r| r.as_ref().ok().map(|e| (e.id.clone(), e.created)))
        .collect();
    assert_eq!(summary[0], Some((plain.id.clone(), true)));
    assert!(
        matches!(results[1], Err(StoreError::IdempotencyConflict)),
        "item 1: {:?}",
        results[1]
    );
    assert_eq!(summary[2], Some((existing.id.clone(), false)));
    assert_eq!(summary[3], Some((fresh.id.clone(), true)));
    assert_eq!(summary[4], Some((fresh.id.clone(), false)));

    for stored in [&existing, &plain, &fresh] {
        assert_eq!(get(&store, &stored.id).await.status, MessageStatus::Queued);
    }
    for skipped in [&conflict, &repeat, &fresh_again] {
        assert_eq!(store.get(&skipped.id).await.expect("get"), None);
    }
    assert_eq!(store.depth().await.expect("depth"), 3);
    assert!(
        store
            .enqueue_batch(Vec::new())
            .await
            .expect("empty batch")
            .is_empty()
    );
}

/// A keyed batch is one request: repeated, it replays its first answers
/// and stores nothing; under another hash nothing of it is stored, however
/// many items either batch had; batch and single-message keys are apart.
pub async fn keyed_batch_replays_whole_or_conflicts_whole<S: Store>(store: S) {
    let window = i64::try_from(IDEMPOTENCY_WINDOW.as_secs()).expect("window fits");
    let key = |hash: &str| crate::Idempotency {
        key: "nightly-9".to_owned(),
        request_hash: hash.to_owned(),
    };
    let items = |first: u32, created, count: u32| -> Vec<crate::NewMessage> {
        (0..count)
            .map(|i| message(first + i, created, &[BOB]))
            .collect()
    };
    assert_eq!(
        store
            .replay_batch(&key("hash-a"), at(0))
            .await
            .expect("look-up"),
        None
    );
    let first = store
        .enqueue_batch_once(&key("hash-a"), items(1, at(0), 2))
        .await
        .expect("first batch");
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|e| e.created), "{first:?}");

    let replayed: Vec<Enqueued> = first
        .iter()
        .map(|e| Enqueued {
            created: false,
            ..e.clone()
        })
        .collect();
    let again = store
        .enqueue_batch_once(&key("hash-a"), items(11, at(5), 2))
        .await
        .expect("repeat");
    assert_eq!(again, replayed, "the first answers, in order");
    assert_eq!(
        store
            .replay_batch(&key("hash-a"), at(6))
            .await
            .expect("look-up"),
        Some(replayed.clone())
    );

    // Another body under the key: with one item more, one fewer, or as
    // many, nothing is stored.
    for count in [3, 1, 2] {
        let other = items(21 + 10 * count, at(6), count);
        let answer = store
            .enqueue_batch_once(&key("hash-b"), other.clone())
            .await;
        assert!(
            matches!(answer, Err(StoreError::IdempotencyConflict)),
            "{count} items: expected IdempotencyConflict, got {answer:?}"
        );
        for item in &other {
            assert_eq!(store.get(&item.id).await.expect("get"), None);
        }
    }
    let looked = store.replay_batch(&key("hash-b"), at(7)).await;
    assert!(
        matches!(looked, Err(StoreError::IdempotencyConflict)),
        "{looked:?}"
    );
    assert_eq!(store.depth().await.expect("depth"), 2);

    // The batch's key is not a single message's key, nor the reverse.
    assert_eq!(
        store.replay(&key("hash-a"), at(8)).await.expect("look-up"),
        None
    );
    let single = store
        .enqueue(keyed(90, at(8), "nightly-9", "hash-s"))
        .await
        .expect("single");
    assert!(single.created);
    assert_eq!(
        store
            .replay_batch(&key("hash-a"), at(9))
            .await
            .expect("look-up"),
        Some(replayed)
    );

    // Past the window the key is free again.
    let later = store
        .enqueue_batch_once(&key("hash-c"), items(60, at(window + 1), 1))
        .await
        .expect("after the window");
    assert!(later[0].created);
    assert!(
        store
            .enqueue_batch_once(&key("hash-d"), Vec::new())
            .await
            .expect("empty batch")
            .is_empty()
    );
}

/// A message with `send_at` ahead waits as `scheduled` and cannot be
/// claimed before its time; at its time it can. `send_at` in the past is
/// an ordinary queued message.
pub async fn scheduled_message_waits_for_send_at<S: Store>(store: S) {
    let mut later = message(1, at(0), &[BOB]);
    later.send_at = Some(at(3600));
    let answer = store.enqueue(later.clone()).await.expect("enqueue");
    assert_eq!(answer.status, MessageStatus::Scheduled);

    let record = get(&store, &later.id).await;
    assert_eq!(record.status, MessageStatus::Scheduled);
    assert_eq!(record.send_at, Some(at(3600)));
    assert_eq!(record.next_attempt_at, Some(at(3600)));
    assert_eq!(event_kinds(&store, &later.id).await, ["scheduled"]);

    let early = store.claim("w", 10, LEASE, at(3599)).await.expect("claim");
    assert!(early.is_empty(), "claimed before send_at: {early:?}");
    assert_eq!(claim_one(&store, "w", at(3600)).await.id, later.id);

    let mut past = message(2, at(10), &[BOB]);
    past.send_at = Some(at(5));
    let answer = store.enqueue(past.clone()).await.expect("enqueue");
    assert_eq!(answer.status, MessageStatus::Queued);
    assert_eq!(claim_one(&store, "w", at(10)).await.id, past.id);
}
