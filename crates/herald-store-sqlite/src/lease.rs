//! Leases: claiming due messages, extending and releasing a claim, and
//! turning expired claims back into due messages. All run on the writer's
//! connection, so "select the due ones, then mark them" is atomic: no
//! other write can come between.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, params};
use time::OffsetDateTime;

use super::attempt::tally;
use super::codec::{NewEvent, db, ms, ms_after, rows, time, unsigned};
use herald_store::lifecycle::{
    LostLease, POISON_RESPONSE, after_lost_lease, final_detail, lost_lease_detail,
};
use herald_store::{Claimed, EventKind, Leases, Postponed, StoreError};

/// The claimable messages, oldest due first: two index range scans (due
/// messages, expired leases), each already limited, merged by due time.
/// The previous owner is NULL for a due message and names the worker whose
/// lease ran out otherwise. The indexes are named: left to itself the
/// planner takes `messages_by_status` for `status IN (…)` and sorts every
/// queued message for each claim, which is milliseconds per claim once
/// thousands wait (and an error at prepare time, should an index go away,
/// beats that).
const CLAIMABLE: &str = "\
    SELECT id, lease_owner FROM ( \
        SELECT id, lease_owner, due FROM ( \
            SELECT id, lease_owner, next_attempt_at AS due \
            FROM messages INDEXED BY messages_due \
            WHERE status IN ('scheduled', 'queued', 'deferred') AND next_attempt_at <= ?1 \
            ORDER BY next_attempt_at, id LIMIT ?2) \
        UNION ALL \
        SELECT id, lease_owner, due FROM ( \
            SELECT id, lease_owner, lease_until AS due \
            FROM messages INDEXED BY messages_leases \
            WHERE status = 'sending' AND lease_until <= ?1 \
            ORDER BY lease_until, id LIMIT ?2) \
        ORDER BY due, id LIMIT ?2)";

/// Claims up to `limit` due messages for `owner` (see
/// [`herald_store::Store::claim`]). A message whose lease ran out loses
/// it first (and may be given up as a poison message instead).
pub(super) fn claim(
    conn: &Connection,
    owner: &str,
    limit: usize,
    lease: Duration,
    now: OffsetDateTime,
    max_lost: u32,
) -> Result<Vec<Claimed>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let now_ms = ms(now);
    let until = ms_after(now, lease);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let candidates = rows(
        conn,
        CLAIMABLE,
        params![now_ms, limit],
        |row| Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?)),
        "select due messages",
    )?;

    let mut claimed = Vec::with_capacity(candidates.len());
    for (id, previous_owner) in candidates {
        if let Some(previous) = previous_owner {
            let fate = lose_lease(
                conn,
                &id,
                &previous,
                EventKind::LeaseExpired,
                now_ms,
                max_lost,
            )?;
            if fate == LostLease::Poisoned {
                continue;
            }
        }
        claimed.push(mark_sending(conn, id, owner, now_ms, until)?);
    }
    Ok(claimed)
}

/// Ends `previous`'s lease on `id` without an attempt, recording `kind`:
/// the message is due at `now_ms`, or given up as a poison message if
/// its leases have now ended `max_lost` times in a row.
fn lose_lease(
    conn: &Connection,
    id: &str,
    previous: &str,
    kind: EventKind,
    now_ms: i64,
    max_lost: u32,
) -> Result<LostLease, StoreError> {
    let (attempts, lost) = conn
        .prepare_cached("SELECT attempts, lost_leases FROM messages WHERE id = ?")
        .and_then(|mut select| {
            select.query_row([id], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
            })
        })
        .map_err(db("read lease history"))?;
    let expiries = unsigned::<u32>(lost, "lost_leases")?.saturating_add(1);
    let fate = after_lost_lease(expiries, max_lost, unsigned(attempts, "attempts")?);
    NewEvent {
        detail: Some(lost_lease_detail(kind, previous, fate, expiries)),
        ..NewEvent::of(kind, now_ms)
    }
    .insert(conn, id)?;
    // A poison message's open recipients fail; its recipients then decide
    // its final status and event.
    let (status, given_up) = match fate {
        LostLease::Due(status) => (status, None),
        LostLease::Poisoned => {
            conn.prepare_cached(
                "UPDATE recipients SET status = 'failed', response = ? \
                 WHERE message_id = ? AND status IN ('pending', 'deferred')",
            )
            .and_then(|mut update| update.execute(params![POISON_RESPONSE, id]))
            .map_err(db("fail poison message"))?;
            let tally = tally(conn, id)?;
            (tally.final_status(), Some(tally))
        }
    };
    let due = (!status.is_final()).then_some(now_ms);
    conn.prepare_cached(
        "UPDATE messages SET status = ?, next_attempt_at = ?, updated_at = ?, \
         lease_owner = NULL, lease_until = NULL, lost_leases = ? WHERE id = ?",
    )
    .and_then(|mut update| update.execute(params![status.as_str(), due, now_ms, expiries, id]))
    .map_err(db("end lease"))?;
    if let Some(tally) = given_up {
        let kind = EventKind::entering(status).unwrap_or(EventKind::Failed);
        NewEvent {
            detail: Some(final_detail(&tally)),
            ..NewEvent::of(kind, now_ms)
        }
        .insert(conn, id)?;
    }
    Ok(fate)
}

