//! Housekeeping off a message's path: retention (deleting finished
//! messages and old idempotency keys in small batches), the leader row
//! that lets one holder at a time run a role, and the readiness ping.

use std::time::Duration;

use deadpool_postgres::Pool;
use time::OffsetDateTime;

use super::Shared;
use super::codec::{get, interval, purged};
use super::pipeline::{Conn, Tx, step};
use herald_store::{FeedCursor, FeedEntry, FeedRecord, Purged, Retention, StoreError};

/// Deletes one batch of what retention lets go (see
/// [`herald_store::Store::purge`]). Bodies, recipients, events and keys of
/// a deleted message go with it (`ON DELETE CASCADE`). Rows another purge
/// is deleting are skipped, not waited for.
pub(crate) async fn purge(shared: &Shared, retention: &Retention) -> Result<Purged, StoreError> {
    let limit = i64::try_from(retention.limit).unwrap_or(i64::MAX);
    let tx = Tx::begin(&shared.pool).await?;
    let rows = tx
        .commit(
            &[
                step!(
                    "WITH doomed AS ( \
                         SELECT id FROM messages \
                         WHERE status IN ('delivered', 'partial', 'failed', 'cancelled') \
                             AND updated_at < $1 \
                         ORDER BY updated_at, id LIMIT $2 FOR UPDATE SKIP LOCKED), \
                     gone AS (DELETE FROM messages m USING doomed WHERE m.id = doomed.id \
                         RETURNING 1) \
                     SELECT count(*) FROM gone",
                    retention.messages_before,
                    limit,
                ),
                step!(
                    "WITH doomed AS ( \
                         SELECT key, kind, position FROM idempotency WHERE created_at < $1 \
                         ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED), \
                     gone AS (DELETE FROM idempotency i USING doomed d \
                         WHERE (i.key, i.kind, i.position) = (d.key, d.kind, d.position) \
                         RETURNING 1) \
                     SELECT count(*) FROM gone",
                    retention.keys_before,
                    limit,
                ),
                step!(
                    "WITH doomed AS ( \
                         SELECT tx, id FROM feed WHERE at < $1 \
                         ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED), \
                     gone AS (DELETE FROM feed f USING doomed d \
                         WHERE (f.tx, f.id) = (d.tx, d.id) RETURNING 1) \
                     SELECT count(*) FROM gone",
                    retention.feed_before,
                    limit,
                ),
            ],
            "purge",
        )
        .await?;
    Ok(Purged {
        messages: purged(&rows, 0)?,
        keys: purged(&rows, 1)?,
        feed: purged(&rows, 2)?,
    })
}

/// Appends feed entries in one transaction (see
/// [`herald_store::Store::append_feed`]).
pub(crate) async fn append_feed(shared: &Shared, entries: &[FeedEntry]) -> Result<(), StoreError> {
    let at: Vec<OffsetDateTime> = entries.iter().map(|e| e.at).collect();
    let nodes: Vec<&str> = entries.iter().map(|e| e.node.as_str()).collect();
    let bodies: Vec<&str> = entries.iter().map(|e| e.body.as_str()).collect();
    let tx = Tx::begin(&shared.pool).await?;
    tx.commit(
        &[step!(
            "INSERT INTO feed (at, node, body) \
             SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[])",
            at,
            nodes,
            bodies,
        )],
        "append to the feed",
    )
    .await?;
    Ok(())
}

/// Reads the feed in (transaction, id) order, holding back the entries of
/// transactions at or above the oldest one still running: those may yet
/// be joined by entries that sort before them (see
/// [`herald_store::Store::read_feed`]).
pub(crate) async fn read_feed(
    shared: &Shared,
    after: Option<FeedCursor>,
    since: OffsetDateTime,
    limit: usize,
) -> Result<Vec<FeedRecord>, StoreError> {
    let after = after.unwrap_or_default();
    let (tx, id) = (after.tx.to_string(), after.id);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let conn = Conn::get(&shared.pool).await?;
    let rows = conn
        .pipeline(
            &[step!(
                "SELECT tx::text, id, at, node, body FROM feed \
                 WHERE tx < pg_snapshot_xmin(pg_current_snapshot()) \
                     AND (tx, id) > ($1::text::xid8, $2::bigint) AND at >= $3 \
                 ORDER BY tx, id LIMIT $4",
                tx,
                id,
                since,
                limit,
            )],
            "read the feed",
        )
        .await?;
    rows.into_iter()
        .flatten()
        .map(|row| {
            let tx: String = get(&row, 0)?;
            Ok(FeedRecord {
                cursor: FeedCursor {
                    tx: tx
                        .parse()
                        .map_err(|_| StoreError::Unusable(format!("feed: bad tx {tx:?}")))?,
                    id: get(&row, 1)?,
                },
                entry: FeedEntry {
                    at: get(&row, 2)?,
                    node: get(&row, 3)?,
                    body: get(&row, 4)?,
                },
            })
        })
        .collect()
}

/// Takes or renews `role` for `holder` (see [`herald_store::Store::lead`]).
pub(crate) async fn lead(
    shared: &Shared,
    role: &str,
    holder: &str,
    ttl: Duration,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    let (now, ttl) = (shared.now(now), interval(ttl));
    let conn = Conn::get(&shared.pool).await?;
    let rows = conn
        .pipeline(
            &[step!(
                "WITH taken AS ( \
                     INSERT INTO leaders AS l (role, holder, until) \
                     VALUES ($1, $2, coalesce($3::timestamptz, now()) \
                         + $4::bigint * interval '1 microsecond') \
                     ON CONFLICT (role) DO UPDATE \
                         SET holder = EXCLUDED.holder, until = EXCLUDED.until \
                         WHERE l.holder = EXCLUDED.holder \
                             OR l.until <= coalesce($3::timestamptz, now()) \
                     RETURNING 1) \
                 SELECT count(*) FROM taken",
                role,
                holder,
                now,
                ttl,
            )],
            "take leadership",
        )
        .await?;
    match rows.first().and_then(|rows| rows.first()) {
        Some(row) => Ok(get::<i64>(row, 0)? > 0),
        None => Ok(false),
    }
}

/// Whether the database answers, with herald's schema in place.
pub(crate) async fn ping(pool: &Pool) -> Result<(), StoreError> {
    let conn = Conn::get(pool).await?;
    conn.pipeline(&[step!("SELECT 1 FROM herald_schema LIMIT 1")], "ping")
        .await?;
    Ok(())
}
