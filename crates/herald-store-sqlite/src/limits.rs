//! Relay limits: the daily quota counted in the file (so a restart keeps
//! it), and the rate's GCRA state in memory — one process owns the file,
//! so no other node needs to see it, and a slot costs no write.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use herald_policy::RateLimit;
use rusqlite::{Connection, OptionalExtension as _, params};
use time::OffsetDateTime;

use super::codec::{db, ms};
use herald_store::{RateSlots, StoreError};

/// Takes up to `want` units of `relay`'s quota in `period` (see
/// [`herald_store::Store::take_quota`]). One writer at a time owns the
/// file, so reading the count and moving it cannot interleave.
pub(super) fn take_quota(
    conn: &Connection,
    relay: &str,
    period: OffsetDateTime,
    limit: u64,
    want: u64,
) -> Result<u64, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let want = i64::try_from(want).unwrap_or(i64::MAX);
    // The units this period has used: none when the row's period is older
    // (a reset happened); a lagging node's older period reads the current.
    let row: Option<(i64, i64)> = conn
        .prepare_cached("SELECT period, used FROM relay_quotas WHERE relay = ?1")
        .and_then(|mut select| {
            select
                .query_row(params![relay], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(db("take quota"))?;
    let asked = ms(period);
    let (period, used) = match row {
        Some((held, used)) if held >= asked => (held, used),
        _ => (asked, 0),
    };
    let taken = want.min(limit.saturating_sub(used)).max(0);
    if taken == 0 {
        return Ok(0);
    }
    conn.prepare_cached(
        "INSERT INTO relay_quotas (relay, period, used) VALUES (?1, ?2, ?3) \
         ON CONFLICT (relay) DO UPDATE SET period = excluded.period, used = excluded.used",
    )
    .and_then(|mut upsert| upsert.execute(params![relay, period, used + taken]))
    .map_err(db("take quota"))?;
    Ok(u64::try_from(taken).unwrap_or(0))
}

/// Gives `count` units back to `relay`'s quota in `period`.
pub(super) fn return_quota(
    conn: &Connection,
    relay: &str,
    period: OffsetDateTime,
    count: u64,
) -> Result<(), StoreError> {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "UPDATE relay_quotas SET used = max(used - ?3, 0) WHERE relay = ?1 AND period = ?2",
    )
    .and_then(|mut update| update.execute(params![relay, ms(period), count]))
    .map_err(db("return quota"))?;
    Ok(())
}

/// How many messages `relay` took in `period`.
pub(super) fn quota_used(
    conn: &Connection,
    relay: &str,
    period: OffsetDateTime,
) -> Result<u64, StoreError> {
    let used: Option<i64> = conn
        .prepare_cached("SELECT used FROM relay_quotas WHERE relay = ?1 AND period = ?2")
        .and_then(|mut select| {
            select
                .query_row(params![relay, ms(period)], |row| row.get(0))
                .optional()
        })
        .map_err(db("read quota"))?;
    Ok(used.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

/// Each relay's theoretical arrival time, as time since the Unix epoch.
#[derive(Debug, Default)]
pub(super) struct Rates(Mutex<HashMap<String, Duration>>);

impl Rates {
    /// Takes `count` slots (see [`herald_store::Store::take_rate_slots`]).
    pub(super) fn take(
        &self,
        relay: &str,
        limit: RateLimit,
        now: OffsetDateTime,
        count: u32,
    ) -> RateSlots {
        let now = Duration::try_from(now - OffsetDateTime::UNIX_EPOCH).unwrap_or_default();
        let mut tats = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tat = tats.get(relay).copied().unwrap_or_default();
        match limit.decide_many(tat, now, count) {
            Ok((next, ahead)) => {
                tats.insert(relay.to_owned(), next);
                RateSlots::Taken {
                    count: count.max(1),
                    ahead,
                }
            }
            Err(wait) => RateSlots::Wait(wait),
        }
    }
}