/// Puts `id` under `owner`'s lease until `until`, and reads what a worker
/// needs to send it: envelope, body, open recipients.
fn mark_sending(
    conn: &Connection,
    id: String,
    owner: &str,
    now_ms: i64,
    until: i64,
) -> Result<Claimed, StoreError> {
    // next_attempt_at stays: it is ≤ now, which is what lets `release`
    // make the message due again without a clock.
    let (message_id, sender, smtputf8, attempts, created_at, trace_id) = conn
        .prepare_cached(
            "UPDATE messages SET status = 'sending', lease_owner = ?, lease_until = ?, \
             updated_at = ? WHERE id = ? \
             RETURNING message_id, sender, smtputf8, attempts, created_at, trace_id",
        )
        .and_then(|mut update| {
            update.query_row(params![owner, until, now_ms, id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, bool>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, Option<String>>(5)?,
                ))
            })
        })
        .map_err(db("mark message sending"))?;
    let rendered = conn
        .prepare_cached("SELECT rendered FROM message_bodies WHERE message_id = ?")
        .and_then(|mut select| select.query_row([&id], |row| row.get::<_, Vec<u8>>(0)))
        .map_err(db("read message body"))?;
    let recipients = rows(
        conn,
        "SELECT address FROM recipients \
         WHERE message_id = ? AND status IN ('pending', 'deferred') ORDER BY position",
        [&id],
        |row| row.get::<_, String>(0),
        "read open recipients",
    )?;
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
        lease_until: time(until)?,
    })
}

/// Why a lease check on `id` failed: the message is gone, or someone else
/// (or nobody) holds it now.
pub(super) fn lease_failure(conn: &Connection, id: &str) -> StoreError {
    let exists = conn
        .prepare_cached("SELECT 1 FROM messages WHERE id = ?")
        .and_then(|mut select| select.query_row([id], |_| Ok(())).optional());
    match exists {
        Ok(Some(())) => StoreError::LeaseLost,
        Ok(None) => StoreError::NotFound,
        Err(e) => db("check lease")(e),
    }
}

/// Moves `owner`'s lease on `id` to `until`.
pub(super) fn extend_lease(
    conn: &Connection,
    id: &str,
    owner: &str,
    until: OffsetDateTime,
) -> Result<(), StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE messages SET lease_until = ? \
             WHERE id = ? AND status = 'sending' AND lease_owner = ?",
        )
        .and_then(|mut update| update.execute(params![ms(until), id, owner]))
        .map_err(db("extend lease"))?;
    if changed == 0 {
        return Err(lease_failure(conn, id));
    }
    Ok(())
}

/// Gives `id` back untried: due again at once, attempts unchanged.
pub(super) fn release(conn: &Connection, id: &str, owner: &str) -> Result<(), StoreError> {
    // next_attempt_at was ≤ the claim's `now`, so the message is due at
    // once without this function needing a clock. For the same reason
    // updated_at is left alone: there is no trustworthy "now" here.
    let changed = conn
        .prepare_cached(
            "UPDATE messages SET \
                 status = CASE WHEN attempts = 0 THEN 'queued' ELSE 'deferred' END, \
                 lease_owner = NULL, lease_until = NULL \
             WHERE id = ? AND status = 'sending' AND lease_owner = ?",
        )
        .and_then(|mut update| update.execute(params![id, owner]))
        .map_err(db("release message"))?;
    if changed == 0 {
        return Err(lease_failure(conn, id));
    }
    Ok(())
}

/// Puts `id` off untried until `postponed.until` (see
/// [`herald_store::Store::postpone`]): attempts unchanged.
pub(super) fn postpone(
    conn: &Connection,
    id: &str,
    owner: &str,
    postponed: &Postponed,
) -> Result<(), StoreError> {
    let at = ms(postponed.at);
    let changed = conn
        .prepare_cached(
            "UPDATE messages SET status = 'deferred', next_attempt_at = ?, updated_at = ?, \
                 lease_owner = NULL, lease_until = NULL, lost_leases = 0 \
             WHERE id = ? AND status = 'sending' AND lease_owner = ?",
        )
        .and_then(|mut update| update.execute(params![ms(postponed.until), at, id, owner]))
        .map_err(db("postpone message"))?;
    if changed == 0 {
        return Err(lease_failure(conn, id));
    }
    NewEvent {
        relay: Some(&postponed.relay),
        detail: Some(postponed.detail.clone()),
        ..NewEvent::of(EventKind::Deferred, at)
    }
    .insert(conn, id)
}

