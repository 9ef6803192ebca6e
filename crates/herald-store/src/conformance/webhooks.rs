//! The webhook side of the store: a try and an event found again by id
//! (what a manual retry needs), endpoints disabled by a 410 kept until
//! enabled, and retention of the outbox, the delivery log and lapsed
//! suppressions.

use std::time::Duration;

use super::{BOB, CAROL, DAVE, at, attempt, claim_one, delivered, failed, message};
use crate::{
    DeliveryOutcome, DisabledWebhook, EventRetention, FeedCursor, MessageStatus, NextStep,
    OutboxEvent, PurgedEvents, Recorded, Store, Suppression, SuppressionPolicy, SuppressionReason,
    WebhookDelivery, outbox,
};

/// Puts `address` on the list at `secs`, lapsing at `expires` if given:
/// one `suppression.added` event written at `secs`.
async fn add<S: Store>(store: &S, address: &str, secs: i64, expires: Option<i64>) {
    let entry = Suppression {
        address: address.to_owned(),
        reason: SuppressionReason::Manual,
        message: None,
        response: None,
        created_at: at(secs),
        expires_at: expires.map(at),
    };
    store
        .add_suppressions(vec![entry], at(secs))
        .await
        .expect("add");
}

/// The outbox's first 100 events, once there are at least `want` (see
/// [`visible`](super::visible)).
async fn outbox_all<S: Store>(store: &S, want: usize) -> Vec<OutboxEvent> {
    super::visible(want, || async {
        store.read_outbox(None, 100).await.expect("read outbox")
    })
    .await
}

fn try_of(
    event: &OutboxEvent,
    endpoint: &str,
    secs: i64,
    outcome: DeliveryOutcome,
) -> WebhookDelivery {
    WebhookDelivery {
        endpoint: endpoint.to_owned(),
        event_id: event.id.clone(),
        kind: event.kind,
        attempt: 1,
        at: at(secs),
        http_status: Some(410),
        duration: Duration::from_millis(7),
        error: Some("HTTP 410".to_owned()),
        outcome,
    }
}

/// A try is read back by its id, an event by its `webhook-id`; ids that
/// name nothing (or are not ids at all) find nothing.
pub async fn tries_and_events_are_found_by_id<S: Store>(store: S) {
    add(&store, BOB, 1, None).await;
    add(&store, CAROL, 2, None).await;
    let events = outbox_all(&store, 2).await;
    assert_eq!(events.len(), 2);
    for event in &events {
        assert_eq!(
            store.outbox_event(&event.id).await.expect("event").as_ref(),
            Some(event)
        );
    }
    let beyond = FeedCursor {
        tx: events[1].cursor.tx,
        id: events[1].cursor.id + 1000,
    };
    for unknown in [outbox::event_id(beyond), "evt_x".to_owned(), String::new()] {
        assert_eq!(store.outbox_event(&unknown).await.expect("event"), None);
    }
    let delivery = try_of(&events[1], "app", 5, DeliveryOutcome::Failed);
    let id = store
        .record_webhook_delivery(delivery.clone(), None)
        .await
        .expect("record");
    let found = store
        .webhook_delivery(id)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!((found.id, found.delivery), (id, delivery));
    assert_eq!(store.webhook_delivery(id + 1).await.expect("read"), None);
}

/// A disabled endpoint stays so until enabled; marking it again replaces
/// the mark.
pub async fn a_disabled_webhook_stays_disabled_until_enabled<S: Store>(store: S) {
    assert!(store.disabled_webhooks().await.expect("list").is_empty());
    let gone = DisabledWebhook {
        endpoint: "app".to_owned(),
        url_digest: "d1".to_owned(),
        at: at(10),
        reason: "answered 410 Gone".to_owned(),
        delivery: Some(42),
    };
    store.disable_webhook(gone.clone()).await.expect("disable");
    let other = DisabledWebhook {
        endpoint: "billing".to_owned(),
        delivery: None,
        ..gone.clone()
    };
    store.disable_webhook(other.clone()).await.expect("disable");
    assert_eq!(
        store.disabled_webhooks().await.expect("list"),
        [gone.clone(), other.clone()]
    );
    let again = DisabledWebhook {
        url_digest: "d2".to_owned(),
        at: at(20),
        delivery: Some(43),
        ..gone
    };
    store.disable_webhook(again.clone()).await.expect("disable");
    assert_eq!(
        store.disabled_webhooks().await.expect("list"),
        [again, other.clone()]
    );
    assert!(store.enable_webhook("app").await.expect("enable"));
    assert!(!store.enable_webhook("app").await.expect("enable again"));
    assert_eq!(store.disabled_webhooks().await.expect("list"), [other]);
}

