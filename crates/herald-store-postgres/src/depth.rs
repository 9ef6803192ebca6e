//! The queue's depth, which backpressure asks for on every enqueue.
//!
//! The counts live in the `status_counts` ledger (see the migration):
//! triggers append the change each statement makes, so writers never wait
//! on one another for a counter, and reading is a sum over a handful of
//! rows. That sum is still a round trip, so a node keeps the last one for
//! [`FRESH`] and adds the changes it has committed itself since: its own
//! enqueues count at once, other nodes' within [`FRESH`]. Whoever reads a
//! long ledger folds it into one row.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::codec::get;
use super::pipeline::{Conn, step};
use herald_store::StoreError;

/// How long a depth read from the database is used for.
pub(crate) const FRESH: Duration = Duration::from_millis(100);

/// Ledger rows past which a reader folds them into one.
const FOLD_AT: i64 = 256;

/// The sums of the ledger: every status, in [`herald_store::MessageStatus::ALL`]
/// order, then how many rows were added up.
pub(crate) const COUNTS: &str = "SELECT coalesce(sum(scheduled), 0)::bigint, \
     coalesce(sum(queued), 0)::bigint, coalesce(sum(sending), 0)::bigint, \
     coalesce(sum(deferred), 0)::bigint, coalesce(sum(delivered), 0)::bigint, \
     coalesce(sum(partial), 0)::bigint, coalesce(sum(failed), 0)::bigint, \
     coalesce(sum(cancelled), 0)::bigint, count(*) FROM status_counts";

/// Folds the ledger rows nobody else is folding into one row of their
/// sums. Two folds at once take disjoint rows, so the sums stay right.
const FOLD: &str = "\
    WITH folded AS ( \
        DELETE FROM status_counts WHERE id IN ( \
            SELECT id FROM status_counts FOR UPDATE SKIP LOCKED) \
        RETURNING *) \
    INSERT INTO status_counts (scheduled, queued, sending, deferred, delivered, partial, \
                               failed, cancelled) \
    SELECT sum(scheduled), sum(queued), sum(sending), sum(deferred), sum(delivered), \
           sum(partial), sum(failed), sum(cancelled) \
    FROM folded HAVING count(*) > 1";

/// The depth as last read, and this node's changes since.
#[derive(Debug, Default)]
pub(crate) struct Depth {
    /// The running total of this node's committed changes to the depth.
    local: AtomicI64,
    last: Mutex<Option<Reading>>,
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    depth: i64,
    /// `local` when it was read.
    local: i64,
}

impl Depth {
    /// Records a committed change of `delta` messages not yet final.
    pub(crate) fn add(&self, delta: i64) {
        if delta != 0 {
            self.local.fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// Messages not yet final.
    pub(crate) async fn get(&self, pool: &Pool) -> Result<u64, StoreError> {
        let mut last = self.last.lock().await;
        if let Some(reading) = *last
            && reading.at.elapsed() < FRESH
        {
            let since = self.local.load(Ordering::Relaxed) - reading.local;
            return Ok(u64::try_from(reading.depth + since).unwrap_or(0));
        }
        let local = self.local.load(Ordering::Relaxed);
        let conn = Conn::get(pool).await?;
        let rows = conn
            .pipeline(&[step!(COUNTS)], "read the queue depth")
            .await?;
        let row = rows
            .first()
            .and_then(|rows| rows.first())
            .ok_or_else(|| StoreError::Unavailable("postgres: no status counts".into()))?;
        // Scheduled, queued, sending, deferred: the statuses not final.
        let mut depth = 0i64;
        for column in 0..4 {
            depth += get::<i64>(row, column)?;
        }
        let ledger: i64 = get(row, 8)?;
        *last = Some(Reading {
            at: Instant::now(),
            depth,
            local,
        });
        drop(last);
        if ledger > FOLD_AT {
            // Worth doing, not worth failing for: the next reader folds.
            if let Err(e) = conn
                .pipeline(&[step!(FOLD)], "fold the status counts")
                .await
            {
                tracing::warn!(error = %e, "folding the status counts");
            }
        }
        Ok(u64::try_from(depth).unwrap_or(0))
    }
}
