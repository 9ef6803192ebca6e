//! The suppression list and the webhook outbox: entries added by hand and
//! by hard bounces, looked up by address, listed newest first, lapsing and
//! removed; and the events every change leaves in the outbox, written in
//! the same transaction as the change.

use std::time::Duration;

use serde_json::Value;

use super::{
    BOB, CAROL, DAVE, at, attempt, claim_one, deferred, delivered, failed, get, message, result,
};
use crate::{
    Added, BounceClass, MessageStatus, NextStep, OutboxEvent, RecipientStatus, Store, Suppression,
    SuppressionFilter, SuppressionPolicy, SuppressionReason,
};

/// A manual entry for `address` added at `created`.
fn manual(address: &str, created: time::OffsetDateTime) -> Suppression {
    Suppression {
        address: address.to_owned(),
        reason: SuppressionReason::Manual,
        message: None,
        response: None,
        created_at: created,
        expires_at: None,
    }
}

/// Every event in the outbox, read a page of two at a time, once there
/// are at least `want` (see [`visible`](super::visible)).
async fn outbox<S: Store>(store: &S, want: usize) -> Vec<OutboxEvent> {
    super::visible(want, || async {
        let (mut all, mut cursor) = (Vec::new(), None);
        loop {
            let page = store.read_outbox(cursor, 2).await.expect("read outbox");
            let Some(last) = page.last() else {
                return all;
            };
            cursor = Some(last.cursor);
            all.extend(page);
        }
    })
    .await
}

fn body(event: &OutboxEvent) -> Value {
    serde_json::from_str(&event.body).expect("an outbox body is JSON")
}

