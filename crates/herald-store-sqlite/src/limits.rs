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
use herald_store::StoreError;

/// Counts one message against `relay`'s quota in `period` (see
/// [`herald_store::Store::take_quota`]).
pub(super) fn take_quota(
    conn: &Connection,
    relay: &str,
    period: OffsetDateTime,
    limit: u64,
) -> Result<bool, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // SET reads the row's old values: a later period restarts at 1.
    let changed = conn
        .prepare_cached(
            "INSERT INTO relay_quotas (relay, period, used) VALUES (?1, ?2, 1) \
             ON CONFLICT (relay) DO UPDATE SET \
                 used = CASE WHEN excluded.period > relay_quotas.period THEN 1 \
                             ELSE relay_quotas.used + 1 END, \
                 period = max(relay_quotas.period, excluded.period) \
             WHERE excluded.period > relay_quotas.period OR relay_quotas.used < ?3",
        )
        .and_then(|mut upsert| upsert.execute(params![relay, ms(period), limit]))
        .map_err(db("take quota"))?;
    Ok(changed > 0)
}

/// Gives one message back to `relay`'s quota in `period`.
pub(super) fn return_quota(
    conn: &Connection,
    relay: &str,
    period: OffsetDateTime,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE relay_quotas SET used = used - 1 WHERE relay = ?1 AND period = ?2 AND used > 0",
    )
    .and_then(|mut update| update.execute(params![relay, ms(period)]))
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
    /// Takes a slot (see [`herald_store::Store::take_rate_slot`]).
    pub(super) fn take(
        &self,
        relay: &str,
        limit: RateLimit,
        now: OffsetDateTime,
    ) -> Option<Duration> {
        let now = Duration::try_from(now - OffsetDateTime::UNIX_EPOCH).unwrap_or_default();
        let mut tats = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tat = tats.get(relay).copied().unwrap_or_default();
        match limit.decide(tat, now) {
            Ok(next) => {
                tats.insert(relay.to_owned(), next);
                None
            }
            Err(wait) => Some(wait),
        }
    }
}