/// Retention deletes the old outbox events every listed endpoint has
/// passed (none while one of them has not started), old tries, and
/// entries that lapsed long enough ago, a batch at a time; never an entry
/// that holds or an event an endpoint still needs.
pub async fn event_retention_deletes_only_what_is_done_and_old<S: Store>(store: S) {
    add(&store, BOB, 10, Some(50)).await;
    add(&store, CAROL, 20, Some(5000)).await;
    add(&store, DAVE, 30, None).await;
    let events = outbox_all(&store, 3).await;
    assert_eq!(events.len(), 3);
    for (i, event) in events.iter().enumerate() {
        let secs = 40 + i64::try_from(i).expect("small");
        store
            .record_webhook_delivery(try_of(event, "app", secs, DeliveryOutcome::Delivered), None)
            .await
            .expect("record");
    }
    let retention = |endpoints: &[&str], limit| EventRetention {
        outbox_before: at(1000),
        endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
        deliveries_before: at(41),
        lapsed_before: at(100),
        limit,
    };
    // "app" has passed two events, "late" has not started: nothing of the
    // outbox goes; the first try and BOB's lapsed entry do.
    store
        .advance_webhook("app", events[1].cursor)
        .await
        .expect("advance");
    let purged = store
        .purge_events(&retention(&["app", "late"], 10))
        .await
        .expect("purge");
    assert_eq!(
        purged,
        PurgedEvents {
            events: 0,
            deliveries: 1,
            suppressions: 1
        }
    );
    assert_eq!(outbox_all(&store, 3).await.len(), 3);
    let tries = store.list_webhook_deliveries(None, 10).await.expect("list");
    assert_eq!(tries.len(), 2);
    assert!(tries.iter().all(|t| t.delivery.at >= at(41)), "{tries:?}");
    let listed = store
        .list_suppressions(
            &crate::SuppressionFilter {
                limit: 10,
                ..crate::SuppressionFilter::default()
            },
            at(10),
        )
        .await
        .expect("list");
    let left: Vec<&str> = listed.entries.iter().map(|e| e.address.as_str()).collect();
    assert_eq!(
        left,
        [DAVE, CAROL],
        "BOB's lapsed entry is gone, the others stay"
    );

    // Both started, "late" behind "app": up to "late"'s cursor, one per
    // batch.
    store
        .advance_webhook("late", events[0].cursor)
        .await
        .expect("advance");
    let one = store
        .purge_events(&retention(&["app", "late"], 1))
        .await
        .expect("purge");
    assert_eq!(one.events, 1);
    let again = store
        .purge_events(&retention(&["app", "late"], 1))
        .await
        .expect("purge");
    assert_eq!(again.events, 0, "the second event is not passed by late");
    assert_eq!(outbox_all(&store, 0).await, events[1..].to_vec());

    // Only "app": up to its cursor. No endpoint at all: every old event.
    let app = store
        .purge_events(&retention(&["app"], 10))
        .await
        .expect("purge");
    assert_eq!(app.events, 1);
    assert_eq!(outbox_all(&store, 0).await, events[2..].to_vec());
    let young = EventRetention {
        outbox_before: at(30),
        ..retention(&[], 10)
    };
    assert_eq!(store.purge_events(&young).await.expect("purge").events, 0);
    assert_eq!(
        store
            .purge_events(&retention(&[], 10))
            .await
            .expect("purge")
            .events,
        1
    );
    assert!(outbox_all(&store, 0).await.is_empty());
    // New events keep coming after a purge, read on from the old cursor.
    add(&store, "erin@example.com", 60, None).await;
    let after = super::visible(1, || async {
        store
            .read_outbox(Some(events[1].cursor), 10)
            .await
            .expect("read on")
    })
    .await;
    assert_eq!(after.len(), 1);
}

/// An attempt answers how many suppression entries it added: a hard
/// bounce of an address already on the list adds none.
pub async fn an_attempt_counts_only_the_entries_it_adds<S: Store>(store: S) {
    add(&store, CAROL, 0, None).await;
    let m = message(1, at(0), &[BOB, CAROL, DAVE]);
    store.enqueue(m.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(1)).await;
    let mut record = attempt(
        at(1),
        vec![delivered(BOB), failed(CAROL), failed(DAVE)],
        NextStep::GiveUp,
    );
    record.suppression = SuppressionPolicy::default();
    let recorded = store
        .record_attempt_counted(&m.id, "worker-1", record)
        .await
        .expect("record");
    assert_eq!(
        recorded,
        Recorded {
            status: MessageStatus::Partial,
            suppressed: 1
        },
        "DAVE is added, CAROL was listed already"
    );
    let is_added = |e: &&OutboxEvent| e.kind == crate::WebhookEventType::SuppressionAdded;
    let events = super::visible_when(
        || async { store.read_outbox(None, 100).await.expect("read outbox") },
        |events| events.iter().filter(is_added).count() >= 2,
    )
    .await;
    let added: Vec<_> = events.iter().filter(is_added).collect();
    assert_eq!(added.len(), 2, "CAROL's manual entry and DAVE's");
}
