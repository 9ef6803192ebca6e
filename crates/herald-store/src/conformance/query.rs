//! Questions: listings with filters and cursors, queue figures, ping.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{BOB, CAROL, DAVE, at, attempt, claim_one, deferred, delivered, failed, message};
use crate::{ListFilter, MessageStatus, NewMessage, NextStep, Store};

/// The ids of one listing, in the order given.
async fn ids<S: Store>(store: &S, filter: ListFilter) -> Vec<String> {
    let page = store.list(&filter).await.expect("list");
    assert!(
        page.messages.iter().all(|m| m.events.is_empty()),
        "listings carry no events"
    );
    page.messages.into_iter().map(|m| m.id).collect()
}

fn tagged(seq: u32, secs: i64, recipients: &[&str], tags: &[&str]) -> NewMessage {
    NewMessage {
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        ..message(seq, at(secs), recipients)
    }
}

/// Each filter narrows the listing (newest first) to what it names, and
/// filters combine.
pub async fn list_filters_by_status_tag_recipient_and_time<S: Store>(store: S) {
    let m1 = tagged(1, 0, &[BOB], &["welcome"]);
    let m2 = tagged(2, 10, &[CAROL], &["welcome", "eu"]);
    let m3 = tagged(3, 20, &[BOB, CAROL], &["receipt"]);
    let m4 = tagged(4, 30, &[DAVE], &[]);
    for m in [&m1, &m2, &m3, &m4] {
        store.enqueue(m.clone()).await.expect("enqueue");
    }
    // m1 delivered, m3 failed; m2 and m4 stay queued.
    claim_one(&store, "w", at(0)).await;
    store
        .record_attempt(
            &m1.id,
            "w",
            attempt(at(0), vec![delivered(BOB)], NextStep::GiveUp),
        )
        .await
        .expect("record");
    let claimed = store
        .claim("w", 1, super::LEASE, at(10))
        .await
        .expect("claim");
    assert_eq!(claimed[0].id, m2.id);
    store.release(&m2.id, "w").await.expect("release");
    store.cancel(&m3.id, at(20)).await.expect("cancel");
    let (a, b, c, d) = (
        m1.id.as_str(),
        m2.id.as_str(),
        m3.id.as_str(),
        m4.id.as_str(),
    );

    let page = store.list(&ListFilter::default()).await.expect("list");
    assert_eq!(page.next_after_id, None);
    let all: Vec<&str> = page.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(all, [d, c, b, a], "newest first");
    assert_eq!(
        page.messages[1].recipients.len(),
        2,
        "listings carry recipients"
    );
    assert_eq!(page.messages[2].tags, ["welcome", "eu"]);

    let by = |f: ListFilter| ids(&store, f);
    let status = |s| ListFilter {
        status: Some(s),
        ..ListFilter::default()
    };
    assert_eq!(by(status(MessageStatus::Queued)).await, [d, b]);
    assert_eq!(by(status(MessageStatus::Delivered)).await, [a]);
    assert_eq!(by(status(MessageStatus::Cancelled)).await, [c]);
    assert!(by(status(MessageStatus::Failed)).await.is_empty());
    let tag = |t: &str| ListFilter {
        tag: Some(t.to_owned()),
        ..ListFilter::default()
    };
    assert_eq!(by(tag("welcome")).await, [b, a]);
    assert_eq!(by(tag("eu")).await, [b]);
    assert!(by(tag("nope")).await.is_empty());
    let to = |r: &str| ListFilter {
        recipient: Some(r.to_owned()),
        ..ListFilter::default()
    };
    assert_eq!(by(to(BOB)).await, [c, a]);
    assert_eq!(by(to(DAVE)).await, [d]);
    let window = ListFilter {
        since: Some(at(10)),
        until: Some(at(30)),
        ..ListFilter::default()
    };
    assert_eq!(
        by(window).await,
        [c, b],
        "since is inclusive, until exclusive"
    );
    let combined = ListFilter {
        status: Some(MessageStatus::Queued),
        tag: Some("welcome".to_owned()),
        recipient: Some(CAROL.to_owned()),
        since: Some(at(0)),
        ..ListFilter::default()
    };
    assert_eq!(by(combined).await, [b]);
}

