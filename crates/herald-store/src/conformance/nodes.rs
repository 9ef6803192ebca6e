//! Several nodes on one store: heartbeats, a restarted node taking its
//! own leases back, poison messages, retention, and one leader per role.

use std::time::Duration;

use time::OffsetDateTime;

use super::{BOB, CAROL, LEASE, at, attempt, claim_one, deferred, delivered, get, message};
use crate::{
    Claimed, EventKind, FeedCursor, FeedEntry, Leases, MessageStatus, NextStep, RecipientStatus,
    Retention, Store, StoreOptions,
};

/// Claims the one oldest due message for `owner`.
async fn take<S: Store>(store: &S, owner: &str, now: OffsetDateTime) -> Claimed {
    let mut claimed = store.claim(owner, 1, LEASE, now).await.expect("claim");
    assert_eq!(claimed.len(), 1, "nothing due at {now}");
    claimed.remove(0)
}

/// A heartbeat moves the end of every lease its owner holds, and of no
/// one else's; a renewed lease is not taken by a claim after the old end.
pub async fn renew_leases_extends_the_owners_leases<S: Store>(store: S) {
    for seq in 1..=3 {
        store
            .enqueue(message(seq, at(0), &[BOB]))
            .await
            .expect("enqueue");
    }
    take(&store, "node-a", at(0)).await;
    take(&store, "node-a", at(0)).await;
    let other = take(&store, "node-b", at(0)).await;
    // Leases end at 60; node-a renews at 50 for another 60 s.
    let renewed = store
        .renew_leases("node-a", LEASE, at(50))
        .await
        .expect("renew");
    assert_eq!(renewed, 2);
    assert_eq!(
        store
            .renew_leases("node-c", LEASE, at(50))
            .await
            .expect("renew"),
        0
    );
    let taken: Vec<String> = store
        .claim("node-c", 10, LEASE, at(100))
        .await
        .expect("claim")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(taken, [other.id], "only node-b's lease had run out at 100");
}

/// A restarted node takes back the leases it held, at once and before
/// they expire; other nodes' leases stay theirs.
pub async fn reclaim_owned_takes_back_that_owners_leases_at_once<S: Store>(store: S) {
    let mine = message(1, at(0), &[BOB]);
    let theirs = message(2, at(0), &[BOB]);
    store.enqueue(mine.clone()).await.expect("enqueue");
    store.enqueue(theirs.clone()).await.expect("enqueue");
    take(&store, "node-a", at(0)).await;
    take(&store, "node-b", at(0)).await;

    let reclaimed = store
        .reclaim(Leases::OwnedBy("node-a"), at(5))
        .await
        .expect("reclaim");
    assert_eq!(reclaimed, 1);
    let record = get(&store, &mine.id).await;
    assert_eq!(record.status, MessageStatus::Queued);
    assert_eq!(record.next_attempt_at, Some(at(5)));
    let last = record.events.last().expect("an event");
    assert_eq!(last.kind, EventKind::LeaseReclaimed);
    assert!(
        last.detail.as_deref().unwrap_or("").contains("node-a"),
        "{last:?}"
    );
    assert_eq!(get(&store, &theirs.id).await.status, MessageStatus::Sending);
    // Due at once: claimable at 5, long before the lease would have ended.
    assert_eq!(claim_one(&store, "node-a", at(5)).await.id, mine.id);
    // The old owner's late record is refused.
    let late = store
        .record_attempt(
            &theirs.id,
            "node-a",
            attempt(at(6), vec![delivered(BOB)], NextStep::GiveUp),
        )
        .await;
    assert!(late.is_err(), "{late:?}");
}

/// With one process per store, a start takes back every lease.
pub async fn reclaim_all_takes_back_every_lease<S: Store>(store: S) {
    let tried = message(1, at(0), &[BOB]);
    let fresh = message(2, at(0), &[BOB]);
    store.enqueue(tried.clone()).await.expect("enqueue");
    store.enqueue(fresh.clone()).await.expect("enqueue");
    take(&store, "node-a", at(0)).await;
    store
        .record_attempt(
            &tried.id,
            "node-a",
            attempt(at(0), vec![deferred(BOB)], NextStep::RetryAt(at(1))),
        )
        .await
        .expect("record");
    let mut claimed = store
        .claim("node-b", 10, LEASE, at(2))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    claimed.clear();
    assert_eq!(store.reclaim(Leases::All, at(3)).await.expect("reclaim"), 2);
    let (tried, fresh) = (get(&store, &tried.id).await, get(&store, &fresh.id).await);
    assert_eq!((tried.status, tried.attempts), (MessageStatus::Deferred, 1));
    assert_eq!(fresh.status, MessageStatus::Queued);
    assert_eq!(store.reclaim(Leases::All, at(3)).await.expect("reclaim"), 0);
}

