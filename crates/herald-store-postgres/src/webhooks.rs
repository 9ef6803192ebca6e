//! The webhook side of the store on PostgreSQL: the outbox read in
//! (transaction, id) order like the feed, the endpoints' cursors, the
//! delivery log, endpoints disabled by a 410, and retention of all of it
//! (with lapsed suppressions).

use tokio_postgres::Row;

use super::Shared;
use super::codec::{corrupt, get, purged};
use super::pipeline::{Conn, Tx, step};
use herald_store::outbox;
use herald_store::{
    DisabledWebhook, EventRetention, FeedCursor, OutboxEvent, PurgedEvents, StoreError,
    WebhookDelivery, WebhookDeliveryRecord,
};

/// An outbox row (`tx::text, id, at, kind, message, body`) as an event.
fn event(row: &Row) -> Result<OutboxEvent, StoreError> {
    let tx: String = get(row, 0)?;
    let cursor = FeedCursor {
        tx: tx
            .parse()
            .map_err(|_| corrupt(format!("outbox: bad tx {tx:?}")))?,
        id: get(row, 1)?,
    };
    Ok(OutboxEvent {
        cursor,
        id: outbox::event_id(cursor),
        kind: get::<String>(row, 3)?.parse().map_err(corrupt)?,
        at: get(row, 2)?,
        message: get(row, 4)?,
        body: get(row, 5)?,
    })
}

const DELIVERY_COLUMNS: &str = "id, endpoint, event_id, kind, attempt, at, http_status, \
     duration_ms, error, outcome";

/// A `webhook_deliveries` row ([`DELIVERY_COLUMNS`]) as a try.
fn delivery(row: &Row) -> Result<WebhookDeliveryRecord, StoreError> {
    Ok(WebhookDeliveryRecord {
        id: get(row, 0)?,
        delivery: WebhookDelivery {
            endpoint: get(row, 1)?,
            event_id: get(row, 2)?,
            kind: get::<String>(row, 3)?.parse().map_err(corrupt)?,
            attempt: u32::try_from(get::<i32>(row, 4)?).unwrap_or(0),
            at: get(row, 5)?,
            http_status: get::<Option<i32>>(row, 6)?.and_then(|s| u16::try_from(s).ok()),
            duration: std::time::Duration::from_millis(
                u64::try_from(get::<i64>(row, 7)?).unwrap_or(0),
            ),
            error: get(row, 8)?,
            outcome: get::<String>(row, 9)?.parse().map_err(corrupt)?,
        },
    })
}

/// Reads the outbox in (transaction, id) order, holding back the events of
/// transactions still running (see [`herald_store::Store::read_outbox`]).
pub(crate) async fn read_outbox(
    shared: &Shared,
    after: Option<FeedCursor>,
    limit: usize,
) -> Result<Vec<OutboxEvent>, StoreError> {
    let after = after.unwrap_or_default();
    let (tx, id) = (after.tx.to_string(), after.id);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let conn = Conn::get(&shared.pool).await?;
    let rows = conn
        .pipeline(
            &[step!(
                "SELECT tx::text, id, at, kind, message, body FROM webhook_outbox \
                 WHERE tx < pg_snapshot_xmin(pg_current_snapshot()) \
                     AND (tx, id) > ($1::text::xid8, $2::bigint) \
                 ORDER BY tx, id LIMIT $3",
                tx,
                id,
                limit,
            )],
            "read the outbox",
        )
        .await?;
    rows.iter().flatten().map(event).collect()
}

/// Sets `$1`'s cursor to (`$2`, `$3`).
const ADVANCE: &str = "INSERT INTO webhook_cursors (endpoint, cursor_tx, cursor_id) \
     VALUES ($1, $2::text::xid8, $3) \
     ON CONFLICT (endpoint) DO UPDATE SET cursor_tx = EXCLUDED.cursor_tx, \
         cursor_id = EXCLUDED.cursor_id";

/// An endpoint's cursor (see [`herald_store::Store::webhook_cursor`]).
pub(crate) async fn webhook_cursor(
    shared: &Shared,
    endpoint: &str,
) -> Result<Option<FeedCursor>, StoreError> {
    let conn = Conn::get(&shared.pool).await?;
    let rows = conn
        .pipeline(
            &[step!(
                "SELECT cursor_tx::text, cursor_id FROM webhook_cursors WHERE endpoint = $1",
                endpoint
            )],
            "read webhook cursor",
        )
        .await?;
    let Some(row) = rows.first().and_then(|r| r.first()) else {
        return Ok(None);
    };
    let tx: String = get(row, 0)?;
    Ok(Some(FeedCursor {
        tx: tx
            .parse()
            .map_err(|_| corrupt(format!("webhook cursor: bad tx {tx:?}")))?,
        id: get(row, 1)?,
    }))
}

