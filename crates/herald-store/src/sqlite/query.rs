//! The questions: one message with its history, listings, queue figures.
//! They run on the read pool, and inside the writer's transaction when a
//! change answers with the changed message (cancel, retry).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use time::OffsetDateTime;

use super::codec::{
    EventRow, MESSAGE_COLUMNS, MessageRow, RecipientRow, db, message_status, ms, unsigned,
};
use crate::{
    ListFilter, MessageRecord, MessageStatus, Page, QueueStats, RecipientRecord, StoreError,
};

/// The page size when the filter asks for none.
const DEFAULT_LIMIT: usize = 50;

/// The message with recipients and events, if it exists.
pub(super) async fn get(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Option<MessageRecord>, StoreError> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?");
    let Some(row) = sqlx::query_as::<_, MessageRow>(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("read message"))?
    else {
        return Ok(None);
    };
    let recipients = sqlx::query_as::<_, RecipientRow>(
        "SELECT message_id, address, status, smtp_code, enhanced_code, response \
         FROM recipients WHERE message_id = ? ORDER BY position",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("read recipients"))?
    .into_iter()
    .map(RecipientRow::into_record)
    .collect::<Result<Vec<_>, _>>()?;
    let events = sqlx::query_as::<_, EventRow>(
        "SELECT at, kind, relay, attempt, outcome, smtp_code, enhanced_code, detail, duration_ms \
         FROM events WHERE message_id = ? ORDER BY id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("read events"))?
    .into_iter()
    .map(EventRow::into_event)
    .collect::<Result<Vec<_>, _>>()?;
    row.into_record(recipients, events).map(Some)
}

/// [`get`] for a message known to exist (inside the writer's transaction).
pub(super) async fn get_existing(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<MessageRecord, StoreError> {
    get(conn, id).await?.ok_or(StoreError::NotFound)
}

/// A page of messages, newest first, without events.
pub(super) async fn list(
    conn: &mut SqliteConnection,
    filter: &ListFilter,
) -> Result<Page, StoreError> {
    let limit = if filter.limit == 0 {
        DEFAULT_LIMIT
    } else {
        filter.limit
    };
    let mut q = QueryBuilder::<Sqlite>::new(format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE 1 = 1"
    ));
    if let Some(status) = filter.status {
        q.push(" AND m.status = ").push_bind(status.as_str());
    }
    if let Some(tag) = &filter.tag {
        q.push(" AND m.id IN (SELECT message_id FROM message_tags WHERE tag = ")
            .push_bind(tag.clone())
            .push(")");
    }
    if let Some(recipient) = &filter.recipient {
        q.push(" AND m.id IN (SELECT message_id FROM recipients WHERE address = ")
            .push_bind(recipient.clone())
            .push(")");
    }
    if let Some(since) = filter.since {
        q.push(" AND m.created_at >= ").push_bind(ms(since));
    }
    if let Some(until) = filter.until {
        q.push(" AND m.created_at < ").push_bind(ms(until));
    }
    if let Some(after) = &filter.after_id {
        q.push(" AND m.id < ").push_bind(after.clone());
    }
    // One row more than asked tells whether another page exists.
    q.push(" ORDER BY m.id DESC LIMIT ")
        .push_bind(i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX));
    let mut rows = q
        .build_query_as::<MessageRow>()
        .fetch_all(&mut *conn)
        .await
        .map_err(db("list messages"))?;
    let more = rows.len() > limit;
    rows.truncate(limit);

    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let mut recipients = recipients_of(conn, &ids).await?;
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
async fn recipients_of(
    conn: &mut SqliteConnection,
    ids: &[&str],
) -> Result<HashMap<String, Vec<RecipientRecord>>, StoreError> {
    let mut by_message: HashMap<String, Vec<RecipientRecord>> = HashMap::new();
    if ids.is_empty() {
        return Ok(by_message);
    }
    let mut q = QueryBuilder::<Sqlite>::new(
        "SELECT message_id, address, status, smtp_code, enhanced_code, response \
         FROM recipients WHERE message_id IN (",
    );
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(id.to_string());
    }
    q.push(") ORDER BY message_id, position");
    let rows = q
        .build_query_as::<RecipientRow>()
        .fetch_all(&mut *conn)
        .await
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
pub(super) async fn stats(
    conn: &mut SqliteConnection,
    now: OffsetDateTime,
) -> Result<QueueStats, StoreError> {
    let mut by_status: BTreeMap<MessageStatus, u64> =
        MessageStatus::ALL.into_iter().map(|s| (s, 0)).collect();
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT status, n FROM status_counts")
        .fetch_all(&mut *conn)
        .await
        .map_err(db("read status counts"))?;
    for (status, n) in rows {
        by_status.insert(message_status(&status)?, unsigned(n, "status count")?);
    }
    let now_ms = ms(now);
    // Scheduled messages whose time has come are due exactly like queued
    // ones (claim takes them), so they count here too.
    let oldest: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM messages \
         WHERE status IN ('scheduled', 'queued', 'deferred') AND next_attempt_at <= ?",
    )
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await
    .map_err(db("read oldest due"))?;
    let oldest_due_age = oldest
        .map(|due| Duration::from_millis(u64::try_from(now_ms.saturating_sub(due)).unwrap_or(0)));
    Ok(QueueStats {
        by_status,
        oldest_due_age,
    })
}

/// Messages not yet final.
pub(super) async fn depth(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(n), 0) FROM status_counts \
         WHERE status IN ('scheduled', 'queued', 'sending', 'deferred')",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(db("read queue depth"))?;
    unsigned(n, "queue depth")
}
