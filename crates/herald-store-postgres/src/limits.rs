//! Relay limits that every node shares: the daily quota counted per
//! period, and the rate's GCRA state — one number per relay, moved by one
//! conditional upsert per block of slots, so the rate holds across nodes
//! (to the precision of the clock that decides: the database's by
//! default). Nodes take units and slots in blocks (see
//! [`herald_policy::QuotaBlock`]), so a busy relay's rows see one commit
//! per block, not per message.

use std::time::Duration;

use herald_policy::RateLimit;
use time::OffsetDateTime;

use super::Shared;
use super::codec::{get, interval};
use super::pipeline::{Conn, Tx, step};
use herald_store::{RateSlots, StoreError};

/// Every block of messages takes rate slots and quota units from one row
/// per relay, so those commits queue on the row's lock: waiting for each one's
/// WAL flush would hold every other node's message up behind it. They
/// commit asynchronously instead; a database crash can lose the last
/// fraction of a second of counts (a few messages more than the quota
/// that day, a rate slot given twice), never a message.
const ASYNC_COMMIT: &str = "SET LOCAL synchronous_commit TO OFF";

/// Takes up to `want` units of `relay`'s quota in `period` (see
/// [`herald_store::Store::take_quota`]). The row is made to exist, then
/// locked and read (a later period reads as zero used), and moved by what
/// was granted: a concurrent taker waits on the lock and reads the count
/// this one left.
pub(crate) async fn take_quota(
    shared: &Shared,
    relay: &str,
    period: OffsetDateTime,
    limit: u64,
    want: u64,
) -> Result<u64, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let want = i64::try_from(want).unwrap_or(i64::MAX);
    let tx = Tx::begin(&shared.pool).await?;
    let rows = tx
        .commit(
            &[
                step!(ASYNC_COMMIT),
                step!(
                    "INSERT INTO relay_quotas (relay, period, used) VALUES ($1, $2, 0) \
                     ON CONFLICT (relay) DO NOTHING",
                    relay,
                    period,
                ),
                step!(
                    "WITH cur AS ( \
                         SELECT relay, greatest(period, $2) AS period, \
                                CASE WHEN $2 > period THEN 0 ELSE used END AS used \
                         FROM relay_quotas WHERE relay = $1 FOR UPDATE), \
                     g AS (SELECT relay, period, used, \
                                  greatest(least($4::bigint, $3::bigint - used), 0) AS granted \
                           FROM cur) \
                     UPDATE relay_quotas q SET used = g.used + g.granted, period = g.period \
                     FROM g WHERE q.relay = g.relay \
                     RETURNING g.granted",
                    relay,
                    period,
                    limit,
                    want,
                ),
            ],
            "take quota",
        )
        .await?;
    match rows.get(2).and_then(|rows| rows.first()) {
        Some(row) => Ok(u64::try_from(get::<i64>(row, 0)?).unwrap_or(0)),
        None => Ok(0),
    }
}

/// Gives `count` units back to `relay`'s quota in `period`.
pub(crate) async fn return_quota(
    shared: &Shared,
    relay: &str,
    period: OffsetDateTime,
    count: u64,
) -> Result<(), StoreError> {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    let conn = Conn::get(&shared.pool).await?;
    conn.pipeline(
        &[step!(
            "UPDATE relay_quotas SET used = greatest(used - $3::bigint, 0) \
             WHERE relay = $1 AND period = $2",
            relay,
            period,
            count,
        )],
        "return quota",
    )
    .await?;
    Ok(())
}

/// How many messages `relay` took in `period`.
pub(crate) async fn quota_used(
    shared: &Shared,
    relay: &str,
    period: OffsetDateTime,
) -> Result<u64, StoreError> {
    let conn = Conn::get(&shared.pool).await?;
    let rows = conn
        .pipeline(
            &[step!(
                "SELECT used FROM relay_quotas WHERE relay = $1 AND period = $2",
                relay,
                period,
            )],
            "read quota",
        )
        .await?;
    match rows.first().and_then(|rows| rows.first()) {
        Some(row) => Ok(u64::try_from(get::<i64>(row, 0)?).unwrap_or(0)),
        None => Ok(0),
    }
}

/// Takes `count` slots of `relay`'s rate (see
/// [`herald_store::Store::take_rate_slots`]): the GCRA rule of
/// [`RateLimit::decide_many`] as the condition of an upsert. When it is
/// refused, the wait is read from the statement's snapshot: a hint for when
/// to ask again, not a promise.
pub(crate) async fn take_rate_slots(
    shared: &Shared,
    relay: &str,
    limit: RateLimit,
    now: OffsetDateTime,
    count: u32,
) -> Result<RateSlots, StoreError> {
    let count = count.max(1);
    let (now, step_us, tolerance_us) = (
        shared.now(now),
        interval(limit.interval()),
        interval(limit.tolerance()),
    );
    let span_us = step_us.saturating_mul(i64::from(count));
    let tx = Tx::begin(&shared.pool).await?;
    let rows = tx
        .commit(
            &[
                step!(ASYNC_COMMIT),
                step!(
                    "WITH c AS (SELECT (extract(epoch FROM coalesce($2::timestamptz, now())) \
                                     * 1000000)::bigint AS now), \
                 taken AS ( \
                     INSERT INTO relay_rates AS r (relay, tat) \
                     SELECT $1, c.now + $3::bigint FROM c \
                     ON CONFLICT (relay) DO UPDATE \
                         SET tat = greatest(r.tat, (SELECT now FROM c)) + $3::bigint \
                         WHERE greatest(r.tat, (SELECT now FROM c)) - (SELECT now FROM c) \
                             <= $4::bigint \
                     RETURNING tat) \
                 SELECT (SELECT tat FROM taken) - $3::bigint - (SELECT now FROM c), \
                        coalesce((SELECT greatest(r.tat, c.now) - c.now - $4::bigint \
                                  FROM relay_rates r, c WHERE r.relay = $1), 0)",
                    relay,
                    now,
                    span_us,
                    tolerance_us,
                ),
            ],
            "take rate slots",
        )
        .await?;
    let Some(row) = rows.get(1).and_then(|rows| rows.first()) else {
        return Ok(RateSlots::Wait(limit.interval()));
    };
    if let Some(ahead_us) = get::<Option<i64>>(row, 0)? {
        let ahead = Duration::from_micros(u64::try_from(ahead_us).unwrap_or(0));
        return Ok(RateSlots::Taken { count, ahead });
    }
    let wait_us = u64::try_from(get::<i64>(row, 1)?).unwrap_or(0).max(1);
    Ok(RateSlots::Wait(Duration::from_micros(wait_us)))
}