/// Moves an endpoint's cursor.
pub(crate) async fn advance_webhook(
    shared: &Shared,
    endpoint: &str,
    cursor: FeedCursor,
) -> Result<(), StoreError> {
    let tx_text = cursor.tx.to_string();
    let conn = Conn::get(&shared.pool).await?;
    conn.pipeline(
        &[step!(ADVANCE, endpoint, tx_text, cursor.id)],
        "advance webhook cursor",
    )
    .await?;
    Ok(())
}

/// Records a try, and moves the cursor with `advance`, in one commit.
pub(crate) async fn record_webhook_delivery(
    shared: &Shared,
    delivery: &WebhookDelivery,
    advance: Option<FeedCursor>,
) -> Result<i64, StoreError> {
    let kind = delivery.kind.as_str();
    let outcome = delivery.outcome.as_str();
    let attempt = i32::try_from(delivery.attempt).unwrap_or(i32::MAX);
    let status = delivery.http_status.map(i32::from);
    let duration = i64::try_from(delivery.duration.as_millis()).unwrap_or(i64::MAX);
    let cursor = advance.map(|c| (c.tx.to_string(), c.id));
    let mut steps = vec![step!(
        "INSERT INTO webhook_deliveries (endpoint, event_id, kind, attempt, at, http_status, \
             duration_ms, error, outcome) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        delivery.endpoint,
        delivery.event_id,
        kind,
        attempt,
        delivery.at,
        status,
        duration,
        delivery.error,
        outcome,
    )];
    if let Some((tx_text, id)) = &cursor {
        steps.push(step!(ADVANCE, delivery.endpoint, *tx_text, *id));
    }
    let tx = Tx::begin(&shared.pool).await?;
    let rows = tx.commit(&steps, "record webhook delivery").await?;
    let row = rows
        .first()
        .and_then(|r| r.first())
        .ok_or_else(|| corrupt("no delivery id".into()))?;
    get(row, 0)
}

