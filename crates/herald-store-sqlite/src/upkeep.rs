//! Housekeeping that is not on a message's path: retention (deleting
//! finished messages and old idempotency records in small batches) and
//! the leader row that lets one holder at a time run a role.

use std::time::Duration;

use rusqlite::{Connection, params};
use time::OffsetDateTime;

use super::codec::{db, ms, ms_after};
use herald_store::{Purged, Retention, StoreError};

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
    Ok(Purged {
        messages: u64::try_from(messages).unwrap_or(u64::MAX),
        keys: u64::try_from(keys).unwrap_or(u64::MAX),
    })
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