/// Ends the chosen leases without an attempt (see
/// [`herald_store::Store::reclaim`]).
pub(super) fn reclaim(
    conn: &Connection,
    leases: &OwnedLeases,
    now: OffsetDateTime,
    max_lost: u32,
) -> Result<u64, StoreError> {
    let now_ms = ms(now);
    let held = match leases {
        OwnedLeases::Expired => rows(
            conn,
            "SELECT id, lease_owner FROM messages INDEXED BY messages_leases \
             WHERE status = 'sending' AND lease_until <= ? ORDER BY lease_until, id",
            [now_ms],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
            "select expired leases",
        )?,
        OwnedLeases::OwnedBy(owner) => rows(
            conn,
            "SELECT id, lease_owner FROM messages INDEXED BY messages_leases \
             WHERE status = 'sending' AND lease_owner = ? ORDER BY lease_until, id",
            [owner],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
            "select owned leases",
        )?,
        OwnedLeases::All => rows(
            conn,
            "SELECT id, lease_owner FROM messages INDEXED BY messages_leases \
             WHERE status = 'sending' ORDER BY lease_until, id",
            [],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
            "select leases",
        )?,
    };
    let kind = match leases {
        OwnedLeases::Expired => EventKind::LeaseExpired,
        OwnedLeases::OwnedBy(_) | OwnedLeases::All => EventKind::LeaseReclaimed,
    };
    for (id, previous) in &held {
        lose_lease(conn, id, previous, kind, now_ms, max_lost)?;
    }
    Ok(u64::try_from(held.len()).unwrap_or(u64::MAX))
}

/// [`Leases`], owned, to travel to the writer thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum OwnedLeases {
    Expired,
    OwnedBy(String),
    All,
}

impl From<Leases<'_>> for OwnedLeases {
    fn from(leases: Leases<'_>) -> Self {
        match leases {
            Leases::Expired => Self::Expired,
            Leases::OwnedBy(owner) => Self::OwnedBy(owner.to_owned()),
            Leases::All => Self::All,
        }
    }
}

/// Extends every lease `owner` holds to `now + lease` (the heartbeat).
pub(super) fn renew_leases(
    conn: &Connection,
    owner: &str,
    lease: Duration,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    let renewed = conn
        .prepare_cached(
            "UPDATE messages SET lease_until = ? WHERE status = 'sending' AND lease_owner = ?",
        )
        .and_then(|mut update| update.execute(params![ms_after(now, lease), owner]))
        .map_err(db("renew leases"))?;
    Ok(u64::try_from(renewed).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use rusqlite::StatementStatus;
    use time::macros::datetime;

    use super::*;
    use crate::enqueue::enqueue;
    use crate::open::Location;
    use herald_store::NewMessage;

    fn queue_of(depth: u32) -> Connection {
        let conn = Location::parse("sqlite::memory:")
            .unwrap()
            .open_writer()
            .unwrap();
        let now = datetime!(2030-01-01 0:00 UTC);
        let messages = (0..depth)
            .map(|seq| NewMessage {
                id: format!("01Q{seq:023}"),
                message_id: format!("<{seq}@lease.test>"),
                created_at: now,
                send_at: None,
                sender: None,
                recipients: vec!["bob@example.com".to_owned()],
                rendered: b"x".to_vec(),
                smtputf8: false,
                tags: Vec::new(),
                metadata: Default::default(),
                trace_id: None,
                submitted_by: None,
                template: None,
                idempotency: None,
            })
            .collect();
        for answer in enqueue(&conn, messages).unwrap() {
            answer.unwrap();
        }
        conn
    }

    /// Virtual-machine steps of one claim of one message: the work, counted
    /// by SQLite, so no clock is involved.
    fn steps_to_claim_one(conn: &Connection) -> i32 {
        conn.prepare_cached(CLAIMABLE)
            .unwrap()
            .reset_status(StatementStatus::VmStep);
        let now = datetime!(2030-01-01 0:01 UTC);
        let claimed = claim(conn, "w", 1, Duration::from_secs(60), now, 3).unwrap();
        assert_eq!(claimed.len(), 1);
        conn.prepare_cached(CLAIMABLE)
            .unwrap()
            .get_status(StatementStatus::VmStep)
    }

    #[test]
    fn a_claim_costs_the_same_however_deep_the_queue() {
        let shallow = steps_to_claim_one(&queue_of(10));
        let deep = steps_to_claim_one(&queue_of(5000));
        assert!(
            deep <= shallow + 10,
            "claiming 1 of 5000 took {deep} steps, 1 of 10 took {shallow}"
        );
    }
}