/// A message whose lease ends without an attempt the configured number
/// of times in a row (default 3) is failed, with an event saying why; a
/// recorded attempt starts the count again.
pub async fn a_message_whose_leases_keep_ending_is_failed_as_poison<S: Store>(store: S) {
    assert_eq!(StoreOptions::default().max_lost_leases, 3);
    let healthy = message(1, at(0), &[BOB]);
    let poison = message(2, at(0), &[BOB, CAROL]);
    store.enqueue(healthy.clone()).await.expect("enqueue");
    store.enqueue(poison.clone()).await.expect("enqueue");

    // healthy: lost once, then an attempt, then lost twice: never 3 in a row.
    let both = store.claim("n1", 10, LEASE, at(0)).await.expect("claim");
    assert_eq!(both.len(), 2);
    // Both leases expire at 60; the second claim takes both (1st loss).
    let both = store.claim("n2", 10, LEASE, at(61)).await.expect("claim");
    assert_eq!(both.len(), 2);
    store
        .record_attempt(
            &healthy.id,
            "n2",
            attempt(at(61), vec![deferred(BOB)], NextStep::RetryAt(at(62))),
        )
        .await
        .expect("record");
    // poison: 2nd loss through a reclaim at start-up.
    assert_eq!(
        store
            .reclaim(Leases::OwnedBy("n2"), at(62))
            .await
            .expect("reclaim"),
        1
    );
    assert_eq!(get(&store, &poison.id).await.status, MessageStatus::Queued);
    // Both claimed again; healthy loses its lease once more (1st in a row
    // since its attempt), poison for the 3rd time.
    let both = store.claim("n3", 10, LEASE, at(62)).await.expect("claim");
    assert_eq!(both.len(), 2);
    let taken = store.claim("n4", 10, LEASE, at(200)).await.expect("claim");
    let taken: Vec<String> = taken.into_iter().map(|c| c.id).collect();
    assert_eq!(
        taken,
        std::slice::from_ref(&healthy.id),
        "the poison message is not sent"
    );

    let record = get(&store, &poison.id).await;
    assert_eq!(record.status, MessageStatus::Failed);
    assert_eq!(record.next_attempt_at, None);
    assert!(
        record
            .recipients
            .iter()
            .all(|r| r.status == RecipientStatus::Failed && r.response.is_some()),
        "{:?}",
        record.recipients
    );
    let kinds: Vec<EventKind> = record.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Queued,
            EventKind::LeaseExpired,
            EventKind::LeaseReclaimed,
            EventKind::LeaseExpired,
            EventKind::Failed,
        ]
    );
    let why = record.events[3].detail.as_deref().unwrap_or("");
    assert!(why.contains("poison"), "{why}");
    assert_eq!(
        get(&store, &healthy.id).await.status,
        MessageStatus::Sending
    );
}

/// Retention deletes final messages older than its limit, a batch at a
/// time, and never a message that is still on its way; old idempotency
/// records go too.
pub async fn purge_deletes_old_final_messages_in_batches<S: Store>(store: S) {
    let mut done = Vec::new();
    for seq in 1..=3 {
        let m = message(seq, at(0), &[BOB]);
        store.enqueue(m.clone()).await.expect("enqueue");
        claim_one(&store, "w", at(i64::from(seq))).await;
        store
            .record_attempt(
                &m.id,
                "w",
                attempt(at(i64::from(seq)), vec![delivered(BOB)], NextStep::GiveUp),
            )
            .await
            .expect("record");
        done.push(m.id);
    }
    let waiting = message(10, at(0), &[BOB]);
    store.enqueue(waiting.clone()).await.expect("enqueue");
    let recent = message(11, at(500), &[BOB]);
    store.enqueue(recent.clone()).await.expect("enqueue");
    store.cancel(&recent.id, at(500)).await.expect("cancel");

    let retention = Retention {
        messages_before: at(100),
        keys_before: at(100),
        feed_before: at(100),
        limit: 2,
    };
    let first = store.purge(&retention).await.expect("purge");
    assert_eq!(first.messages, 2);
    let second = store.purge(&retention).await.expect("purge");
    assert_eq!(second.messages, 1);
    assert_eq!(store.purge(&retention).await.expect("purge").messages, 0);
    for id in &done {
        assert!(store.get(id).await.expect("get").is_none(), "{id} kept");
    }
    assert_eq!(get(&store, &waiting.id).await.status, MessageStatus::Queued);
    assert_eq!(
        get(&store, &recent.id).await.status,
        MessageStatus::Cancelled
    );
    let stats = store.stats(at(600)).await.expect("stats");
    assert_eq!(stats.by_status.get(&MessageStatus::Delivered), Some(&0));
    assert_eq!(store.depth().await.expect("depth"), 1);
}

