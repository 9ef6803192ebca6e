//! The consequences of an attempt, and the user's cancel and retry: each
//! one decides the message's next status from its recipients' states and
//! writes the change, its event and the lease's end together.

use rusqlite::{Connection, OptionalExtension as _, params};
use time::OffsetDateTime;

use std::collections::BTreeMap;

use super::codec::{
    NewEvent, corrupt, db, message_status, ms, ms_after, recipient_status, rows, time, unsigned,
};
use super::lease::lease_failure;
use super::query::get_existing;
use super::suppress;
use herald_store::lifecycle::{
    self, AfterAttempt, Tally, after_attempt, deferral_detail, final_detail,
};
use herald_store::outbox::{MessageContext, attempt_events};
use herald_store::{
    Added, AttemptRecord, BounceClass, EventKind, MessageRecord, MessageStatus, Recorded,
    StoreError,
};

/// The message's recipients counted by state.
pub(super) fn tally(conn: &Connection, id: &str) -> Result<Tally, StoreError> {
    let counts = rows(
        conn,
        "SELECT status, COUNT(*) FROM recipients WHERE message_id = ? GROUP BY status",
        [id],
        |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
        "count recipients",
    )?;
    let mut tally = Tally::default();
    for (status, n) in counts {
        tally.add(recipient_status(&status)?, unsigned(n, "recipient count")?);
    }
    Ok(tally)
}

/// Records `owner`'s attempt on `id` (see
/// [`herald_store::Store::record_attempt_counted`]).
pub(super) fn record_attempt(
    conn: &Connection,
    id: &str,
    owner: &str,
    attempt: AttemptRecord,
) -> Result<Recorded, StoreError> {
    let held = conn
        .prepare_cached(
            "SELECT attempts FROM messages WHERE id = ? AND status = 'sending' AND lease_owner = ?",
        )
        .and_then(|mut select| {
            select
                .query_row([id, owner], |row| row.get::<_, i64>(0))
                .optional()
        })
        .map_err(db("check lease"))?;
    // A lease that ran out but was not taken by anyone is still honoured:
    // the attempt happened, and forgetting it would send the mail again.
    let Some(attempts) = held else {
        return Err(lease_failure(conn, id));
    };
    let attempts = attempts.saturating_add(1);

    let mut update = conn
        .prepare_cached(
            "UPDATE recipients SET status = ?, smtp_code = ?, enhanced_code = ?, response = ?, \
             class = ? WHERE message_id = ? AND address = ?",
        )
        .map_err(db("update recipient"))?;
    for result in &attempt.recipients {
        let changed = update
            .execute(params![
                result.status.as_str(),
                result.smtp_code.map(i64::from),
                result.enhanced_code,
                result.response,
                result.class.map(BounceClass::as_str),
                id,
                result.address,
            ])
            .map_err(db("update recipient"))?;
        if changed == 0 {
            // A caller bug, but the attempt itself must still be recorded.
            tracing::warn!(
                message = id,
                "attempt result for an address not on the message"
            );
        }
    }

    let started = ms(attempt.started_at);
    let ended = ms_after(attempt.started_at, attempt.duration);
    NewEvent {
        relay: Some(&attempt.relay),
        attempt: Some(attempts),
        outcome: Some(attempt.outcome),
        smtp_code: attempt.smtp_code.map(i64::from),
        enhanced_code: attempt.enhanced_code.as_deref(),
        detail: Some(attempt.detail.clone()),
        duration_ms: Some(i64::try_from(attempt.duration.as_millis()).unwrap_or(i64::MAX)),
        class: attempt.class,
        ..NewEvent::of(EventKind::Attempt, started)
    }
    .insert(conn, id)?;
    let ended_at = time(ended)?;

    // An attempt was recorded: the message did not kill its worker, so
    // the count of leases lost in a row starts again.
    match after_attempt(tally(conn, id)?, attempt.next) {
        AfterAttempt::Defer { at, open } => {
            conn.prepare_cached(
                "UPDATE messages SET status = 'deferred', attempts = ?, next_attempt_at = ?, \
                 updated_at = ?, lease_owner = NULL, lease_until = NULL, lost_leases = 0 \
                 WHERE id = ?",
            )
            .and_then(|mut update| update.execute(params![attempts, ms(at), ended, id]))
            .map_err(db("defer message"))?;
            NewEvent {
                detail: Some(deferral_detail(open, at)),
                ..NewEvent::of(EventKind::Deferred, ended)
            }
            .insert(conn, id)?;
            let suppressed = tell(conn, id, attempts, &attempt, &[], ended_at)?;
            Ok(Recorded {
                status: MessageStatus::Deferred,
                suppressed,
            })
        }
        AfterAttempt::Finish {
            status,
            given_up,
            tally,
        } => {
            let mut given_up_addresses = Vec::new();
            if given_up > 0 {
                given_up_addresses = rows(
                    conn,
                    "SELECT address FROM recipients \
                     WHERE message_id = ? AND status IN ('pending', 'deferred') ORDER BY position",
                    [id],
                    |row| row.get::<_, String>(0),
                    "read open recipients",
                )?;
                conn.prepare_cached(
                    "UPDATE recipients SET status = 'failed', \
                     response = COALESCE(response, 'retries exhausted') \
                     WHERE message_id = ? AND status IN ('pending', 'deferred')",
                )
                .and_then(|mut update| update.execute([id]))
                .map_err(db("fail open recipients"))?;
            }
            conn.prepare_cached(
                "UPDATE messages SET status = ?, attempts = ?, next_attempt_at = NULL, \
                 updated_at = ?, lease_owner = NULL, lease_until = NULL, lost_leases = 0 \
                 WHERE id = ?",
            )
            .and_then(|mut update| update.execute(params![status.as_str(), attempts, ended, id]))
            .map_err(db("finish message"))?;
            let kind = EventKind::entering(status).unwrap_or(EventKind::Failed);
            NewEvent {
                detail: Some(final_detail(&tally)),
                ..NewEvent::of(kind, ended)
            }
            .insert(conn, id)?;
            let suppressed = tell(conn, id, attempts, &attempt, &given_up_addresses, ended_at)?;
            Ok(Recorded { status, suppressed })
        }
    }
}

