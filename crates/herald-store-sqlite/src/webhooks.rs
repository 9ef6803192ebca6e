//! The webhook side of the store on SQLite: reading the outbox, the
//! endpoints' cursors, the delivery log, endpoints disabled by a 410, and
//! retention of all of it (with lapsed suppressions).

use rusqlite::{Connection, OptionalExtension as _, Row, params};

use super::codec::{corrupt, db, ms, rows, time};
use herald_store::outbox;
use herald_store::{
    DisabledWebhook, EventRetention, FeedCursor, OutboxEvent, PurgedEvents, StoreError,
    WebhookDelivery, WebhookDeliveryRecord,
};

/// An outbox row as stored: id, at, kind, message, body.
type RawEvent = (i64, i64, String, Option<String>, String);

const EVENT_COLUMNS: &str = "id, at, kind, message, body";

/// A row's columns, in order (rusqlite reads a tuple of them).
fn read_event(row: &Row<'_>) -> rusqlite::Result<RawEvent> {
    RawEvent::try_from(row)
}

fn event((id, at, kind, message, body): RawEvent) -> Result<OutboxEvent, StoreError> {
    let cursor = FeedCursor { tx: 0, id };
    Ok(OutboxEvent {
        cursor,
        id: outbox::event_id(cursor),
        kind: kind.parse().map_err(corrupt)?,
        at: time(at)?,
        message,
        body,
    })
}

/// Reads the outbox on from `after` (see [`herald_store::Store::read_outbox`]).
pub(super) fn read_outbox(
    conn: &Connection,
    after: Option<FeedCursor>,
    limit: usize,
) -> Result<Vec<OutboxEvent>, StoreError> {
    rows(
        conn,
        &format!("SELECT {EVENT_COLUMNS} FROM webhook_outbox WHERE id > ? ORDER BY id LIMIT ?"),
        params![
            after.map_or(0, |c| c.id),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        read_event,
        "read the outbox",
    )?
    .into_iter()
    .map(event)
    .collect()
}

/// The event a `webhook-id` names (see [`herald_store::Store::outbox_event`]).
pub(super) fn outbox_event(conn: &Connection, id: &str) -> Result<Option<OutboxEvent>, StoreError> {
    // One writer: every event's tx is 0.
    let Some(cursor) = outbox::event_cursor(id).filter(|c| c.tx == 0) else {
        return Ok(None);
    };
    conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM webhook_outbox WHERE id = ?"
    ))
    .and_then(|mut select| select.query_row([cursor.id], read_event).optional())
    .map_err(db("read an outbox event"))?
    .map(event)
    .transpose()
}

/// An endpoint's cursor (see [`herald_store::Store::webhook_cursor`]).
pub(super) fn webhook_cursor(
    conn: &Connection,
    endpoint: &str,
) -> Result<Option<FeedCursor>, StoreError> {
    conn.prepare_cached("SELECT cursor_tx, cursor_id FROM webhook_cursors WHERE endpoint = ?")
        .and_then(|mut select| {
            select
                .query_row([endpoint], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
                })
                .optional()
        })
        .map_err(db("read webhook cursor"))?
        .map(|(tx, id)| {
            Ok(FeedCursor {
                tx: u64::try_from(tx).map_err(|_| corrupt(format!("cursor tx {tx}")))?,
                id,
            })
        })
        .transpose()
}

/// Moves an endpoint's cursor.
pub(super) fn advance_webhook(
    conn: &Connection,
    endpoint: &str,
    cursor: FeedCursor,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO webhook_cursors (endpoint, cursor_tx, cursor_id) VALUES (?1, ?2, ?3) \
         ON CONFLICT (endpoint) DO UPDATE SET cursor_tx = ?2, cursor_id = ?3",
    )
    .and_then(|mut upsert| {
        upsert.execute(params![
            endpoint,
            i64::try_from(cursor.tx).unwrap_or(i64::MAX),
            cursor.id
        ])
    })
    .map_err(db("advance webhook cursor"))?;
    Ok(())
}

/// Records a try, and moves the cursor with `advance`.
pub(super) fn record_webhook_delivery(
    conn: &Connection,
    delivery: &WebhookDelivery,
    advance: Option<FeedCursor>,
) -> Result<i64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO webhook_deliveries (endpoint, event_id, kind, attempt, at, http_status, \
         duration_ms, error, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            delivery.endpoint,
            delivery.event_id,
            delivery.kind.as_str(),
            delivery.attempt,
            ms(delivery.at),
            delivery.http_status,
            i64::try_from(delivery.duration.as_millis()).unwrap_or(i64::MAX),
            delivery.error,
            delivery.outcome.as_str(),
        ])
    })
    .map_err(db("record webhook delivery"))?;
    let id = conn.last_insert_rowid();
    if let Some(cursor) = advance {
        advance_webhook(conn, &delivery.endpoint, cursor)?;
    }
    Ok(id)
}

const DELIVERY_COLUMNS: &str = "id, endpoint, event_id, kind, attempt, at, http_status, \
     duration_ms, error, outcome";

/// A try's row as stored.
type RawDelivery = (
    i64,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    i64,
    Option<String>,
    String,
);

