//! Storing new messages, inside the writer's group transaction: the
//! idempotency check, the message with its body, recipients and tags, and
//! its first event.

use rusqlite::{Connection, params};

use super::codec::{db, json, message_status, ms, rows};
use herald_store::{
    Enqueued, IDEMPOTENCY_WINDOW, Idempotency, MessageStatus, NewMessage, StoreError,
};

/// One enqueue request (a single message or a batch): each item's answer,
/// or `Err` if the database failed (the writer then rolls back the whole
/// request).
pub(super) fn enqueue(
    conn: &Connection,
    messages: Vec<NewMessage>,
) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
    let keyed = messages.iter().filter(|m| m.idempotency.is_some());
    if let Some(oldest) = keyed.map(|m| m.created_at).min() {
        prune_keys(conn, ms(oldest))?;
    }
    messages
        .into_iter()
        .map(|message| enqueue_one(conn, message))
        .collect()
}

/// Keys older than the window before `oldest` can never match again;
/// dropping them whenever keys are added keeps the table at one day of
/// traffic, and costs requests without a key nothing. (`oldest` is the
/// oldest item's clock, so no key is dropped that any item of the request
/// could still match.)
fn prune_keys(conn: &Connection, oldest: i64) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM idempotency WHERE created_at <= ?")
        .and_then(|mut prune| prune.execute([oldest.saturating_sub(window_ms())]))
        .map(drop)
        .map_err(db("prune idempotency keys"))
}

/// A keyed batch (see [`herald_store::Store::enqueue_batch_once`]). Its items
/// are stored under `"{key} #{position}"`: a space cannot occur in an
/// `Idempotency-Key`, so the range of keys from `"{key} #"` up to
/// `"{key} $"` holds exactly this batch's items and nothing of any other
/// request. Any item left from an earlier batch under the key decides:
/// the same hash replays, another conflicts, even where the two batches
/// stored different numbers of items.
pub(super) fn enqueue_batch_once(
    conn: &Connection,
    batch: &Idempotency,
    messages: Vec<NewMessage>,
) -> Result<Vec<Enqueued>, StoreError> {
    let created = messages.iter().map(|m| ms(m.created_at)).min().unwrap_or(0);
    match replay_batch(conn, batch, created)? {
        Some(Ok(first)) if first.len() == messages.len() => return Ok(first),
        // Same hash, other items: not the same request after all.
        Some(Ok(_)) | Some(Err(_)) => return Err(StoreError::IdempotencyConflict),
        None => {}
    }
    // No key of the range is in use, so every item is new: stored
    // without looking its own key up again.
    prune_keys(conn, created)?;
    messages
        .into_iter()
        .enumerate()
        .map(|(position, message)| {
            insert_new(
                conn,
                NewMessage {
                    idempotency: Some(Idempotency {
                        key: batch_item_key(&batch.key, position),
                        request_hash: batch.request_hash.clone(),
                    }),
                    ..message
                },
            )
        })
        .collect()
}

/// The key item `position` of a batch under `key` is stored with; zero
/// padded so that the keys sort in batch order.
fn batch_item_key(key: &str, position: usize) -> String {
    format!("{key} #{position:010}")
}

/// What a batch key already answers for a request made at `created` (see
/// [`replay`], of which this is the batch's form). Reads only.
pub(super) fn replay_batch(
    conn: &Connection,
    batch: &Idempotency,
    created: i64,
) -> Result<Option<Result<Vec<Enqueued>, StoreError>>, StoreError> {
    let (from, to) = (format!("{} #", batch.key), format!("{} $", batch.key));
    first_answers(conn, &from, &to, &batch.request_hash, created)
}

