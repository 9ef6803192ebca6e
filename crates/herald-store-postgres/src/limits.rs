//! Relay limits that every node shares: the daily quota counted per
//! period, and the rate's GCRA state — one number per relay, moved by one
//! conditional upsert per message, so the rate holds across nodes (to
//! the precision of the clock that decides: the database's by default).

use std::time::Duration;

use herald_policy::RateLimit;
use time::OffsetDateTime;

use super::Shared;
use super::codec::{get, interval};
use super::pipeline::{Conn, Tx, step};
use herald_store::StoreError;

/// Every message takes a rate slot and a unit of quota from one row per
/// relay, so those commits queue on the row's lock: waiting for each one's
/// WAL flush would hold every other node's message up behind it. They
/// commit asynchronously instead; a database crash can lose the last
/// fraction of a second of counts (a few messages more than the quota
/// that day, a rate slot given twice), never a message.
const ASYNC_COMMIT: &str = "SET LOCAL synchronous_commit TO OFF";

/// Counts one message against `relay`'s quota in `period` (see
/// [`herald_store::Store::take_quota`]). The row lock of the upsert
/// orders concurrent takers, and each re-reads the count it compares.
pub(crate) async fn take_quota(
    shared: &Shared,
    relay: &str,
    period: OffsetDateTime,
    limit: u64,
) -> Result<bool, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let tx = Tx::begin(&shared.pool).await?;
    let rows = tx
        .commit(
            &[
                step!(ASYNC_COMMIT),
                step!(
                    "WITH taken AS ( \
                     INSERT INTO relay_quotas AS q (relay, period, used) VALUES ($1, $2, 1) \
                     ON CONFLICT (relay) DO UPDATE SET \
                         used = CASE WHEN EXCLUDED.period > q.period THEN 1 \
                                     ELSE q.used + 1 END, \
                         period = greatest(q.period, EXCLUDED.period) \
                     WHERE EXCLUDED.period > q.period OR q.used < $3 \
                     RETURNING 1) \
                 SELECT count(*) FROM taken",
                    relay,
                    period,
                    limit,
                ),
            ],
            "take quota",
        )
        .await?;
    match rows.get(1).and_then(|rows| rows.first()) {
        Some(row) => Ok(get::<i64>(row, 0)? > 0),
        None => Ok(false),
    }
}

/// Gives one message back to `relay`'s quota in `period`.
pub(crate) async fn return_quota(
    shared: &Shared,
    relay: &str,
    period: OffsetDateTime,
) -> Result<(), StoreError> {
    let conn = Conn::get(&shared.pool).await?;
    conn.pipeline(
        &[step!(
            "UPDATE relay_quotas SET used = used - 1 \
             WHERE relay = $1 AND period = $2 AND used > 0",
            relay,
            period,
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

/// Takes a slot of `relay`'s rate (see
/// [`herald_store::Store::take_rate_slot`]): the GCRA rule of
/// [`RateLimit::decide`] as the condition of an upsert. When it is refused,
/// the wait is read from the statement's snapshot: a hint for when to ask
/// again, not a promise.
pub(crate) async fn take_rate_slot(
    shared: &Shared,
    relay: &str,
    limit: RateLimit,
    now: OffsetDateTime,
) -> Result<Option<Duration>, StoreError> {
    let (now, step_us, tolerance_us) = (
        shared.now(now),
        interval(limit.interval()),
        interval(limit.tolerance()),
    );
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
                     RETURNING 1) \
                 SELECT (SELECT count(*) FROM taken), \
                        coalesce((SELECT greatest(r.tat, c.now) - c.now - $4::bigint \
                                  FROM relay_rates r, c WHERE r.relay = $1), 0)",
                    relay,
                    now,
                    step_us,
                    tolerance_us,
                ),
            ],
            "take rate slot",
        )
        .await?;
    let Some(row) = rows.get(1).and_then(|rows| rows.first()) else {
        return Ok(None);
    };
    if get::<i64>(row, 0)? > 0 {
        return Ok(None);
    }
    let wait_us = u64::try_from(get::<i64>(row, 1)?).unwrap_or(0).max(1);
    Ok(Some(Duration::from_micros(wait_us)))
}
