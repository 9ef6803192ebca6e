//! The suppression list on PostgreSQL, shared by every node: entries
//! keyed by their compared form, added with their `suppression.added`
//! event in one statement (nothing is written for an entry already
//! holding). Reading the outbox is [`super::webhooks`]'s.

use time::OffsetDateTime;
use tokio_postgres::Row;

use super::Shared;
use super::codec::{corrupt, get};
use super::pipeline::{Conn, Step, Tx, step};
use herald_store::outbox::{self, NewOutboxEvent};
use herald_store::suppression::address_key;
use herald_store::{
    Added, StoreError, Suppression, SuppressionCursor, SuppressionFilter, SuppressionPage,
    WebhookEventType,
};

const COLUMNS: &str = "address, reason, message, response, created_at, expires_at";

/// Adds an entry unless one holds (at `$7`, or the database's now), and
/// its event (body `$8`) if it was added; returns a row if it was.
pub(crate) const ADD: &str = "WITH added AS ( \
         INSERT INTO suppressions AS s \
             (address, reason, message, response, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (address) DO UPDATE SET reason = EXCLUDED.reason, \
             message = EXCLUDED.message, response = EXCLUDED.response, \
             created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at \
         WHERE s.expires_at IS NOT NULL AND s.expires_at <= coalesce($7, now()) \
         RETURNING address) \
     INSERT INTO webhook_outbox (at, kind, message, body) \
     SELECT $5, 'suppression.added', $3, $8 FROM added RETURNING id";

/// An entry to add, with what [`ADD`] binds.
#[derive(Debug)]
pub(crate) struct Adding {
    pub(crate) entry: Suppression,
    reason: &'static str,
    body: String,
}

impl Adding {
    /// `entry` (its address made the compared form) and its event at `at`.
    pub(crate) fn new(mut entry: Suppression, at: OffsetDateTime) -> Self {
        entry.address = address_key(&entry.address);
        let body = outbox::suppression_event(WebhookEventType::SuppressionAdded, &entry, at).body;
        Self {
            reason: entry.reason.as_str(),
            entry,
            body,
        }
    }

    /// The [`ADD`] step, deciding whether an entry holds at `now`.
    pub(crate) fn step<'a>(&'a self, now: &'a Option<OffsetDateTime>) -> Step<'a> {
        let e = &self.entry;
        step!(
            ADD,
            e.address,
            self.reason,
            e.message,
            e.response,
            e.created_at,
            e.expires_at,
            *now,
            self.body,
        )
    }
}

fn entry(row: &Row) -> Result<Suppression, StoreError> {
    Ok(Suppression {
        address: get(row, 0)?,
        reason: get::<String>(row, 1)?.parse().map_err(corrupt)?,
        message: get(row, 2)?,
        response: get(row, 3)?,
        created_at: get(row, 4)?,
        expires_at: get(row, 5)?,
    })
}

/// The statement that reads the entry stored for `$1`.
fn stored_sql() -> String {
    format!("SELECT {COLUMNS} FROM suppressions WHERE address = $1")
}

/// Adds entries in order (see [`herald_store::Store::add_suppressions`]).
pub(crate) async fn add(
    shared: &Shared,
    entries: Vec<Suppression>,
    now: OffsetDateTime,
) -> Result<Vec<Added>, StoreError> {
    let adding: Vec<Adding> = entries.into_iter().map(|e| Adding::new(e, now)).collect();
    let lapse = shared.now(now);
    let stored = stored_sql();
    let mut steps = Vec::with_capacity(adding.len() * 2);
    for a in &adding {
        steps.push(a.step(&lapse));
        steps.push(step!(stored.as_str(), a.entry.address));
    }
    let tx = Tx::begin(&shared.pool).await?;
    let rows = tx.commit(&steps, "add suppressions").await?;
    adding
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let added = rows.get(2 * i).is_some_and(|r| !r.is_empty());
            let row = rows
                .get(2 * i + 1)
                .and_then(|r| r.first())
                .ok_or_else(|| corrupt("suppression not stored".into()))?;
            let entry = entry(row)?;
            Ok(if added {
                Added::Added(entry)
            } else {
                Added::Exists(entry)
            })
        })
        .collect()
}