fn kinds(events: &[OutboxEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

/// Entries are added once (the domain compared without case), looked up,
/// listed newest first with filters and pages, and removed; each change
/// leaves its event in the outbox.
pub async fn suppressions_are_added_listed_and_removed<S: Store>(store: S) {
    let answers = store
        .add_suppressions(
            vec![
                manual(BOB, at(1)),
                manual(CAROL, at(2)),
                Suppression {
                    reason: SuppressionReason::Complaint,
                    ..manual(DAVE, at(3))
                },
            ],
            at(3),
        )
        .await
        .expect("add");
    assert!(
        answers.iter().all(|a| matches!(a, Added::Added(_))),
        "{answers:?}"
    );
    let again = store
        .add_suppressions(vec![manual("bob@EXAMPLE.com", at(4))], at(4))
        .await
        .expect("add again");
    assert_eq!(again, vec![Added::Exists(manual(BOB, at(1)))]);

    let found = store
        .suppression("bob@Example.COM", at(5))
        .await
        .expect("look up");
    assert_eq!(found, Some(manual(BOB, at(1))));
    assert_eq!(
        store
            .suppression("Bob@example.com", at(5))
            .await
            .expect("look up"),
        None,
        "the local part keeps its case"
    );
    let mut among = store
        .suppressions_among(&[CAROL.to_owned(), "nobody@example.com".to_owned()], at(5))
        .await
        .expect("among");
    among.sort_by(|a, b| a.address.cmp(&b.address));
    assert_eq!(among, vec![manual(CAROL, at(2))]);

    let list = |filter: SuppressionFilter| {
        let store = &store;
        async move {
            let page = store.list_suppressions(&filter, at(5)).await.expect("list");
            let addresses: Vec<String> = page.entries.into_iter().map(|e| e.address).collect();
            (addresses, page.next)
        }
    };
    let all = SuppressionFilter {
        limit: 10,
        ..SuppressionFilter::default()
    };
    assert_eq!(
        list(all.clone()).await.0,
        [DAVE, CAROL, BOB],
        "newest first"
    );
    let manual_only = SuppressionFilter {
        reason: Some(SuppressionReason::Manual),
        ..all.clone()
    };
    assert_eq!(list(manual_only).await.0, [CAROL, BOB]);
    let since = SuppressionFilter {
        since: Some(at(2)),
        ..all.clone()
    };
    assert_eq!(list(since).await.0, [DAVE, CAROL]);
    let (first, next) = list(SuppressionFilter {
        limit: 2,
        ..all.clone()
    })
    .await;
    assert_eq!(first, [DAVE, CAROL]);
    let (second, next) = list(SuppressionFilter {
        limit: 2,
        after: next,
        ..all.clone()
    })
    .await;
    assert_eq!(second, [BOB]);
    assert_eq!(next, None, "the last page says so");

    let removed = store
        .remove_suppression("bob@EXAMPLE.COM", at(6))
        .await
        .expect("remove");
    assert_eq!(removed, Some(manual(BOB, at(1))));
    assert_eq!(
        store.remove_suppression(BOB, at(7)).await.expect("remove"),
        None
    );
    assert_eq!(store.suppression(BOB, at(8)).await.expect("look up"), None);

    let events = outbox(&store, 4).await;
    assert_eq!(
        kinds(&events),
        [
            "suppression.added",
            "suppression.added",
            "suppression.added",
            "suppression.removed"
        ]
    );
    let removal = body(&events[3]);
    assert_eq!(removal["type"], "suppression.removed");
    assert_eq!(removal["data"]["address"], BOB);
    assert_eq!(removal["data"]["reason"], "manual");
    let ids: std::collections::BTreeSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "every event has its own id");
}

/// An entry with an end stops holding at that instant, and may then be
/// added again.
pub async fn a_lapsed_entry_no_longer_holds<S: Store>(store: S) {
    let entry = Suppression {
        expires_at: Some(at(100)),
        ..manual(BOB, at(0))
    };
    store
        .add_suppressions(vec![entry.clone()], at(0))
        .await
        .expect("add");
    assert_eq!(
        store.suppression(BOB, at(99)).await.expect("look up"),
        Some(entry)
    );
    assert_eq!(
        store.suppression(BOB, at(100)).await.expect("look up"),
        None
    );
    let listed = store
        .list_suppressions(
            &SuppressionFilter {
                limit: 10,
                ..SuppressionFilter::default()
            },
            at(100),
        )
        .await
        .expect("list");
    assert!(listed.entries.is_empty(), "{listed:?}");
    assert!(
        store
            .suppressions_among(&[BOB.to_owned()], at(100))
            .await
            .expect("among")
            .is_empty()
    );
    let again = store
        .add_suppressions(vec![manual(BOB, at(101))], at(101))
        .await
        .expect("add again");
    assert_eq!(again, vec![Added::Added(manual(BOB, at(101)))]);
}

/// A dead address (5.1.1) is suppressed by the attempt that found it, in
/// its transaction; a deferral is not; the class is kept on the recipient
/// and the attempt event; the outbox holds one event per recipient and
/// the entry's.
pub async fn a_hard_bounce_suppresses_in_the_attempts_transaction<S: Store>(store: S) {
    let mut m = message(1, at(0), &[BOB, CAROL, DAVE]);
    m.tags = vec!["welcome".to_owned()];
    m.metadata.insert("user_id".to_owned(), "42".to_owned());
    store.enqueue(m.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(0)).await;
    let mut record = attempt(
        at(0),
        vec![delivered(BOB), failed(CAROL), deferred(DAVE)],
        NextStep::RetryAt(at(600)),
    );
    record.suppression = SuppressionPolicy {
        expire_after: Some(Duration::from_secs(3600)),
        ..SuppressionPolicy::default()
    };
    store
        .record_attempt(&m.id, "worker-1", record)
        .await
        .expect("record");

    let carol = store
        .suppression(CAROL, at(1))
        .await
        .expect("look up")
        .expect("the hard bounce is suppressed");
    assert_eq!(carol.reason, SuppressionReason::Bounce);
    assert_eq!(carol.message.as_deref(), Some(m.id.as_str()));
    assert_eq!(carol.response.as_deref(), Some("550 5.1.1 user unknown"));
    assert_eq!(
        carol.expires_at,
        Some(carol.created_at + Duration::from_secs(3600))
    );
    assert_eq!(store.suppression(DAVE, at(1)).await.expect("look up"), None);
    assert_eq!(store.suppression(BOB, at(1)).await.expect("look up"), None);

    let record = get(&store, &m.id).await;
    let class = |address: &str| {
        record
            .recipients
            .iter()
            .find(|r| r.address == address)
            .and_then(|r| r.class)
    };
    assert_eq!(class(BOB), None);
    assert_eq!(class(CAROL), Some(BounceClass::InvalidRecipient));
    assert_eq!(class(DAVE), Some(BounceClass::RateLimited));
    let attempt_event = record
        .events
        .iter()
        .find(|e| e.kind == "attempt")
        .expect("an attempt event");
    assert_eq!(attempt_event.class, Some(BounceClass::InvalidRecipient));

    let events = outbox(&store, 4).await;
    assert_eq!(
        kinds(&events),
        [
            "message.delivered",
            "message.bounced",
            "message.deferred",
            "suppression.added"
        ]
    );
    let bounced = body(&events[1]);
    assert_eq!(bounced["data"]["id"], m.id.as_str());
    assert_eq!(bounced["data"]["message_id"], m.message_id.as_str());
    assert_eq!(bounced["data"]["tags"][0], "welcome");
    assert_eq!(bounced["data"]["metadata"]["user_id"], "42");
    assert_eq!(bounced["data"]["address"], CAROL);
    assert_eq!(bounced["data"]["smtp_code"], 550);
    assert_eq!(bounced["data"]["enhanced_code"], "5.1.1");
    assert_eq!(bounced["data"]["class"], "invalid_recipient");
    assert_eq!(bounced["data"]["attempt"], 1);
    assert!(
        events
            .iter()
            .all(|e| e.message.as_deref() == Some(m.id.as_str()))
    );
}

/// A policy rejection (Gmail's 550 5.7.1 reputation block) fails the
/// recipient but never suppresses the address.
pub async fn a_policy_rejection_does_not_suppress<S: Store>(store: S) {
    let m = message(1, at(0), &[BOB]);
    store.enqueue(m.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(0)).await;
    let blocked = result(
        BOB,
        RecipientStatus::Failed,
        550,
        "5.7.1",
        "This message is likely suspicious due to the very low reputation of the sending IP",
    );
    let mut record = attempt(at(0), vec![blocked], NextStep::GiveUp);
    record.suppression = SuppressionPolicy::default();
    let status = store
        .record_attempt(&m.id, "worker-1", record)
        .await
        .expect("record");
    assert_eq!(status, MessageStatus::Failed);
    assert_eq!(store.suppression(BOB, at(1)).await.expect("look up"), None);
    assert_eq!(
        get(&store, &m.id).await.recipients[0].class,
        Some(BounceClass::Policy)
    );
    assert_eq!(kinds(&outbox(&store, 1).await), ["message.bounced"]);
}

/// Recipients given up on (retries exhausted) each make a
/// `message.failed`; suppressed recipients make `message.suppressed`, and
/// a message whose every recipient is suppressed ends failed.
pub async fn giving_up_and_suppressed_recipients_make_their_events<S: Store>(store: S) {
    let m = message(1, at(0), &[BOB]);
    store.enqueue(m.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(0)).await;
    store
        .record_attempt(
            &m.id,
            "worker-1",
            attempt(at(0), vec![deferred(BOB)], NextStep::GiveUp),
        )
        .await
        .expect("record");
    assert_eq!(
        kinds(&outbox(&store, 2).await),
        ["message.deferred", "message.failed"]
    );

    let n = message(2, at(10), &[CAROL]);
    store.enqueue(n.clone()).await.expect("enqueue");
    claim_one(&store, "worker-1", at(10)).await;
    let suppressed = crate::RecipientResult {
        address: CAROL.to_owned(),
        status: RecipientStatus::Suppressed,
        smtp_code: None,
        enhanced_code: None,
        response: Some("suppressed (bounce)".to_owned()),
        class: None,
    };
    let status = store
        .record_attempt(
            &n.id,
            "worker-1",
            attempt(at(10), vec![suppressed], NextStep::GiveUp),
        )
        .await
        .expect("record");
    assert_eq!(status, MessageStatus::Failed);
    assert_eq!(
        get(&store, &n.id).await.recipients[0].status,
        RecipientStatus::Suppressed
    );
    let events = outbox(&store, 3).await;
    assert_eq!(
        kinds(&events[2..]),
        ["message.suppressed"],
        "{:?}",
        kinds(&events)
    );
    assert_eq!(body(&events[2])["data"]["response"], "suppressed (bounce)");
}

/// An endpoint's cursor starts empty and moves with a recorded delivery
/// (or alone); tries are listed newest first, a page at a time.
pub async fn webhook_cursors_and_deliveries_are_kept<S: Store>(store: S) {
    store
        .add_suppressions(vec![manual(BOB, at(1)), manual(CAROL, at(2))], at(2))
        .await
        .expect("add");
    let events = outbox(&store, 2).await;
    assert_eq!(events.len(), 2);
    assert_eq!(store.webhook_cursor("app").await.expect("cursor"), None);
    let try_one = |outcome, attempt| crate::WebhookDelivery {
        endpoint: "app".to_owned(),
        event_id: events[0].id.clone(),
        kind: events[0].kind,
        attempt,
        at: at(10 + i64::from(attempt)),
        http_status: Some(if outcome == crate::DeliveryOutcome::Delivered {
            200
        } else {
            503
        }),
        duration: Duration::from_millis(12),
        error: None,
        outcome,
    };
    let first = store
        .record_webhook_delivery(try_one(crate::DeliveryOutcome::Retrying, 1), None)
        .await
        .expect("record");
    assert_eq!(store.webhook_cursor("app").await.expect("cursor"), None);
    let second = store
        .record_webhook_delivery(
            try_one(crate::DeliveryOutcome::Delivered, 2),
            Some(events[0].cursor),
        )
        .await
        .expect("record");
    assert!(second > first, "ids grow");
    assert_eq!(
        store.webhook_cursor("app").await.expect("cursor"),
        Some(events[0].cursor)
    );
    let rest = store
        .read_outbox(Some(events[0].cursor), 10)
        .await
        .expect("read on");
    assert_eq!(rest, events[1..].to_vec());
    store
        .advance_webhook("app", events[1].cursor)
        .await
        .expect("advance");
    assert_eq!(
        store.webhook_cursor("app").await.expect("cursor"),
        Some(events[1].cursor)
    );
    assert_eq!(store.webhook_cursor("other").await.expect("cursor"), None);

    let newest = store.list_webhook_deliveries(None, 1).await.expect("list");
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].id, second);
    assert_eq!(
        newest[0].delivery,
        try_one(crate::DeliveryOutcome::Delivered, 2)
    );
    let older = store
        .list_webhook_deliveries(Some(second), 10)
        .await
        .expect("list");
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].id, first);
}
