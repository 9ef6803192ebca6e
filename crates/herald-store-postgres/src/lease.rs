//! Leases: claiming due messages, extending and releasing a claim, the
//! heartbeat, and ending leases that were lost (expired, or taken back at
//! start-up) by [`herald_store::lifecycle::after_lost_lease`]'s rule.

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::codec::{get, interval, unsigned};
use super::pipeline::{Conn, Tx, step};
use super::{Clock, Shared};
use herald_store::lifecycle::{
    LostLease, POISON_RESPONSE, Tally, after_lost_lease, final_detail, lost_lease_detail,
    unclaimed_status,
};
use herald_store::{Claimed, EventKind, Leases, MessageStatus, Postponed, StoreError};

/// The claim: the oldest due messages (scheduled ones whose time has
/// come, queued, deferred), read from the partial index of due messages
/// and locked, skipping those another claimer has locked; put under the
/// lease; returned with what a worker needs, body and open recipients
/// included. One statement, so one transaction of its own.
const CLAIM: &str = "\
    WITH due AS ( \
        SELECT id FROM messages \
        WHERE status IN ('scheduled', 'queued', 'deferred') \
            AND next_attempt_at <= coalesce($1::timestamptz, now()) \
        ORDER BY next_attempt_at, id \
        LIMIT $2 \
        FOR UPDATE SKIP LOCKED) \
    UPDATE messages m \
    SET status = 'sending', lease_owner = $3, \
        lease_until = coalesce($1::timestamptz, now()) + $4::bigint * interval '1 microsecond', \
        updated_at = coalesce($1::timestamptz, now()) \
    FROM due WHERE m.id = due.id \
    RETURNING m.id, m.message_id, m.sender, m.smtputf8, m.attempts, m.created_at, m.trace_id, \
        m.lease_until, m.next_attempt_at, \
        (SELECT b.rendered FROM message_bodies b WHERE b.message_id = m.id), \
        ARRAY(SELECT r.address FROM recipients r \
              WHERE r.message_id = m.id AND r.status IN ('pending', 'deferred') \
              ORDER BY r.position)";

/// Whether any lease has run out (sent with every claim; a claim that
/// finds one and came back short then ends those leases, in a transaction
/// of its own, and claims the rest of its batch).
const ANY_EXPIRED: &str = "\
    SELECT EXISTS (SELECT 1 FROM messages \
        WHERE status = 'sending' AND lease_until <= coalesce($1::timestamptz, now()))";

/// Claims up to `limit` due messages for `owner` (see
/// [`herald_store::Store::claim`]).
pub(crate) async fn claim(
    shared: &Shared,
    owner: &str,
    limit: usize,
    lease: Duration,
    now: OffsetDateTime,
) -> Result<Vec<Claimed>, StoreError> {
    let now = shared.now(now);
    let lease = interval(lease);
    let want = i64::try_from(limit).unwrap_or(i64::MAX);
    let conn = Conn::get(&shared.pool).await?;
    let rows = conn
        .pipeline(
            &[
                step!(ANY_EXPIRED, now),
                step!(CLAIM, now, want, owner, lease),
            ],
            "claim messages",
        )
        .await?;
    let expired = match rows.first().and_then(|rows| rows.first()) {
        Some(row) => get(row, 0)?,
        None => false,
    };
    let mut claimed = read_claims(rows.get(1).map_or(&[][..], Vec::as_slice))?;
    let got = i64::try_from(claimed.len()).unwrap_or(i64::MAX);
    if expired && got < want {
        drop(conn);
        // The leases that ran out end now (and their messages are due),
        // then the rest of the batch is claimed.
        expire(shared, now, want - got).await?;
        let conn = Conn::get(&shared.pool).await?;
        let rows = conn
            .pipeline(
                &[step!(CLAIM, now, want - got, owner, lease)],
                "claim messages",
            )
            .await?;
        claimed.extend(read_claims(rows.first().map_or(&[][..], Vec::as_slice))?);
    }
    Ok(claimed.into_iter().map(|(_, claimed)| claimed).collect())
}