/// Tries, newest first (see [`herald_store::Store::list_webhook_deliveries`]).
pub(crate) async fn list_webhook_deliveries(
    shared: &Shared,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<WebhookDeliveryRecord>, StoreError> {
    let before = before.unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let conn = Conn::get(&shared.pool).await?;
    let rows = conn
        .pipeline(
            &[step!(
                "SELECT id, endpoint, event_id, kind, attempt, at, http_status, duration_ms, \
                     error, outcome \
                 FROM webhook_deliveries WHERE id < $1 ORDER BY id DESC LIMIT $2",
                before,
                limit
            )],
            "list webhook deliveries",
        )
        .await?;
    rows.iter().flatten().map(delivery).collect()
}

/// The event a `webhook-id` names (see [`herald_store::Store::outbox_event`]).
pub(crate) async fn outbox_event(
    shared: &Shared,
    id: &str,
) -> Result<Option<OutboxEvent>, StoreError> {
    let Some(cursor) = outbox::event_cursor(id) else {
        return Ok(None);
    };
    let tx = cursor.tx.to_string();
    let conn = Conn::get(&shared.pool).await?;
    let rows = conn
        .pipeline(
            &[step!(
                "SELECT tx::text, id, at, kind, message, body FROM webhook_outbox \
                 WHERE (tx, id) = ($1::text::xid8, $2::bigint)",
                tx,
                cursor.id,
            )],
            "read an outbox event",
        )
        .await?;
    rows.first().and_then(|r| r.first()).map(event).transpose()
}

/// One try (see [`herald_store::Store::webhook_delivery`]).
pub(crate) async fn webhook_delivery(
    shared: &Shared,
    id: i64,
) -> Result<Option<WebhookDeliveryRecord>, StoreError> {
    let by_id = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1");
    let conn = Conn::get(&shared.pool).await?;
    let rows = conn
        .pipeline(&[step!(&by_id, id)], "read a webhook delivery")
        .await?;
    rows.first()
        .and_then(|r| r.first())
        .map(delivery)
        .transpose()
}

/// Marks an endpoint disabled (see [`herald_store::Store::disable_webhook`]).
pub(crate) async fn disable(shared: &Shared, disabled: &DisabledWebhook) -> Result<(), StoreError> {
    let conn = Conn::get(&shared.pool).await?;
    conn.pipeline(
        &[step!(
            "INSERT INTO webhook_disabled (endpoint, url_digest, at, reason, delivery) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (endpoint) DO UPDATE SET url_digest = EXCLUDED.url_digest, \
                 at = EXCLUDED.at, reason = EXCLUDED.reason, delivery = EXCLUDED.delivery",
            disabled.endpoint,
            disabled.url_digest,
            disabled.at,
            disabled.reason,
            disabled.delivery,
        )],
        "disable a webhook",
    )
    .await?;
    Ok(())
}

/// Takes the mark off an endpoint: whether it had one.
pub(crate) async fn enable(shared: &Shared, endpoint: &str) -> Result<bool, StoreError> {
    let conn = Conn::get(&shared.pool).await?;
    let rows = conn
        .pipeline(
            &[step!(
                "DELETE FROM webhook_disabled WHERE endpoint = $1 RETURNING 1",
                endpoint
            )],
            "enable a webhook",
        )
        .await?;
    Ok(rows.first().is_some_and(|r| !r.is_empty()))
}

/// Every disabled endpoint, by name.
pub(crate) async fn disabled(shared: &Shared) -> Result<Vec<DisabledWebhook>, StoreError> {
    let conn = Conn::get(&shared.pool).await?;
    let rows = conn
        .pipeline(
            &[step!(
                "SELECT endpoint, url_digest, at, reason, delivery FROM webhook_disabled \
                 ORDER BY endpoint"
            )],
            "read disabled webhooks",
        )
        .await?;
    rows.iter()
        .flatten()
        .map(|row| {
            Ok(DisabledWebhook {
                endpoint: get(row, 0)?,
                url_digest: get(row, 1)?,
                at: get(row, 2)?,
                reason: get(row, 3)?,
                delivery: get(row, 4)?,
            })
        })
        .collect()
}

/// One batch of event retention (see [`herald_store::Store::purge_events`]):
/// the outbox up to the lowest cursor of the listed endpoints (an endpoint
/// without one holds everything), old tries and lapsed entries, skipping
/// rows another purge holds.
pub(crate) async fn purge(
    shared: &Shared,
    retention: &EventRetention,
) -> Result<PurgedEvents, StoreError> {
    let limit = i64::try_from(retention.limit).unwrap_or(i64::MAX);
    let endpoints = &retention.endpoints;
    let wanted = i64::try_from(endpoints.len()).unwrap_or(i64::MAX);
    let tx = Tx::begin(&shared.pool).await?;
    let rows = tx
        .commit(
            &[
                step!(
                    "WITH known AS ( \
                         SELECT cursor_tx, cursor_id FROM webhook_cursors \
                         WHERE endpoint = ANY($3::text[])), \
                     upto AS ( \
                         SELECT cursor_tx, cursor_id FROM known \
                         WHERE (SELECT count(*) FROM known) = $4 \
                         ORDER BY cursor_tx, cursor_id LIMIT 1), \
                     doomed AS ( \
                         SELECT o.tx, o.id FROM webhook_outbox o \
                         WHERE o.at < $1 AND ($4 = 0 OR EXISTS ( \
                             SELECT 1 FROM upto u \
                             WHERE (o.tx, o.id) <= (u.cursor_tx, u.cursor_id))) \
                         ORDER BY o.at LIMIT $2 FOR UPDATE SKIP LOCKED), \
                     gone AS (DELETE FROM webhook_outbox w USING doomed d \
                         WHERE (w.tx, w.id) = (d.tx, d.id) RETURNING 1) \
                     SELECT count(*) FROM gone",
                    retention.outbox_before,
                    limit,
                    *endpoints,
                    wanted,
                ),
                step!(
                    "WITH doomed AS ( \
                         SELECT id FROM webhook_deliveries WHERE at < $1 \
                         ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED), \
                     gone AS (DELETE FROM webhook_deliveries w USING doomed d \
                         WHERE w.id = d.id RETURNING 1) \
                     SELECT count(*) FROM gone",
                    retention.deliveries_before,
                    limit,
                ),
                step!(
                    "WITH doomed AS ( \
                         SELECT address FROM suppressions WHERE expires_at < $1 \
                         ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED), \
                     gone AS (DELETE FROM suppressions s USING doomed d \
                         WHERE s.address = d.address RETURNING 1) \
                     SELECT count(*) FROM gone",
                    retention.lapsed_before,
                    limit,
                ),
            ],
            "purge events",
        )
        .await?;
    Ok(PurgedEvents {
        events: purged(&rows, 0)?,
        deliveries: purged(&rows, 1)?,
        suppressions: purged(&rows, 2)?,
    })
}
