//! The questions: one message with its history, listings, queue figures.
//! Each is one statement (a message's recipients and events come as JSON
//! from subqueries), so each answer is of one instant.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use deadpool_postgres::Pool;
use time::OffsetDateTime;

use super::Shared;
use super::codec::{EVENTS_COLUMN, MESSAGE_COLUMNS, get, message, unsigned};
use super::depth::COUNTS;
use super::pipeline::{Conn, Param, Step, step};
use herald_store::{ListFilter, MessageRecord, MessageStatus, Page, QueueStats, StoreError};

/// The page size when the filter asks for none.
const DEFAULT_LIMIT: usize = 50;

/// One message with its recipients and events, by id.
pub(crate) static GET: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {MESSAGE_COLUMNS}, {EVENTS_COLUMN} FROM messages m WHERE m.id = $1")
});

/// The message with recipients and events, if it exists.
pub(crate) async fn get_message(
    pool: &Pool,
    id: &str,
) -> Result<Option<MessageRecord>, StoreError> {
    let conn = Conn::get(pool).await?;
    let rows = conn
        .pipeline(&[step!(GET.as_str(), id)], "read message")
        .await?;
    rows.first()
        .and_then(|rows| rows.first())
        .map(|row| message(row, true))
        .transpose()
}

/// A page of messages, newest first, without events.
pub(crate) async fn list(pool: &Pool, filter: &ListFilter) -> Result<Page, StoreError> {
    let limit = if filter.limit == 0 {
        DEFAULT_LIMIT
    } else {
        filter.limit
    };
    // One row more than asked tells whether another page exists.
    let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
    let status = filter.status.map(MessageStatus::as_str);
    let mut clauses: Vec<(&str, Param<'_>)> = Vec::new();
    if let Some(status) = &status {
        clauses.push((" AND m.status = ?", status));
    }
    if let Some(tag) = &filter.tag {
        clauses.push((" AND m.tags @> jsonb_build_array(?::text)", tag));
    }
    if let Some(recipient) = &filter.recipient {
        clauses.push((
            " AND m.id IN (SELECT message_id FROM recipients WHERE address = ?)",
            recipient,
        ));
    }
    if let Some(since) = &filter.since {
        clauses.push((" AND m.created_at >= ?", since));
    }
    if let Some(until) = &filter.until {
        clauses.push((" AND m.created_at < ?", until));
    }
    if let Some(after) = &filter.after_id {
        clauses.push((" AND m.id < ?", after));
    }
    clauses.push((" ORDER BY m.id DESC LIMIT ?", &fetch));
    let mut sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE true");
    for (n, (clause, _)) in clauses.iter().enumerate() {
        sql.push_str(&clause.replace('?', &format!("${}", n + 1)));
    }
    let params = clauses.into_iter().map(|(_, param)| param).collect();
    let conn = Conn::get(pool).await?;
    let rows = conn
        .pipeline(&[Step { sql: &sql, params }], "list messages")
        .await?;
    let rows = rows.into_iter().next().unwrap_or_default();
    let more = rows.len() > limit;
    let messages = rows
        .iter()
        .take(limit)
        .map(|row| message(row, false))
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

/// Messages per status (from the ledger) and the lag of the oldest due
/// message at `now` (the database's, with its clock).
pub(crate) async fn stats(shared: &Shared, now: OffsetDateTime) -> Result<QueueStats, StoreError> {
    let now = shared.now(now);
    let conn = Conn::get(&shared.pool).await?;
    // Scheduled messages whose time has come are due exactly like queued
    // ones (claims take them), so they count here too.
    let rows = conn
        .pipeline(
            &[
                step!(COUNTS),
                step!(
                    "SELECT min(next_attempt_at), coalesce($1::timestamptz, now()) FROM messages \
                     WHERE status IN ('scheduled', 'queued', 'deferred') \
                         AND next_attempt_at <= coalesce($1::timestamptz, now())",
                    now,
                ),
            ],
            "read queue figures",
        )
        .await?;
    let counts = rows
        .first()
        .and_then(|rows| rows.first())
        .ok_or_else(|| StoreError::Unavailable("postgres: no status counts".into()))?;
    let mut by_status = BTreeMap::new();
    for (column, status) in MessageStatus::ALL.into_iter().enumerate() {
        by_status.insert(
            status,
            unsigned(get::<i64>(counts, column)?, "status count")?,
        );
    }
    let oldest_due_age = match rows.get(1).and_then(|rows| rows.first()) {
        Some(row) => {
            let due: Option<OffsetDateTime> = get(row, 0)?;
            let now: OffsetDateTime = get(row, 1)?;
            due.map(|due| Duration::try_from(now - due).unwrap_or(Duration::ZERO))
        }
        None => None,
    };
    Ok(QueueStats {
        by_status,
        oldest_due_age,
    })
}
