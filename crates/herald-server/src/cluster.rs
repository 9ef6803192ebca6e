//! What nodes sharing one store do together, without talking to each
//! other: they pass their failure samples and attempt counts through the
//! store's feed, so every node's error groups (`GET /v1/errors`) hold
//! every node's failures; and one node at a time holds the alert
//! evaluator's role, so that an incident is announced once, not once per
//! node. With a store that one process owns (SQLite) none of this runs.

use std::sync::Arc;
use std::time::Duration;

use herald_policy::SharedClock;
use herald_store::{FeedCursor, FeedEntry, Store};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use herald_alerts::{Alerting, FeedItem};

/// How often a node reports what it saw and reads what the others did.
pub(crate) const FEED_EVERY: Duration = Duration::from_secs(1);

/// The role the alert evaluator runs under.
const ALERTS_ROLE: &str = "alerts";

/// Feed entries read per query.
const FEED_PAGE: usize = 1000;

/// Reports this node's failures and attempts to the feed, and adds the
/// other nodes' to this node's groups, every [`FEED_EVERY`] until `stop`
/// (then reports once more). At start it reads back `history`, so a node
/// that joins sees the groups the others already have.
pub(crate) async fn share_failures(
    store: Arc<dyn Store>,
    alerting: Arc<Alerting>,
    node_id: String,
    history: Duration,
    clock: SharedClock,
    stop: CancellationToken,
) {
    let since = clock.now() - history;
    let mut cursor = None;
    loop {
        let stopping = tokio::select! {
            () = stop.cancelled() => true,
            () = tokio::time::sleep(FEED_EVERY) => false,
        };
        report(store.as_ref(), &alerting, &node_id, clock.now()).await;
        if stopping {
            return;
        }
        cursor = read_on(store.as_ref(), &alerting, &node_id, cursor, since).await;
    }
}

/// Appends what this node recorded since its last report.
async fn report(store: &dyn Store, alerting: &Alerting, node_id: &str, now: OffsetDateTime) {
    let items = alerting.take_outgoing(now);
    if items.is_empty() {
        return;
    }
    let entries = items
        .iter()
        .map(|item| FeedEntry {
            at: item.at(),
            node: node_id.to_owned(),
            body: item.to_text(),
        })
        .collect();
    if let Err(error) = store.append_feed(entries).await {
        // Alerting's view is lost for these; mail is not affected.
        tracing::warn!(error = %error, lost = items.len(), "reporting failures to the other nodes failed");
    }
}

/// Reads the feed on from `cursor`, adding other nodes' items to this
/// node's groups; returns the new cursor.
async fn read_on(
    store: &dyn Store,
    alerting: &Alerting,
    node_id: &str,
    mut cursor: Option<FeedCursor>,
    since: OffsetDateTime,
) -> Option<FeedCursor> {
    loop {
        let page = match store.read_feed(cursor, since, FEED_PAGE).await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(error = %error, "reading the other nodes' failures failed");
                return cursor;
            }
        };
        let full = page.len() == FEED_PAGE;
        for record in page {
            cursor = Some(record.cursor);
            if record.entry.node == node_id {
                continue; // recorded here already
            }
            match FeedItem::from_text(&record.entry.body) {
                Some(item) => alerting.ingest(item),
                None => {
                    tracing::debug!(node = %record.entry.node, "skipped a feed entry of an unknown kind")
                }
            }
        }
        if !full {
            return cursor;
        }
    }
}

/// Takes and keeps the alert evaluator's role when no other node holds
/// it, trying every `every`; `leading` says whether this node holds it.
/// Gives nothing back explicitly at stop: the role lapses after its
/// time-to-live (three periods), and another node takes it.
pub(crate) async fn lead_alerts(
    store: Arc<dyn Store>,
    node_id: String,
    every: Duration,
    leading: watch::Sender<bool>,
    clock: SharedClock,
    stop: CancellationToken,
) {
    let ttl = (every * 3).max(Duration::from_secs(3));
    loop {
        let holds = match store.lead(ALERTS_ROLE, &node_id, ttl, clock.now()).await {
            Ok(holds) => holds,
            Err(error) => {
                tracing::warn!(error = %error, "could not renew the alert evaluator's role");
                false
            }
        };
        if leading.send_replace(holds) != holds {
            tracing::info!(node_id = %node_id, leading = holds, "alert evaluator role changed");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