/// A row's columns, in order (rusqlite reads a tuple of them).
fn read_delivery(row: &Row<'_>) -> rusqlite::Result<RawDelivery> {
    RawDelivery::try_from(row)
}

fn delivery(raw: RawDelivery) -> Result<WebhookDeliveryRecord, StoreError> {
    let (id, endpoint, event_id, kind, attempt, at, status, duration, error, outcome) = raw;
    Ok(WebhookDeliveryRecord {
        id,
        delivery: WebhookDelivery {
            endpoint,
            event_id,
            kind: kind.parse().map_err(corrupt)?,
            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
            at: time(at)?,
            http_status: status.and_then(|s| u16::try_from(s).ok()),
            duration: std::time::Duration::from_millis(u64::try_from(duration).unwrap_or(0)),
            error,
            outcome: outcome.parse().map_err(corrupt)?,
        },
    })
}

/// Tries, newest first (see [`herald_store::Store::list_webhook_deliveries`]).
pub(super) fn list_webhook_deliveries(
    conn: &Connection,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<WebhookDeliveryRecord>, StoreError> {
    rows(
        conn,
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id < ? \
             ORDER BY id DESC LIMIT ?"
        ),
        params![
            before.unwrap_or(i64::MAX),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        read_delivery,
        "list webhook deliveries",
    )?
    .into_iter()
    .map(delivery)
    .collect()
}

/// One try (see [`herald_store::Store::webhook_delivery`]).
pub(super) fn webhook_delivery(
    conn: &Connection,
    id: i64,
) -> Result<Option<WebhookDeliveryRecord>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?"
    ))
    .and_then(|mut select| select.query_row([id], read_delivery).optional())
    .map_err(db("read a webhook delivery"))?
    .map(delivery)
    .transpose()
}

/// Marks an endpoint disabled (see [`herald_store::Store::disable_webhook`]).
pub(super) fn disable(conn: &Connection, disabled: &DisabledWebhook) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO webhook_disabled (endpoint, url_digest, at, reason, delivery) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .and_then(|mut upsert| {
        upsert.execute(params![
            disabled.endpoint,
            disabled.url_digest,
            ms(disabled.at),
            disabled.reason,
            disabled.delivery
        ])
    })
    .map_err(db("disable a webhook"))?;
    Ok(())
}

/// Takes the mark off an endpoint: whether it had one.
pub(super) fn enable(conn: &Connection, endpoint: &str) -> Result<bool, StoreError> {
    let deleted = conn
        .prepare_cached("DELETE FROM webhook_disabled WHERE endpoint = ?")
        .and_then(|mut delete| delete.execute([endpoint]))
        .map_err(db("enable a webhook"))?;
    Ok(deleted > 0)
}

/// Every disabled endpoint, by name.
pub(super) fn disabled(conn: &Connection) -> Result<Vec<DisabledWebhook>, StoreError> {
    rows(
        conn,
        "SELECT endpoint, url_digest, at, reason, delivery FROM webhook_disabled \
         ORDER BY endpoint",
        [],
        |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, Option<i64>>(4)?,
            ))
        },
        "read disabled webhooks",
    )?
    .into_iter()
    .map(|(endpoint, url_digest, at, reason, delivery)| {
        Ok(DisabledWebhook {
            endpoint,
            url_digest,
            at: time(at)?,
            reason,
            delivery,
        })
    })
    .collect()
}

/// One batch of event retention (see [`herald_store::Store::purge_events`]).
pub(super) fn purge(
    conn: &Connection,
    retention: &EventRetention,
) -> Result<PurgedEvents, StoreError> {
    let limit = i64::try_from(retention.limit).unwrap_or(i64::MAX);
    // The outbox up to the lowest cursor of the listed endpoints (one
    // writer: the id alone orders it); an endpoint without one holds all.
    let mut upto = i64::MAX;
    for endpoint in &retention.endpoints {
        upto = upto.min(webhook_cursor(conn, endpoint)?.map_or(0, |c| c.id));
    }
    let events = conn
        .prepare_cached(
            "DELETE FROM webhook_outbox WHERE id IN ( \
                 SELECT id FROM webhook_outbox WHERE at < ? AND id <= ? ORDER BY at LIMIT ?)",
        )
        .and_then(|mut delete| delete.execute(params![ms(retention.outbox_before), upto, limit]))
        .map_err(db("purge the outbox"))?;
    let deliveries = conn
        .prepare_cached(
            "DELETE FROM webhook_deliveries WHERE id IN ( \
                 SELECT id FROM webhook_deliveries WHERE at < ? ORDER BY at LIMIT ?)",
        )
        .and_then(|mut delete| delete.execute(params![ms(retention.deliveries_before), limit]))
        .map_err(db("purge webhook deliveries"))?;
    let suppressions = conn
        .prepare_cached(
            "DELETE FROM suppressions WHERE address IN ( \
                 SELECT address FROM suppressions WHERE expires_at < ? \
                 ORDER BY expires_at LIMIT ?)",
        )
        .and_then(|mut delete| delete.execute(params![ms(retention.lapsed_before), limit]))
        .map_err(db("purge lapsed suppressions"))?;
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Ok(PurgedEvents {
        events: count(events),
        deliveries: count(deliveries),
        suppressions: count(suppressions),
    })
}