/// The first answers stored under the idempotency keys from `from` up to
/// (not including) `to` and used within the window before `created`, in
/// key order: `None` if there are none, a conflict if any of them was
/// stored for another request hash. The status is the one first given:
/// scheduled for a send_at still ahead then, queued otherwise (see
/// enqueue_one).
fn first_answers(
    conn: &Connection,
    from: &str,
    to: &str,
    request_hash: &str,
    created: i64,
) -> Result<Option<Result<Vec<Enqueued>, StoreError>>, StoreError> {
    let seen = rows(
        conn,
        "SELECT i.request_hash, m.id, m.message_id, \
             CASE WHEN m.send_at > m.created_at THEN 'scheduled' ELSE 'queued' END \
         FROM idempotency i JOIN messages m ON m.id = i.message_id \
         WHERE i.key >= ?1 AND i.key < ?2 AND i.created_at > ?3 ORDER BY i.key",
        params![from, to, created.saturating_sub(window_ms())],
        |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        },
        "read idempotency keys",
    )?;
    if seen.is_empty() {
        return Ok(None);
    }
    if seen.iter().any(|(hash, ..)| hash != request_hash) {
        return Ok(Some(Err(StoreError::IdempotencyConflict)));
    }
    let first = seen
        .into_iter()
        .map(|(_, id, message_id, status)| {
            Ok(Enqueued {
                id,
                message_id,
                status: message_status(&status)?,
                created: false,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(Ok(first)))
}

fn window_ms() -> i64 {
    i64::try_from(IDEMPOTENCY_WINDOW.as_millis()).unwrap_or(i64::MAX)
}

/// Stores one message unless its idempotency key answers for it. The
/// outer `Result` is the database's, the inner one the item's.
fn enqueue_one(
    conn: &Connection,
    message: NewMessage,
) -> Result<Result<Enqueued, StoreError>, StoreError> {
    let created = ms(message.created_at);
    if let Some(idem) = &message.idempotency
        && let Some(answer) = replay(conn, idem, created)?
    {
        return Ok(answer);
    }
    insert_new(conn, message).map(Ok)
}

/// Stores a message whose key, if it has one, answers for nothing yet.
fn insert_new(conn: &Connection, message: NewMessage) -> Result<Enqueued, StoreError> {
    let created = ms(message.created_at);

    let send_at = message.send_at.map(ms);
    let (status, due) = match send_at {
        Some(at) if at > created => (MessageStatus::Scheduled, at),
        _ => (MessageStatus::Queued, created),
    };
    let id = &message.id;
    let (tags, metadata) = (json(&message.tags)?, json(&message.metadata)?);
    conn.prepare_cached(
        "INSERT INTO messages (id, message_id, status, created_at, updated_at, send_at, \
         next_attempt_at, attempts, sender, smtputf8, tags, metadata, trace_id, submitted_by, \
         template, template_version) \
         VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, 0, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            id,
            message.message_id,
            status.as_str(),
            created,
            send_at,
            due,
            message.sender,
            message.smtputf8,
            tags,
            metadata,
            message.trace_id,
            message.submitted_by,
            message.template.as_ref().map(|t| t.name.as_str()),
            message.template.as_ref().map(|t| t.version),
        ])
    })
    .map_err(db("insert message"))?;
    conn.prepare_cached("INSERT INTO message_bodies (message_id, rendered) VALUES (?, ?)")
        .and_then(|mut insert| insert.execute(params![id, message.rendered]))
        .map_err(db("insert message body"))?;
    // The caller promises no duplicate recipients; should one slip
    // through, `OR IGNORE` drops it rather than failing the message.
    let mut insert = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO recipients (message_id, position, address, status) \
             VALUES (?, ?, ?, 'pending')",
        )
        .map_err(db("insert recipient"))?;
    for (position, address) in message.recipients.iter().enumerate() {
        let position = i64::try_from(position).unwrap_or(i64::MAX);
        insert
            .execute(params![id, position, address])
            .map_err(db("insert recipient"))?;
    }
    let mut insert = conn
        .prepare_cached("INSERT OR IGNORE INTO message_tags (message_id, tag) VALUES (?, ?)")
        .map_err(db("insert tag"))?;
    for tag in &message.tags {
        insert.execute(params![id, tag]).map_err(db("insert tag"))?;
    }
    conn.prepare_cached("INSERT INTO events (message_id, at, kind) VALUES (?, ?, ?)")
        .and_then(|mut insert| insert.execute(params![id, created, status.as_str()]))
        .map_err(db("insert event"))?;
    if let Some(idem) = &message.idempotency {
        // A row still there for the key is older than the window (replay
        // said so): the key is free again.
        conn.prepare_cached(
            "INSERT OR REPLACE INTO idempotency (key, request_hash, message_id, created_at) \
             VALUES (?, ?, ?, ?)",
        )
        .and_then(|mut insert| insert.execute(params![idem.key, idem.request_hash, id, created]))
        .map_err(db("insert idempotency key"))?;
    }
    Ok(Enqueued {
        id: message.id,
        message_id: message.message_id,
        status,
        created: true,
    })
}

/// What an idempotency key already answers for a request made at
/// `created`: the first answer (same request hash), a conflict (another
/// hash), or nothing (a key unknown, or used longer than the window ago).
/// Reads only: it also serves [`herald_store::Store::replay`] on a read
/// connection.
pub(super) fn replay(
    conn: &Connection,
    idem: &Idempotency,
    created: i64,
) -> Result<Option<Result<Enqueued, StoreError>>, StoreError> {
    // The range from the key to the key followed by NUL holds the key
    // alone: nothing else sorts between them, and no key holds a NUL.
    let to = format!("{}\0", idem.key);
    Ok(
        match first_answers(conn, &idem.key, &to, &idem.request_hash, created)? {
            Some(Ok(first)) => first.into_iter().next().map(Ok),
            Some(Err(conflict)) => Some(Err(conflict)),
            None => None,
        },
    )
}