/// Removes an entry (see [`herald_store::Store::remove_suppression`]).
pub(crate) async fn remove(
    shared: &Shared,
    address: &str,
    now: OffsetDateTime,
) -> Result<Option<Suppression>, StoreError> {
    let key = address_key(address);
    let mut tx = Tx::begin(&shared.pool).await?;
    let select = format!("{} FOR UPDATE", stored_sql());
    let rows = tx
        .run(&[step!(select.as_str(), key)], "read suppression")
        .await?;
    let Some(row) = rows.first().and_then(|r| r.first()) else {
        tx.rollback().await;
        return Ok(None);
    };
    let existing = entry(row)?;
    let event = Appending::new(outbox::suppression_event(
        WebhookEventType::SuppressionRemoved,
        &existing,
        now,
    ));
    tx.commit(
        &[
            step!("DELETE FROM suppressions WHERE address = $1", key),
            event.step(),
        ],
        "remove suppression",
    )
    .await?;
    Ok(Some(existing))
}

/// An event to append to the outbox, with what its step binds.
#[derive(Debug)]
pub(crate) struct Appending {
    event: NewOutboxEvent,
    kind: &'static str,
}

impl Appending {
    pub(crate) fn new(event: NewOutboxEvent) -> Self {
        Self {
            kind: event.kind.as_str(),
            event,
        }
    }

    /// The step that appends the event.
    pub(crate) fn step(&self) -> Step<'_> {
        step!(
            "INSERT INTO webhook_outbox (at, kind, message, body) VALUES ($1, $2, $3, $4)",
            self.event.at,
            self.kind,
            self.event.message,
            self.event.body,
        )
    }
}

/// The entries holding at `now` among `addresses`.
pub(crate) async fn among(
    shared: &Shared,
    addresses: &[String],
    now: OffsetDateTime,
) -> Result<Vec<Suppression>, StoreError> {
    let keys: Vec<String> = addresses.iter().map(|a| address_key(a)).collect();
    let now = shared.now(now);
    let sql = format!(
        "SELECT {COLUMNS} FROM suppressions WHERE address = ANY($1::text[]) \
         AND (expires_at IS NULL OR expires_at > coalesce($2, now()))"
    );
    let conn = Conn::get(&shared.pool).await?;
    let rows = conn
        .pipeline(&[step!(sql.as_str(), keys, now)], "look up suppressions")
        .await?;
    rows.iter().flatten().map(entry).collect()
}

/// A page of the entries holding at `now`, newest first.
pub(crate) async fn list(
    shared: &Shared,
    filter: &SuppressionFilter,
    now: OffsetDateTime,
) -> Result<SuppressionPage, StoreError> {
    let limit = filter.limit.max(1);
    let now = shared.now(now);
    let reason = filter.reason.map(|r| r.as_str());
    let after_at = filter.after.as_ref().map(|c| c.created_at);
    let after_address = filter.after.as_ref().map(|c| c.address.as_str());
    let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT {COLUMNS} FROM suppressions \
         WHERE (expires_at IS NULL OR expires_at > coalesce($1, now())) \
         AND ($2::text IS NULL OR reason = $2) \
         AND ($3::timestamptz IS NULL OR created_at >= $3) \
         AND ($4::timestamptz IS NULL OR created_at < $4 \
             OR (created_at = $4 AND address < $5::text)) \
         ORDER BY created_at DESC, address DESC LIMIT $6"
    );
    let conn = Conn::get(&shared.pool).await?;
    let rows = conn
        .pipeline(
            &[step!(
                sql.as_str(),
                now,
                reason,
                filter.since,
                after_at,
                after_address,
                fetch
            )],
            "list suppressions",
        )
        .await?;
    let mut entries = rows
        .iter()
        .flatten()
        .map(entry)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if entries.len() > limit {
        entries.truncate(limit);
        entries.last().map(|last| SuppressionCursor {
            created_at: last.created_at,
            address: last.address.clone(),
        })
    } else {
        None
    };
    Ok(SuppressionPage { entries, next })
}