/// Writes what the attempt tells the application: its webhook events and
/// the suppression entries its failures make (with theirs); how many
/// entries were added.
fn tell(
    conn: &Connection,
    id: &str,
    attempts: i64,
    attempt: &AttemptRecord,
    given_up: &[String],
    at: OffsetDateTime,
) -> Result<u32, StoreError> {
    let (message_id, tags, metadata) = conn
        .prepare_cached("SELECT message_id, tags, metadata FROM messages WHERE id = ?")
        .and_then(|mut select| {
            select.query_row([id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
        })
        .map_err(db("read message for events"))?;
    let tags: Vec<String> = serde_json::from_str(&tags).map_err(|e| corrupt(e.to_string()))?;
    let metadata: BTreeMap<String, String> =
        serde_json::from_str(&metadata).map_err(|e| corrupt(e.to_string()))?;
    let context = MessageContext {
        id,
        message_id: &message_id,
        tags: &tags,
        metadata: &metadata,
    };
    let number = u32::try_from(attempts).unwrap_or(u32::MAX);
    for event in attempt_events(&context, number, &attempt.recipients, given_up, at) {
        suppress::append(conn, &event)?;
    }
    let mut added = 0u32;
    for result in &attempt.recipients {
        if let Some(entry) = attempt.suppression.entry_for(result, id, at)
            && matches!(suppress::add_one(conn, entry, at)?, Added::Added(_))
        {
            added = added.saturating_add(1);
        }
    }
    Ok(added)
}

/// The message's status, or `NotFound`.
fn status_of(conn: &Connection, id: &str) -> Result<MessageStatus, StoreError> {
    let status = conn
        .prepare_cached("SELECT status FROM messages WHERE id = ?")
        .and_then(|mut select| {
            select
                .query_row([id], |row| row.get::<_, String>(0))
                .optional()
        })
        .map_err(db("read status"))?;
    message_status(&status.ok_or(StoreError::NotFound)?)
}

/// Stops a message that is not final (see [`herald_store::Store::cancel`]).
pub(super) fn cancel(
    conn: &Connection,
    id: &str,
    now: OffsetDateTime,
) -> Result<MessageRecord, StoreError> {
    let status = status_of(conn, id)?;
    lifecycle::check_cancel(status)?;
    let now_ms = ms(now);
    // The last reply codes belonged to a deferral that no longer matters;
    // the event history keeps them.
    conn.prepare_cached(
        "UPDATE recipients SET status = 'failed', smtp_code = NULL, enhanced_code = NULL, \
         response = 'cancelled' WHERE message_id = ? AND status IN ('pending', 'deferred')",
    )
    .and_then(|mut update| update.execute([id]))
    .map_err(db("cancel recipients"))?;
    // Clearing the lease is what turns the worker's later record_attempt
    // into LeaseLost.
    conn.prepare_cached(
        "UPDATE messages SET status = 'cancelled', next_attempt_at = NULL, updated_at = ?, \
         lease_owner = NULL, lease_until = NULL WHERE id = ?",
    )
    .and_then(|mut update| update.execute(params![now_ms, id]))
    .map_err(db("cancel message"))?;
    NewEvent {
        detail: Some(format!("cancelled while {status}")),
        ..NewEvent::of(EventKind::Cancelled, now_ms)
    }
    .insert(conn, id)?;
    get_existing(conn, id)
}

/// Requeues a failed or partial message's failed recipients (see
/// [`herald_store::Store::retry`]).
pub(super) fn retry(
    conn: &Connection,
    id: &str,
    now: OffsetDateTime,
) -> Result<MessageRecord, StoreError> {
    let status = status_of(conn, id)?;
    lifecycle::check_retry(status)?;
    let now_ms = ms(now);
    // The last reply stays on the recipient until the next attempt
    // replaces it: it says why the recipient is being retried.
    let reopened = conn
        .prepare_cached(
            "UPDATE recipients SET status = 'pending' WHERE message_id = ? AND status = 'failed'",
        )
        .and_then(|mut update| update.execute([id]))
        .map_err(db("reopen recipients"))?;
    if reopened == 0 {
        // Only suppressed recipients failed to arrive: nothing to send.
        return Err(StoreError::IllegalState(status));
    }
    conn.prepare_cached(
        "UPDATE messages SET status = 'queued', next_attempt_at = ?1, updated_at = ?1 \
         WHERE id = ?2",
    )
    .and_then(|mut update| update.execute(params![now_ms, id]))
    .map_err(db("requeue message"))?;
    NewEvent {
        detail: Some(format!("{reopened} recipient(s) requeued")),
        ..NewEvent::of(EventKind::Retried, now_ms)
    }
    .insert(conn, id)?;
    get_existing(conn, id)
}
