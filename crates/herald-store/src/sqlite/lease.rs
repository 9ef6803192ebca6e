//! Leases: claiming due messages, extending and releasing a claim, and
//! turning expired claims back into due messages. All run on the writer's
//! connection, so "select the due ones, then mark them" is atomic: no
//! other write can come between.

use std::time::Duration;

use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::codec::{NewEvent, db, message_status, ms, ms_after, time, unsigned};
use crate::{Claimed, MessageStatus, StoreError};

/// Claims up to `limit` due messages for `owner` (see [`crate::Store::claim`]).
pub(super) async fn claim(
    conn: &mut SqliteConnection,
    owner: &str,
    limit: usize,
    lease: Duration,
    now: OffsetDateTime,
) -> Result<Vec<Claimed>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let now_ms = ms(now);
    let until = ms_after(now, lease);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Two index range scans (due messages, expired leases), each already
    // limited, merged by due time: the oldest due first, whichever kind.
    let candidates: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT id, status, lease_owner FROM ( \
             SELECT id, status, lease_owner, due FROM ( \
                 SELECT id, status, lease_owner, next_attempt_at AS due FROM messages \
                 WHERE status IN ('scheduled', 'queued', 'deferred') AND next_attempt_at <= ?1 \
                 ORDER BY next_attempt_at, id LIMIT ?2) \
             UNION ALL \
             SELECT id, status, lease_owner, due FROM ( \
                 SELECT id, status, lease_owner, lease_until AS due FROM messages \
                 WHERE status = 'sending' AND lease_until <= ?1 \
                 ORDER BY lease_until, id LIMIT ?2) \
             ORDER BY due, id LIMIT ?2)",
    )
    .bind(now_ms)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("select due messages"))?;

    let mut claimed = Vec::with_capacity(candidates.len());
    for (id, status, previous_owner) in candidates {
        // next_attempt_at stays: it is ≤ now, which is what lets `release`
        // make the message due again without a clock.
        sqlx::query(
            "UPDATE messages SET status = 'sending', lease_owner = ?, lease_until = ?, \
             updated_at = ? WHERE id = ?",
        )
        .bind(owner)
        .bind(until)
        .bind(now_ms)
        .bind(&id)
        .execute(&mut *conn)
        .await
        .map_err(db("mark message sending"))?;
        if message_status(&status)? == MessageStatus::Sending {
            NewEvent {
                kind: "lease_expired",
                at: now_ms,
                detail: Some(format!(
                    "lease of {} expired; claimed by {owner}",
                    previous_owner.as_deref().unwrap_or("?")
                )),
                ..NewEvent::default()
            }
            .insert(conn, &id)
            .await?;
        }
        claimed.push(load_claimed(conn, id, until).await?);
    }
    Ok(claimed)
}

/// What a worker needs to send `id`: body, envelope, open recipients.
async fn load_claimed(
    conn: &mut SqliteConnection,
    id: String,
    lease_until: i64,
) -> Result<Claimed, StoreError> {
    #[allow(clippy::type_complexity)] // one row, read once, right here
    let (message_id, sender, smtputf8, attempts, created_at, trace_id, rendered): (
        String,
        Option<String>,
        bool,
        i64,
        i64,
        Option<String>,
        Vec<u8>,
    ) = sqlx::query_as(
        "SELECT m.message_id, m.sender, m.smtputf8, m.attempts, m.created_at, m.trace_id, \
         b.rendered FROM messages m JOIN message_bodies b ON b.message_id = m.id \
         WHERE m.id = ?",
    )
    .bind(&id)
    .fetch_one(&mut *conn)
    .await
    .map_err(db("read claimed message"))?;
    let recipients: Vec<String> = sqlx::query_scalar(
        "SELECT address FROM recipients \
         WHERE message_id = ? AND status IN ('pending', 'deferred') ORDER BY position",
    )
    .bind(&id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("read open recipients"))?;
    Ok(Claimed {
        id,
        message_id,
        sender,
        recipients,
        rendered,
        smtputf8,
        attempts: unsigned(attempts, "attempts")?,
        created_at: time(created_at)?,
        trace_id,
        lease_until: time(lease_until)?,
    })
}

/// Why a lease check on `id` failed: the message is gone, or someone else
/// (or nobody) holds it now.
pub(super) async fn lease_failure(conn: &mut SqliteConnection, id: &str) -> StoreError {
    let exists: Result<Option<i64>, _> = sqlx::query_scalar("SELECT 1 FROM messages WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await;
    match exists {
        Ok(Some(_)) => StoreError::LeaseLost,
        Ok(None) => StoreError::NotFound,
        Err(e) => db("check lease")(e),
    }
}

/// Moves `owner`'s lease on `id` to `until`.
pub(super) async fn extend_lease(
    conn: &mut SqliteConnection,
    id: &str,
    owner: &str,
    until: OffsetDateTime,
) -> Result<(), StoreError> {
    let done = sqlx::query(
        "UPDATE messages SET lease_until = ? \
         WHERE id = ? AND status = 'sending' AND lease_owner = ?",
    )
    .bind(ms(until))
    .bind(id)
    .bind(owner)
    .execute(&mut *conn)
    .await
    .map_err(db("extend lease"))?;
    if done.rows_affected() == 0 {
        return Err(lease_failure(conn, id).await);
    }
    Ok(())
}

/// Gives `id` back untried: due again at once, attempts unchanged.
pub(super) async fn release(
    conn: &mut SqliteConnection,
    id: &str,
    owner: &str,
) -> Result<(), StoreError> {
    // next_attempt_at was ≤ the claim's `now`, so the message is due at
    // once without this function needing a clock. For the same reason
    // updated_at is left alone: there is no trustworthy "now" here.
    let done = sqlx::query(
        "UPDATE messages SET \
             status = CASE WHEN attempts = 0 THEN 'queued' ELSE 'deferred' END, \
             lease_owner = NULL, lease_until = NULL \
         WHERE id = ? AND status = 'sending' AND lease_owner = ?",
    )
    .bind(id)
    .bind(owner)
    .execute(&mut *conn)
    .await
    .map_err(db("release message"))?;
    if done.rows_affected() == 0 {
        return Err(lease_failure(conn, id).await);
    }
    Ok(())
}

/// Turns every lease expired at `now` into a due message.
pub(super) async fn reclaim_expired(
    conn: &mut SqliteConnection,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    let now_ms = ms(now);
    // The events first, while the expired leases can still be told apart.
    sqlx::query(
        "INSERT INTO events (message_id, at, kind, detail) \
         SELECT id, ?1, 'lease_expired', 'lease of ' || lease_owner || ' expired' \
         FROM messages WHERE status = 'sending' AND lease_until <= ?1 \
         ORDER BY lease_until, id",
    )
    .bind(now_ms)
    .execute(&mut *conn)
    .await
    .map_err(db("record expired leases"))?;
    let done = sqlx::query(
        "UPDATE messages SET \
             status = CASE WHEN attempts = 0 THEN 'queued' ELSE 'deferred' END, \
             next_attempt_at = ?1, updated_at = ?1, lease_owner = NULL, lease_until = NULL \
         WHERE status = 'sending' AND lease_until <= ?1",
    )
    .bind(now_ms)
    .execute(&mut *conn)
    .await
    .map_err(db("reclaim expired leases"))?;
    Ok(done.rows_affected())
}
