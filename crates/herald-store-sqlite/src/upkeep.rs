//! Housekeeping that is not on a message's path: retention (deleting
//! finished messages and old idempotency records in small batches) and
//! the leader row that lets one holder at a time run a role.

use std::time::Duration;

use rusqlite::{Connection, params};
use time::OffsetDateTime;

use super::codec::{db, ms, ms_after, rows, time};
use herald_store::{FeedCursor, FeedEntry, FeedRecord, Purged, Retention, StoreError};

/// Deletes one batch of what retention lets go (see
/// [`herald_store::Store::purge`]). Recipients, bodies, tags, events and
/// keys of a deleted message go with it (`ON DELETE CASCADE`).
pub(super) fn purge(conn: &Connection, retention: &Retention) -> Result<Purged, StoreError> {
    let limit = i64::try_from(retention.limit).unwrap_or(i64::MAX);
    let messages = conn
        .prepare_cached(
            "DELETE FROM messages WHERE id IN ( \
                 SELECT id FROM messages INDEXED BY messages_finished \
                 WHERE status IN ('delivered', 'partial', 'failed', 'cancelled') \
                 AND updated_at < ? ORDER BY updated_at, id LIMIT ?)",
        )
        .and_then(|mut delete| delete.execute(params![ms(retention.messages_before), limit]))
        .map_err(db("purge messages"))?;
    let keys = conn
        .prepare_cached(
            "DELETE FROM idempotency WHERE key IN ( \
                 SELECT key FROM idempotency WHERE created_at < ? ORDER BY created_at LIMIT ?)",
        )
        .and_then(|mut delete| delete.execute(params![ms(retention.keys_before), limit]))
        .map_err(db("purge idempotency keys"))?;
    let feed = conn
        .prepare_cached(
            "DELETE FROM feed WHERE id IN ( \
                 SELECT id FROM feed WHERE at < ? ORDER BY at LIMIT ?)",
        )
        .and_then(|mut delete| delete.execute(params![ms(retention.feed_before), limit]))
        .map_err(db("purge the feed"))?;
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Ok(Purged {
        messages: count(messages),
        keys: count(keys),
        feed: count(feed),
    })
}

/// Appends feed entries (see [`herald_store::Store::append_feed`]).
pub(super) fn append_feed(conn: &Connection, entries: &[FeedEntry]) -> Result<(), StoreError> {
    let mut insert = conn
        .prepare_cached("INSERT INTO feed (at, node, body) VALUES (?, ?, ?)")
        .map_err(db("append to the feed"))?;
    for entry in entries {
        insert
            .execute(params![ms(entry.at), entry.node, entry.body])
            .map_err(db("append to the feed"))?;
    }
    Ok(())
}

/// Reads the feed (see [`herald_store::Store::read_feed`]). One writer
/// commits in id order, so the id alone is the cursor.
pub(super) fn read_feed(
    conn: &Connection,
    after: Option<FeedCursor>,
    since: OffsetDateTime,
    limit: usize,
) -> Result<Vec<FeedRecord>, StoreError> {
    let after = after.map_or(0, |cursor| cursor.id);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let found = rows(
        conn,
        "SELECT id, at, node, body FROM feed WHERE id > ? AND at >= ? ORDER BY id LIMIT ?",
        params![after, ms(since), limit],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        },
        "read the feed",
    )?;
    found
        .into_iter()
        .map(|(id, at, node, body)| {
            Ok(FeedRecord {
                cursor: FeedCursor { tx: 0, id },
                entry: FeedEntry {
                    at: time(at)?,
                    node,
                    body,
                },
            })
        })
        .collect()
}

/// Takes or renews `role` for `holder` (see [`herald_store::Store::lead`]).
pub(super) fn lead(
    conn: &Connection,
    role: &str,
    holder: &str,
    ttl: Duration,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "INSERT INTO leaders (role, holder, until) VALUES (?1, ?2, ?3) \
             ON CONFLICT (role) DO UPDATE SET holder = excluded.holder, until = excluded.until \
             WHERE leaders.holder = excluded.holder OR leaders.until <= ?4",
        )
        .and_then(|mut upsert| upsert.execute(params![role, holder, ms_after(now, ttl), ms(now)]))
        .map_err(db("take leadership"))?;
    Ok(changed > 0)
}
