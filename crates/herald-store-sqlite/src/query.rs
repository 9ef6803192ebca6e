//! The questions: one message with its history, listings, queue figures.
//! They run on a read connection, and inside the writer's transaction when
//! a change answers with the changed message (cancel, retry).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension as _, params_from_iter};
use time::OffsetDateTime;

use super::codec::{
    EVENT_COLUMNS, EventRow, MESSAGE_COLUMNS, MessageRow, RECIPIENT_COLUMNS, RecipientRow, db,
    message_status, ms, rows, unsigned,
};
use herald_store::{
    ListFilter, MessageRecord, MessageStatus, Page, QueueStats, RecipientRecord, StoreError,
};

/// The page size when the filter asks for none.
const DEFAULT_LIMIT: usize = 50;

/// The statuses that are not final: the queue's depth.
const OPEN_STATUSES: &str = "('scheduled', 'queued', 'sending', 'deferred')";

/// The message with recipients and events, if it exists.
pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<MessageRecord>, StoreError> {
    let Some(row) = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?"
        ))
        .and_then(|mut select| select.query_row([id], MessageRow::read).optional())
        .map_err(db("read message"))?
    else {
        return Ok(None);
    };
    let recipients = rows(
        conn,
        &format!(
            "SELECT {RECIPIENT_COLUMNS} FROM recipients WHERE message_id = ? ORDER BY position"
        ),
        [id],
        RecipientRow::read,
        "read recipients",
    )?
    .into_iter()
    .map(RecipientRow::into_record)
    .collect::<Result<Vec<_>, _>>()?;
    let events = rows(
        conn,
        &format!("SELECT {EVENT_COLUMNS} FROM events WHERE message_id = ? ORDER BY id"),
        [id],
        EventRow::read,
        "read events",
    )?
    .into_iter()
    .map(EventRow::into_event)
    .collect::<Result<Vec<_>, _>>()?;
    row.into_record(recipients, events).map(Some)
}

/// [`get`] for a message known to exist (inside the writer's transaction).
pub(super) fn get_existing(conn: &Connection, id: &str) -> Result<MessageRecord, StoreError> {
    get(conn, id)?.ok_or(StoreError::NotFound)
}

/// A page of messages, newest first, without events.
pub(super) fn list(conn: &Connection, filter: &ListFilter) -> Result<Page, StoreError> {
    let limit = if filter.limit == 0 {
        DEFAULT_LIMIT
    } else {
        filter.limit
    };
    let mut sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE 1 = 1");
    let mut args: Vec<Value> = Vec::new();
    let mut and = |clause: &str, value: Value| {
        sql.push_str(clause);
        args.push(value);
    };
    if let Some(status) = filter.status {
        and(" AND m.status = ?", status.as_str().to_owned().into());
    }
    if let Some(tag) = &filter.tag {
        and(
            " AND m.id IN (SELECT message_id FROM message_tags WHERE tag = ?)",
            tag.clone().into(),
        );
    }
    if let Some(recipient) = &filter.recipient {
        and(
            " AND m.id IN (SELECT message_id FROM recipients WHERE address = ?)",
            recipient.clone().into(),
        );
    }
    if let Some(since) = filter.since {
        and(" AND m.created_at >= ?", ms(since).into());
    }
    if let Some(until) = filter.until {
        and(" AND m.created_at < ?", ms(until).into());
    }
    if let Some(after) = &filter.after_id {
        and(" AND m.id < ?", after.clone().into());
    }
    // One row more than asked tells whether another page exists.
    let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
    and(" ORDER BY m.id DESC LIMIT ?", fetch.into());
    let mut rows = conn
        .prepare(&sql)
        .and_then(|mut select| {
            select
                .query_map(params_from_iter(args), MessageRow::read)?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(db("list messages"))?;
    let more = rows.len() > limit;
    rows.truncate(limit);

    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let mut recipients = recipients_of(conn, &ids)?;
    let messages = rows
        .into_iter()
        .map(|row| {
            let mine = recipients.remove(&row.id).unwrap_or_default();
            row.into_record(mine, Vec::new())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let next_after_id = if more {
        messages.last().map(|m| m.id.clone())
    } else {
        None
    };
    Ok(Page {
        messages,
        next_after_id,
    })
}

/// The recipients of several messages, each list in envelope order.
fn recipients_of(
    conn: &Connection,
    ids: &[&str],
) -> Result<HashMap<String, Vec<RecipientRecord>>, StoreError> {
    let mut by_message: HashMap<String, Vec<RecipientRecord>> = HashMap::new();
    if ids.is_empty() {
        return Ok(by_message);
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let rows = conn
        .prepare(&format!(
            "SELECT {RECIPIENT_COLUMNS} FROM recipients WHERE message_id IN ({marks}) \
             ORDER BY message_id, position"
        ))
        .and_then(|mut select| {
            select
                .query_map(params_from_iter(ids), RecipientRow::read)?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(db("list recipients"))?;
    for row in rows {
        let message = row.message_id.clone();
        by_message
            .entry(message)
            .or_default()
            .push(row.into_record()?);
    }
    Ok(by_message)
}

/// Messages per status (from the trigger-kept counts) and the lag of the
/// oldest due message.
pub(super) fn stats(conn: &Connection, now: OffsetDateTime) -> Result<QueueStats, StoreError> {
    let mut by_status: BTreeMap<MessageStatus, u64> =
        MessageStatus::ALL.into_iter().map(|s| (s, 0)).collect();
    let counts = rows(
        conn,
        "SELECT status, n FROM status_counts",
        [],
        |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
        "read status counts",
    )?;
    for (status, n) in counts {
        by_status.insert(message_status(&status)?, unsigned(n, "status count")?);
    }
    let now_ms = ms(now);
    // Scheduled messages whose time has come are due exactly like queued
    // ones (claim takes them), so they count here too. The index is named
    // for the reason given at lease::CLAIMABLE: the first entry answers.
    let oldest = conn
        .prepare_cached(
            "SELECT MIN(next_attempt_at) FROM messages INDEXED BY messages_due \
             WHERE status IN ('scheduled', 'queued', 'deferred') AND next_attempt_at <= ?",
        )
        .and_then(|mut select| select.query_row([now_ms], |row| row.get::<_, Option<i64>>(0)))
        .map_err(db("read oldest due"))?;
    let oldest_due_age = oldest
        .map(|due| Duration::from_millis(u64::try_from(now_ms.saturating_sub(due)).unwrap_or(0)));
    Ok(QueueStats {
        by_status,
        oldest_due_age,
    })
}

/// Messages not yet final.
pub(super) fn depth(conn: &Connection) -> Result<u64, StoreError> {
    let n = conn
        .prepare_cached(&format!(
            "SELECT COALESCE(SUM(n), 0) FROM status_counts WHERE status IN {OPEN_STATUSES}"
        ))
        .and_then(|mut select| select.query_row([], |row| row.get::<_, i64>(0)))
        .map_err(db("read queue depth"))?;
    unsigned(n, "queue depth")
}
