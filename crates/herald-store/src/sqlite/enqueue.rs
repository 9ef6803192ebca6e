//! Storing new messages, inside the writer's group transaction: the
//! idempotency check, the message with its body, recipients and tags, and
//! its first event.

use sqlx::SqliteConnection;

use super::codec::{db, json, message_status, ms};
use crate::{Enqueued, IDEMPOTENCY_WINDOW, MessageStatus, NewMessage, StoreError};

/// One enqueue request (a single message or a batch): each item's answer,
/// or `Err` if the database failed (the writer then rolls back the whole
/// request).
pub(super) async fn enqueue(
    conn: &mut SqliteConnection,
    messages: Vec<NewMessage>,
) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
    // Keys older than the window can never match again; dropping them
    // whenever keys are added keeps the table at one day of traffic, and
    // costs requests without a key nothing. (The oldest item's clock, so no
    // key is dropped that any item of this request could still match.)
    let keyed = messages.iter().filter(|m| m.idempotency.is_some());
    if let Some(oldest) = keyed.map(|m| m.created_at).min() {
        let horizon = ms(oldest).saturating_sub(window_ms());
        sqlx::query("DELETE FROM idempotency WHERE created_at <= ?")
            .bind(horizon)
            .execute(&mut *conn)
            .await
            .map_err(db("prune idempotency keys"))?;
    }
    let mut results = Vec::with_capacity(messages.len());
    for message in messages {
        results.push(enqueue_one(conn, message).await?);
    }
    Ok(results)
}

/// Everything a new message writes, as one statement list: each call into
/// SQLite is a round trip to its connection thread, and the writer's time
/// is the whole queue's, so one call per message rather than six. sqlx
/// binds anonymous parameters across the statements in order, so shared
/// values are bound once per use. Recipients arrive as a JSON array, tags
/// as the tags column's JSON. The caller promises no duplicate recipients;
/// should one slip through, `OR IGNORE` drops it rather than failing the
/// message.
const INSERT_MESSAGE: &str = "\
    INSERT INTO messages (id, message_id, status, created_at, updated_at, send_at, \
        next_attempt_at, attempts, sender, smtputf8, tags, metadata, trace_id) \
        VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?); \
    INSERT INTO message_bodies (message_id, rendered) VALUES (?, ?); \
    INSERT OR IGNORE INTO recipients (message_id, position, address, status) \
        SELECT ?, key, value, 'pending' FROM json_each(?); \
    INSERT OR IGNORE INTO message_tags (message_id, tag) SELECT ?, value FROM json_each(?); \
    INSERT INTO events (message_id, at, kind) VALUES (?, ?, ?); \
    INSERT INTO idempotency (key, request_hash, message_id, created_at) \
        SELECT ?, ?, ?, ? WHERE ? IS NOT NULL;";

fn window_ms() -> i64 {
    i64::try_from(IDEMPOTENCY_WINDOW.as_millis()).unwrap_or(i64::MAX)
}

/// Stores one message unless its idempotency key answers for it. The
/// outer `Result` is the database's, the inner one the item's.
async fn enqueue_one(
    conn: &mut SqliteConnection,
    message: NewMessage,
) -> Result<Result<Enqueued, StoreError>, StoreError> {
    let created = ms(message.created_at);
    if let Some(idem) = &message.idempotency {
        let seen: Option<(String, i64, String, String, String)> = sqlx::query_as(
            "SELECT i.request_hash, i.created_at, m.id, m.message_id, m.status \
             FROM idempotency i JOIN messages m ON m.id = i.message_id WHERE i.key = ?",
        )
        .bind(&idem.key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("read idempotency key"))?;
        if let Some((hash, at, id, message_id, status)) = seen {
            if created.saturating_sub(at) < window_ms() {
                if hash != idem.request_hash {
                    return Ok(Err(StoreError::IdempotencyConflict));
                }
                return Ok(Ok(Enqueued {
                    id,
                    message_id,
                    status: message_status(&status)?,
                    created: false,
                }));
            }
            // Older than the window (a clock step can outrun the pruning):
            // the key is free again.
            sqlx::query("DELETE FROM idempotency WHERE key = ?")
                .bind(&idem.key)
                .execute(&mut *conn)
                .await
                .map_err(db("replace idempotency key"))?;
        }
    }

    let send_at = message.send_at.map(ms);
    let (status, due) = match send_at {
        Some(at) if at > created => (MessageStatus::Scheduled, at),
        _ => (MessageStatus::Queued, created),
    };
    let idem = message.idempotency.as_ref();
    let (id, tags) = (&message.id, json(&message.tags)?);
    sqlx::query(INSERT_MESSAGE)
        // messages
        .bind(id)
        .bind(&message.message_id)
        .bind(status.as_str())
        .bind(created)
        .bind(created)
        .bind(send_at)
        .bind(due)
        .bind(&message.sender)
        .bind(message.smtputf8)
        .bind(&tags)
        .bind(json(&message.metadata)?)
        .bind(&message.trace_id)
        // message_bodies
        .bind(id)
        .bind(&message.rendered)
        // recipients
        .bind(id)
        .bind(json(&message.recipients)?)
        // message_tags
        .bind(id)
        .bind(&tags)
        // events
        .bind(id)
        .bind(created)
        .bind(status.as_str())
        // idempotency
        .bind(idem.map(|i| i.key.as_str()))
        .bind(idem.map(|i| i.request_hash.as_str()))
        .bind(id)
        .bind(created)
        .bind(idem.map(|i| i.key.as_str()))
        .execute(&mut *conn)
        .await
        .map_err(db("insert message"))?;
    Ok(Ok(Enqueued {
        id: message.id,
        message_id: message.message_id,
        status,
        created: true,
    }))
}