/// A role has one holder at a time; the holder renews it; another takes
/// it once it runs out.
pub async fn lead_gives_a_role_to_one_holder_at_a_time<S: Store>(store: S) {
    let ttl = Duration::from_secs(30);
    assert!(store.lead("alerts", "a", ttl, at(0)).await.expect("lead"));
    assert!(!store.lead("alerts", "b", ttl, at(10)).await.expect("lead"));
    assert!(store.lead("alerts", "a", ttl, at(20)).await.expect("renew"));
    // a's lease now runs to 50.
    assert!(!store.lead("alerts", "b", ttl, at(40)).await.expect("lead"));
    assert!(store.lead("other", "b", ttl, at(40)).await.expect("lead"));
    assert!(store.lead("alerts", "b", ttl, at(51)).await.expect("lead"));
    assert!(!store.lead("alerts", "a", ttl, at(52)).await.expect("lead"));
}

fn entry(node: &str, secs: i64, body: &str) -> FeedEntry {
    FeedEntry {
        at: at(secs),
        node: node.to_owned(),
        body: body.to_owned(),
    }
}

/// Everything after `after`, read on in pages of `page` until the end.
async fn read_all<S: Store>(
    store: &S,
    after: Option<FeedCursor>,
    page: usize,
) -> Vec<(FeedCursor, String)> {
    let mut cursor = after;
    let mut all = Vec::new();
    loop {
        let got = store
            .read_feed(cursor, at(0), page)
            .await
            .expect("read feed");
        let Some(last) = got.last() else {
            return all;
        };
        cursor = Some(last.cursor);
        all.extend(got.into_iter().map(|r| (r.cursor, r.entry.body)));
    }
}

/// The feed gives back what nodes appended, in order, from any cursor,
/// filtered by time, a page at a time; retention trims it by age.
pub async fn the_feed_reads_on_from_any_cursor<S: Store>(store: S) {
    store
        .append_feed(vec![
            entry("a", 1, "a1"),
            entry("a", 2, "a2"),
            entry("a", 3, "a3"),
        ])
        .await
        .expect("append");
    store
        .append_feed(vec![entry("b", 4, "b1"), entry("b", 5, "b2")])
        .await
        .expect("append");
    let all = super::visible(5, || async {
        store.read_feed(None, at(0), 100).await.expect("read")
    })
    .await;
    let bodies: Vec<&str> = all.iter().map(|r| r.entry.body.as_str()).collect();
    assert_eq!(bodies, ["a1", "a2", "a3", "b1", "b2"]);
    assert!(all.windows(2).all(|w| w[0].cursor < w[1].cursor), "{all:?}");
    assert_eq!(all[3].entry, entry("b", 4, "b1"));

    let recent = store.read_feed(None, at(3), 100).await.expect("read");
    let bodies: Vec<&str> = recent.iter().map(|r| r.entry.body.as_str()).collect();
    assert_eq!(bodies, ["a3", "b1", "b2"]);
    let page = store
        .read_feed(Some(all[1].cursor), at(0), 2)
        .await
        .expect("read");
    let bodies: Vec<&str> = page.iter().map(|r| r.entry.body.as_str()).collect();
    assert_eq!(bodies, ["a3", "b1"]);
    let last = all[4].cursor;
    assert!(
        store
            .read_feed(Some(last), at(0), 10)
            .await
            .expect("read")
            .is_empty()
    );
    store
        .append_feed(vec![entry("a", 6, "a4")])
        .await
        .expect("append");
    let more = super::visible(1, || read_all(&store, Some(last), 10)).await;
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].1, "a4");

    let purged = store
        .purge(&Retention {
            messages_before: at(0),
            keys_before: at(0),
            feed_before: at(3),
            limit: 100,
        })
        .await
        .expect("purge");
    assert_eq!(purged.feed, 2);
    let left: Vec<String> = read_all(&store, None, 100)
        .await
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(left, ["a3", "b1", "b2", "a4"]);
}

/// Appends from many writers at once, read on concurrently from the last
/// cursor: every entry is read exactly once, none skipped by a commit that
/// overtook another.
pub async fn the_feed_misses_nothing_under_concurrent_appends<S: Store>(store: S) {
    let store = std::sync::Arc::new(store);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..25 {
                    store
                        .append_feed(vec![entry(&format!("n{w}"), 1, &format!("{w}-{i}"))])
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    // Read on from the last cursor while they write, until all 100 are
    // read (see `visible` for why they may show late), then once more:
    // anything further would be an entry read twice.
    let mut seen = Vec::new();
    let mut cursor = None;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while seen.len() < 100 {
        let got = store.read_feed(cursor, at(0), 7).await.expect("read");
        match got.last() {
            Some(last) => cursor = Some(last.cursor),
            None => {
                let now = tokio::time::Instant::now();
                assert!(now < deadline, "read {} of 100 entries", seen.len());
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
        seen.extend(got.into_iter().map(|r| r.entry.body));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    seen.extend(
        read_all(store.as_ref(), cursor, 50)
            .await
            .into_iter()
            .map(|(_, b)| b),
    );
    let distinct: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 100, "entries read more than once or missed");
    assert_eq!(distinct.len(), 100);
}
