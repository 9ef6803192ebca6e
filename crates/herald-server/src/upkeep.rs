//! The node's share of looking after the queue: taking back at start-up
//! the leases a crash left, renewing its own leases while it works (the
//! heartbeat), and retention. Each loop runs until its token is
//! cancelled and never holds up a delivery: a failure is logged and
//! tried again on the next round.

use std::sync::Arc;
use std::time::Duration;

use herald_policy::{Clock, SharedClock};
use herald_store::{EventRetention, Leases, Retention, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::config::WebhookConfig;

/// What retention keeps, and for how long.
#[derive(Debug, Clone)]
pub(crate) struct Keep {
    /// Finished messages (`store.retention`).
    pub(crate) messages: Duration,
    /// Webhook events every enabled endpoint has passed, and delivery
    /// tries (`store.event_retention`).
    pub(crate) events: Duration,
    /// Lapsed suppression entries, from when they lapsed
    /// (`store.lapsed_retention`).
    pub(crate) lapsed: Duration,
    /// The configured endpoints, whose cursors say which events are done.
    pub(crate) webhooks: Vec<WebhookConfig>,
}

/// How long idempotency records are kept (the window in which a repeat
/// is answered).
const KEYS_KEPT: Duration = herald_store::IDEMPOTENCY_WINDOW;

/// How long the nodes' shared failure feed is kept: longer than any alert
/// window or error-group history a node reads back when it starts.
const FEED_KEPT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Messages deleted per retention transaction: small, so the writer (or
/// PostgreSQL's row locks) is never held for long.
const PURGE_BATCH: usize = 500;

/// How often retention looks for work.
const RETENTION_EVERY: Duration = Duration::from_secs(10 * 60);

/// Takes back, at start-up, the leases a crash left: with a store that
/// one process owns, every lease (`exclusive`); with a shared one, those
/// held under this node's own id, at once, and those that expired.
pub(crate) async fn reclaim_at_start(
    store: &dyn Store,
    node_id: &str,
    exclusive: bool,
    clock: &dyn Clock,
) -> Result<(), StoreError> {
    let now = clock.now();
    let own = if exclusive {
        Leases::All
    } else {
        Leases::OwnedBy(node_id)
    };
    let reclaimed = store.reclaim(own, now).await?;
    if reclaimed > 0 {
        tracing::info!(
            reclaimed,
            node_id,
            "took back the leases this node held when it stopped"
        );
    }
    if !exclusive {
        let expired = store.reclaim(Leases::Expired, now).await?;
        if expired > 0 {
            tracing::info!(expired, "made messages with expired leases due again");
        }
    }
    Ok(())
}

/// The heartbeat: renews every lease `owner` holds, every third of
/// `lease`, so a lease can be short while a delivery runs as long as its
/// timeouts allow.
pub(crate) async fn heartbeat(
    store: Arc<dyn Store>,
    owner: String,
    lease: Duration,
    clock: SharedClock,
    stop: CancellationToken,
) {
    let every = lease / 3;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match store.renew_leases(&owner, lease, clock.now()).await {
            Ok(renewed) => tracing::trace!(renewed, "leases renewed"),
            Err(error) => tracing::warn!(error = %error, "renewing leases failed"),
        }
    }
}

/// Retention: deletes finished messages older than `keep`, idempotency
/// records older than their window, and the webhook events, tries and
/// lapsed suppressions `keep` lets go, a small batch at a time.
pub(crate) async fn retention(
    store: Arc<dyn Store>,
    keep: Keep,
    clock: SharedClock,
    stop: CancellationToken,
) {
    // A first pass soon after start, then at a steady pace.
    let mut wait = Duration::from_secs(30);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = RETENTION_EVERY;
        if let Err(error) = purge_all(store.as_ref(), keep.messages, clock.as_ref(), &stop).await {
            tracing::warn!(error = %error, "retention failed; trying again later");
        }
        if let Err(error) = purge_events(store.as_ref(), &keep, clock.as_ref(), &stop).await {
            tracing::warn!(error = %error, "webhook event retention failed; trying again later");
        }
    }
}

/// Purges in batches until a batch comes back short (or `stop`).
pub(crate) async fn purge_all(
    store: &dyn Store,
    keep: Duration,
    clock: &dyn Clock,
    stop: &CancellationToken,
) -> Result<(u64, u64), StoreError> {
    let (mut messages, mut keys) = (0, 0);
    loop {
        let now = clock.now();
        let retention = Retention {
            messages_before: now - keep,
            keys_before: now - KEYS_KEPT,
            feed_before: now - FEED_KEPT,
            limit: PURGE_BATCH,
        };
        let purged = store.purge(&retention).await?;
        messages += purged.messages;
        keys += purged.keys;
        let limit = u64::try_from(PURGE_BATCH).unwrap_or(u64::MAX);
        let more = [purged.messages, purged.keys, purged.feed]
            .iter()
            .any(|n| *n >= limit);
        if !more || stop.is_cancelled() {
            break;
        }
        // Let deliveries' writes go first between two batches.
        tokio::task::yield_now().await;
    }
    if messages > 0 || keys > 0 {
        tracing::info!(messages, keys, "retention deleted finished messages");
    }
    Ok((messages, keys))
}

/// Purges webhook events, tries and lapsed suppressions in batches until
/// every kind comes back short (or `stop`). An event goes once it is
/// older than `keep.events` and every enabled endpoint has passed it; a
/// disabled endpoint holds nothing back (it gets the events still kept
/// when it is enabled again).
pub(crate) async fn purge_events(
    store: &dyn Store,
    keep: &Keep,
    clock: &dyn Clock,
    stop: &CancellationToken,
) -> Result<herald_store::PurgedEvents, StoreError> {
    let disabled = store.disabled_webhooks().await?;
    let endpoints = keep
        .webhooks
        .iter()
        .filter(|w| {
            let digest = w.url_digest();
            !disabled
                .iter()
                .any(|d| d.endpoint == w.name && d.url_digest == digest)
        })
        .map(|w| w.name.clone())
        .collect();
    let mut retention = EventRetention {
        outbox_before: clock.now(),
        endpoints,
        deliveries_before: clock.now(),
        lapsed_before: clock.now(),
        limit: PURGE_BATCH,
    };
    let mut total = herald_store::PurgedEvents::default();
    loop {
        let now = clock.now();
        retention.outbox_before = now - keep.events;
        retention.deliveries_before = now - keep.events;
        retention.lapsed_before = now - keep.lapsed;
        let purged = store.purge_events(&retention).await?;
        total.events += purged.events;
        total.deliveries += purged.deliveries;
        total.suppressions += purged.suppressions;
        let limit = u64::try_from(PURGE_BATCH).unwrap_or(u64::MAX);
        let more = [purged.events, purged.deliveries, purged.suppressions]
            .iter()
            .any(|n| *n >= limit);
        if !more || stop.is_cancelled() {
            break;
        }
        tokio::task::yield_now().await;
    }
    if total != herald_store::PurgedEvents::default() {
        tracing::info!(
            events = total.events,
            deliveries = total.deliveries,
            suppressions = total.suppressions,
            "retention deleted webhook events, delivery tries and lapsed suppressions"
        );
    }
    Ok(total)
}