/// Following `next_after_id` visits every message exactly once, newest
/// first, in pages of the asked size; `limit: 0` means 50.
pub async fn list_pages_cover_everything_exactly_once<S: Store>(store: S) {
    let messages: Vec<NewMessage> = (0..55)
        .map(|n| message(n, at(i64::from(n)), &[BOB]))
        .collect();
    let mut expected: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
    expected.reverse();
    let results = store.enqueue_batch(messages).await.expect("batch");
    assert!(results.iter().all(Result::is_ok));

    let mut seen = Vec::new();
    let mut after_id = None;
    let mut pages = 0;
    loop {
        let page = store
            .list(&ListFilter {
                limit: 7,
                after_id: after_id.clone(),
                ..ListFilter::default()
            })
            .await
            .expect("list");
        pages += 1;
        assert!(page.messages.len() <= 7, "page of {}", page.messages.len());
        seen.extend(page.messages.into_iter().map(|m| m.id));
        match page.next_after_id {
            Some(next) => after_id = Some(next),
            None => break,
        }
        assert!(pages < 20, "pagination does not end");
    }
    assert_eq!(pages, 8);
    assert_eq!(
        seen.len(),
        BTreeSet::from_iter(seen.iter()).len(),
        "a message seen twice"
    );
    assert_eq!(seen, expected);

    let default = store.list(&ListFilter::default()).await.expect("list");
    assert_eq!(default.messages.len(), 50, "limit 0 means 50");
    assert_eq!(
        default.next_after_id.as_deref(),
        Some(expected[49].as_str())
    );

    let exact = store
        .list(&ListFilter {
            limit: 55,
            ..ListFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(exact.messages.len(), 55);
    assert_eq!(
        exact.next_after_id, None,
        "no next page when nothing is left"
    );
}

/// Stats count every status (zeros included), depth counts the unfinished,
/// and the oldest due message's lag is measured from when it became due.
pub async fn stats_and_depth_count_by_status<S: Store>(store: S) {
    let empty = store.stats(at(0)).await.expect("stats");
    assert_eq!(empty.by_status.len(), MessageStatus::ALL.len(), "{empty:?}");
    assert!(empty.by_status.values().all(|n| *n == 0));
    assert_eq!(empty.oldest_due_age, None);
    assert_eq!(store.depth().await.expect("depth"), 0);

    let done = message(1, at(0), &[BOB]);
    let waiting = message(2, at(1), &[BOB]);
    let busy = message(3, at(2), &[BOB]);
    let queued = message(4, at(3), &[BOB]);
    let mut later = message(5, at(4), &[BOB]);
    later.send_at = Some(at(1000));
    let stopped = message(6, at(5), &[BOB]);
    let lost = message(7, at(6), &[BOB]);

    store.enqueue(done.clone()).await.expect("enqueue");
    claim_one(&store, "w", at(0)).await;
    store
        .record_attempt(
            &done.id,
            "w",
            attempt(at(0), vec![delivered(BOB)], NextStep::GiveUp),
        )
        .await
        .expect("record");
    store.enqueue(waiting.clone()).await.expect("enqueue");
    claim_one(&store, "w", at(1)).await;
    store
        .record_attempt(
            &waiting.id,
            "w",
            attempt(at(1), vec![deferred(BOB)], NextStep::RetryAt(at(50))),
        )
        .await
        .expect("record");
    store.enqueue(busy.clone()).await.expect("enqueue");
    assert_eq!(claim_one(&store, "w", at(2)).await.id, busy.id);
    store.enqueue(lost.clone()).await.expect("enqueue");
    assert_eq!(claim_one(&store, "w", at(6)).await.id, lost.id);
    store
        .record_attempt(
            &lost.id,
            "w",
            attempt(at(6), vec![failed(BOB)], NextStep::GiveUp),
        )
        .await
        .expect("record");
    for m in [&queued, &later, &stopped] {
        store.enqueue(m.clone()).await.expect("enqueue");
    }
    store.cancel(&stopped.id, at(7)).await.expect("cancel");

    let stats = store.stats(at(10)).await.expect("stats");
    let count = |s| stats.by_status.get(&s).copied();
    assert_eq!(count(MessageStatus::Scheduled), Some(1));
    assert_eq!(count(MessageStatus::Queued), Some(1));
    assert_eq!(count(MessageStatus::Sending), Some(1));
    assert_eq!(count(MessageStatus::Deferred), Some(1));
    assert_eq!(count(MessageStatus::Delivered), Some(1));
    assert_eq!(count(MessageStatus::Partial), Some(0));
    assert_eq!(count(MessageStatus::Failed), Some(1));
    assert_eq!(count(MessageStatus::Cancelled), Some(1));
    assert_eq!(stats.depth(), 4);
    assert_eq!(store.depth().await.expect("depth"), 4);
    // Due at 10: only `queued` (due since 3); `waiting` is due at 50.
    assert_eq!(stats.oldest_due_age, Some(Duration::from_secs(7)));
    let later_stats = store.stats(at(60)).await.expect("stats");
    assert_eq!(later_stats.oldest_due_age, Some(Duration::from_secs(57)));
}

/// A healthy store answers a ping.
pub async fn ping_answers<S: Store>(store: S) {
    store.ping().await.expect("ping");
}