/// The claims in rows of [`CLAIM`], oldest due first, each with its due
/// time.
fn read_claims(rows: &[tokio_postgres::Row]) -> Result<Vec<(OffsetDateTime, Claimed)>, StoreError> {
    let mut claimed = rows
        .iter()
        .map(|row| {
            let due: OffsetDateTime = get(row, 8)?;
            let rendered: Option<Vec<u8>> = get(row, 9)?;
            let id: String = get(row, 0)?;
            let rendered = rendered
                .ok_or_else(|| super::codec::corrupt(format!("message {id} has no body")))?;
            Ok((
                due,
                Claimed {
                    message_id: get(row, 1)?,
                    sender: get(row, 2)?,
                    smtputf8: get(row, 3)?,
                    attempts: unsigned(i64::from(get::<i32>(row, 4)?), "attempts")?,
                    created_at: get(row, 5)?,
                    trace_id: get(row, 6)?,
                    lease_until: get(row, 7)?,
                    recipients: get(row, 10)?,
                    rendered,
                    id,
                },
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    claimed.sort_by(|(a, x), (b, y)| (a, &x.id).cmp(&(b, &y.id)));
    Ok(claimed)
}

/// Ends up to `limit` leases that ran out, in a transaction of their own.
async fn expire(
    shared: &Shared,
    now: Option<OffsetDateTime>,
    limit: i64,
) -> Result<u64, StoreError> {
    let mut tx = Tx::begin(&shared.pool).await?;
    let rows = tx
        .run(
            &[step!(
                "SELECT id, lease_owner, attempts, lost_leases FROM messages \
                 WHERE status = 'sending' AND lease_until <= coalesce($1::timestamptz, now()) \
                 ORDER BY lease_until, id LIMIT $2 FOR UPDATE SKIP LOCKED",
                now,
                limit,
            )],
            "select expired leases",
        )
        .await?;
    let held = held(rows.first())?;
    lose_leases(shared, tx, &held, EventKind::LeaseExpired, now).await
}

/// A lease about to end without an attempt.
#[derive(Debug)]
struct Held {
    id: String,
    owner: String,
    attempts: u32,
    lost: u32,
}

/// The leases in rows of `id, lease_owner, attempts, lost_leases`.
fn held(rows: Option<&Vec<tokio_postgres::Row>>) -> Result<Vec<Held>, StoreError> {
    rows.into_iter()
        .flatten()
        .map(|row| {
            Ok(Held {
                id: get(row, 0)?,
                owner: get::<Option<String>>(row, 1)?.unwrap_or_default(),
                attempts: unsigned(i64::from(get::<i32>(row, 2)?), "attempts")?,
                lost: unsigned(i64::from(get::<i32>(row, 3)?), "lost_leases")?,
            })
        })
        .collect()
}

/// Ends the `held` leases (locked by `tx`) without an attempt, recording
/// `kind`: each message is due at `now`, or failed as a poison message if
/// its leases have now ended the store's limit of times in a row. Commits.
async fn lose_leases(
    shared: &Shared,
    mut tx: Tx,
    held: &[Held],
    kind: EventKind,
    now: Option<OffsetDateTime>,
) -> Result<u64, StoreError> {
    if held.is_empty() {
        tx.rollback().await;
        return Ok(0);
    }
    let mut fates = Vec::with_capacity(held.len());
    let mut poisoned: Vec<&str> = Vec::new();
    for lease in held {
        let expiries = lease.lost.saturating_add(1);
        let fate = after_lost_lease(expiries, shared.max_lost, lease.attempts);
        if fate == LostLease::Poisoned {
            poisoned.push(&lease.id);
        }
        fates.push((expiries, fate));
    }
    // A poison message's open recipients fail; its final status follows
    // from its recipients.
    let mut tallies: HashMap<String, Tally> = HashMap::new();
    if !poisoned.is_empty() {
        let rows = tx
            .run(
                &[
                    step!(
                        "UPDATE recipients SET status = 'failed', response = $2 \
                         WHERE message_id = ANY($1::text[]) AND status IN ('pending', 'deferred')",
                        poisoned,
                        POISON_RESPONSE,
                    ),
                    step!(
                        "SELECT message_id, status, count(*) FROM recipients \
                         WHERE message_id = ANY($1::text[]) GROUP BY message_id, status",
                        poisoned,
                    ),
                ],
                "fail poison messages",
            )
            .await?;
        for row in rows.get(1).into_iter().flatten() {
            let status = super::codec::recipient_status(get(row, 1)?)?;
            tallies
                .entry(get(row, 0)?)
                .or_default()
                .add(status, unsigned(get::<i64>(row, 2)?, "recipient count")?);
        }
    }

    let (mut ids, mut statuses, mut lost, mut due) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut event_ids, mut event_kinds, mut details) = (Vec::new(), Vec::new(), Vec::new());
    let mut finals = Vec::new();
    for (lease, (expiries, fate)) in held.iter().zip(fates) {
        let status = match fate {
            LostLease::Due(status) => status,
            LostLease::Poisoned => {
                let tally = tallies.get(&lease.id).copied().unwrap_or_default();
                finals.push((lease.id.as_str(), tally));
                tally.final_status()
            }
        };
        ids.push(lease.id.as_str());
        statuses.push(status.as_str());
        lost.push(super::codec::int(expiries));
        due.push(!status.is_final());
        event_ids.push(lease.id.as_str());
        event_kinds.push(kind.as_str());
        details.push(lost_lease_detail(kind, &lease.owner, fate, expiries));
    }
    // The final events come after every lost-lease event: one insert, in
    // this order, keeps each message's history in order.
    for (id, tally) in &finals {
        let status = tally.final_status();
        event_ids.push(id);
        event_kinds.push(
            EventKind::entering(status)
                .unwrap_or(EventKind::Failed)
                .as_str(),
        );
        details.push(final_detail(tally));
    }
    let any_due = due.iter().any(|d| *d);
    let mut steps = vec![
        step!(
            "UPDATE messages m SET status = u.status, \
                 next_attempt_at = CASE WHEN u.due THEN coalesce($5::timestamptz, now()) END, \
                 updated_at = coalesce($5::timestamptz, now()), \
                 lease_owner = NULL, lease_until = NULL, lost_leases = u.lost \
             FROM unnest($1::text[], $2::text[], $3::int[], $4::boolean[]) \
                 AS u (id, status, lost, due) \
             WHERE m.id = u.id",
            ids,
            statuses,
            lost,
            due,
            now,
        ),
        step!(
            "INSERT INTO events (message_id, at, kind, detail) \
             SELECT id, coalesce($4::timestamptz, now()), kind, detail \
             FROM unnest($1::text[], $2::text[], $3::text[]) AS u (id, kind, detail)",
            event_ids,
            event_kinds,
            details,
            now,
        ),
    ];
    if any_due {
        steps.push(step!("SELECT pg_notify('herald_work', '')"));
    }
    tx.commit(&steps, "end leases").await?;
    shared
        .depth
        .add(-i64::try_from(finals.len()).unwrap_or(i64::MAX));
    Ok(u64::try_from(held.len()).unwrap_or(u64::MAX))
}

/// Which leases [`reclaim`] ends ([`Leases`], owned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Chosen {
    Expired,
    OwnedBy(String),
    All,
}

impl From<Leases<'_>> for Chosen {
    fn from(leases: Leases<'_>) -> Self {
        match leases {
            Leases::Expired => Self::Expired,
            Leases::OwnedBy(owner) => Self::OwnedBy(owner.to_owned()),
            Leases::All => Self::All,
        }
    }
}

/// Ends the chosen leases without an attempt (see
/// [`herald_store::Store::reclaim`]).
pub(crate) async fn reclaim(
    shared: &Shared,
    leases: &Chosen,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    let now = shared.now(now);
    let mut tx = Tx::begin(&shared.pool).await?;
    let (rows, kind) = match leases {
        // Expired leases another transaction is ending are its to end.
        Chosen::Expired => (
            tx.run(
                &[step!(
                    "SELECT id, lease_owner, attempts, lost_leases FROM messages \
                     WHERE status = 'sending' \
                         AND lease_until <= coalesce($1::timestamptz, now()) \
                     ORDER BY lease_until, id FOR UPDATE SKIP LOCKED",
                    now,
                )],
                "select expired leases",
            )
            .await?,
            EventKind::LeaseExpired,
        ),
        Chosen::OwnedBy(owner) => (
            tx.run(
                &[step!(
                    "SELECT id, lease_owner, attempts, lost_leases FROM messages \
                     WHERE status = 'sending' AND lease_owner = $1 \
                     ORDER BY lease_until, id FOR UPDATE",
                    owner,
                )],
                "select owned leases",
            )
            .await?,
            EventKind::LeaseReclaimed,
        ),
        Chosen::All => (
            tx.run(
                &[step!(
                    "SELECT id, lease_owner, attempts, lost_leases FROM messages \
                     WHERE status = 'sending' ORDER BY lease_until, id FOR UPDATE"
                )],
                "select leases",
            )
            .await?,
            EventKind::LeaseReclaimed,
        ),
    };
    let held = held(rows.first())?;
    lose_leases(shared, tx, &held, kind, now).await
}

/// Moves `owner`'s lease on `id` to `until` (with the database's clock:
/// to its now plus the time `until` was ahead of this node's clock).
pub(crate) async fn extend_lease(
    shared: &Shared,
    id: &str,
    owner: &str,
    until: OffsetDateTime,
) -> Result<(), StoreError> {
    // `until` is by the caller's clock and the store has none of its own:
    // the length it stands for is measured against this machine's.
    #[allow(clippy::disallowed_methods)]
    let left = until - OffsetDateTime::now_utc();
    let left = interval(left.try_into().unwrap_or(Duration::ZERO));
    let until = shared.now(until);
    let conn = Conn::get(&shared.pool).await?;
    let rows = conn
        .pipeline(
            &[step!(
                "WITH extended AS ( \
                     UPDATE messages SET lease_until = \
                         coalesce($3::timestamptz, now() + $4::bigint * interval '1 microsecond') \
                     WHERE id = $1 AND status = 'sending' AND lease_owner = $2 RETURNING 1) \
                 SELECT (SELECT count(*) FROM extended), \
                     EXISTS (SELECT 1 FROM messages WHERE id = $1)",
                id,
                owner,
                until,
                left,
            )],
            "extend lease",
        )
        .await?;
    let row = rows
        .first()
        .and_then(|rows| rows.first())
        .ok_or_else(|| StoreError::Unavailable("postgres: extend lease: no answer".into()))?;
    match (get::<i64>(row, 0)?, get::<bool>(row, 1)?) {
        (0, true) => Err(StoreError::LeaseLost),
        (0, false) => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

/// Extends every lease `owner` holds to `now + lease` (the heartbeat).
pub(crate) async fn renew_leases(
    shared: &Shared,
    owner: &str,
    lease: Duration,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    let (now, lease) = (shared.now(now), interval(lease));
    let conn = Conn::get(&shared.pool).await?;
    let rows = conn
        .pipeline(
            &[step!(
                "WITH renewed AS ( \
                     UPDATE messages SET lease_until = \
                         coalesce($2::timestamptz, now()) + $3::bigint * interval '1 microsecond' \
                     WHERE status = 'sending' AND lease_owner = $1 RETURNING 1) \
                 SELECT count(*) FROM renewed",
                owner,
                now,
                lease,
            )],
            "renew leases",
        )
        .await?;
    match rows.first().and_then(|rows| rows.first()) {
        Some(row) => unsigned(get::<i64>(row, 0)?, "renewed leases"),
        None => Ok(0),
    }
}

/// The message's status and lease holder, locked for the rest of `tx`;
/// `NotFound` if there is none.
pub(crate) async fn lock(
    tx: &mut Tx,
    id: &str,
) -> Result<(MessageStatus, Option<String>, u32), StoreError> {
    let rows = tx
        .run(
            &[step!(
                "SELECT status, lease_owner, attempts FROM messages WHERE id = $1 FOR UPDATE",
                id,
            )],
            "lock message",
        )
        .await?;
    let row = rows
        .first()
        .and_then(|rows| rows.first())
        .ok_or(StoreError::NotFound)?;
    Ok((
        super::codec::message_status(get(row, 0)?)?,
        get(row, 1)?,
        unsigned(i64::from(get::<i32>(row, 2)?), "attempts")?,
    ))
}

/// Locks `id` for the rest of `tx` and checks that `owner` still holds
/// it, sending: its attempt count, or `LeaseLost` (`NotFound` if there is
/// no such message). The caller rolls `tx` back on an error.
async fn still_ours(tx: &mut Tx, id: &str, owner: &str) -> Result<u32, StoreError> {
    let (status, holder, attempts) = lock(tx, id).await?;
    if status != MessageStatus::Sending || holder.as_deref() != Some(owner) {
        return Err(StoreError::LeaseLost);
    }
    Ok(attempts)
}

/// Puts `id` off untried until `postponed.until` (see
/// [`herald_store::Store::postpone`]): attempts unchanged. With the
/// database's clock, the event's time is the database's now.
pub(crate) async fn postpone(
    shared: &Shared,
    id: &str,
    owner: &str,
    postponed: &Postponed,
) -> Result<(), StoreError> {
    let mut tx = Tx::begin(&shared.pool).await?;
    if let Err(e) = still_ours(&mut tx, id, owner).await {
        tx.rollback().await;
        return Err(e);
    }
    let at: Option<OffsetDateTime> = match shared.clock {
        Clock::Caller => Some(postponed.at),
        Clock::Database => None,
    };
    tx.commit(
        &[
            step!(
                "UPDATE messages SET status = 'deferred', next_attempt_at = $2, \
                     updated_at = coalesce($3::timestamptz, now()), \
                     lease_owner = NULL, lease_until = NULL, lost_leases = 0 \
                 WHERE id = $1",
                id,
                postponed.until,
                at,
            ),
            step!(
                "INSERT INTO events (message_id, at, kind, relay, detail) \
                 VALUES ($1, coalesce($2::timestamptz, now()), 'deferred', $3, $4)",
                id,
                at,
                postponed.relay,
                postponed.detail,
            ),
        ],
        "postpone message",
    )
    .await?;
    Ok(())
}

/// Gives `id` back untried: due again at once, attempts unchanged.
pub(crate) async fn release(shared: &Shared, id: &str, owner: &str) -> Result<(), StoreError> {
    let mut tx = Tx::begin(&shared.pool).await?;
    let attempts = match still_ours(&mut tx, id, owner).await {
        Ok(attempts) => attempts,
        Err(e) => {
            tx.rollback().await;
            return Err(e);
        }
    };
    // next_attempt_at was at or before the claim's now, so the message is
    // due at once without a clock; for the same reason updated_at stays.
    let status = unclaimed_status(attempts).as_str();
    tx.commit(
        &[
            step!(
                "UPDATE messages SET status = $2, lease_owner = NULL, lease_until = NULL \
                 WHERE id = $1",
                id,
                status,
            ),
            step!("SELECT pg_notify('herald_work', '')"),
        ],
        "release message",
    )
    .await?;
    Ok(())
}
