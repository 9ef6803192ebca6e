//! The suppression list on SQLite: entries keyed by their compared form,
//! and the outbox events their changes make, appended in commit order (one
//! writer). Reading the outbox is [`super::webhooks`]'s.

use rusqlite::{Connection, OptionalExtension as _, Row, params};
use time::OffsetDateTime;

use super::codec::{corrupt, db, ms, opt_time, rows, time};
use herald_store::outbox::{self, NewOutboxEvent};
use herald_store::suppression::address_key;
use herald_store::{
    Added, StoreError, Suppression, SuppressionCursor, SuppressionFilter, SuppressionPage,
    WebhookEventType,
};

const COLUMNS: &str = "address, reason, message, response, created_at, expires_at";

/// An entry's columns as stored.
type RawEntry = (
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
);

/// A row's columns, in order (rusqlite reads a tuple of them).
fn read(row: &Row<'_>) -> rusqlite::Result<RawEntry> {
    RawEntry::try_from(row)
}

fn entry(raw: RawEntry) -> Result<Suppression, StoreError> {
    let (address, reason, message, response, created_at, expires_at) = raw;
    Ok(Suppression {
        address,
        reason: reason.parse().map_err(corrupt)?,
        message,
        response,
        created_at: time(created_at)?,
        expires_at: opt_time(expires_at)?,
    })
}

/// The entry stored for `address` (as compared), lapsed or not.
fn stored(conn: &Connection, address: &str) -> Result<Option<Suppression>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM suppressions WHERE address = ?"
    ))
    .and_then(|mut select| select.query_row([address], read).optional())
    .map_err(db("read suppression"))?
    .map(entry)
    .transpose()
}

/// Appends an event to the outbox.
pub(super) fn append(conn: &Connection, event: &NewOutboxEvent) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO webhook_outbox (at, kind, message, body) VALUES (?, ?, ?, ?)")
        .and_then(|mut insert| {
            insert.execute(params![
                ms(event.at),
                event.kind.as_str(),
                event.message,
                event.body
            ])
        })
        .map_err(db("append to the outbox"))?;
    Ok(())
}

/// Puts one entry on the list unless one holds at `now` (see
/// [`herald_store::Store::add_suppressions`]).
pub(super) fn add_one(
    conn: &Connection,
    mut new: Suppression,
    now: OffsetDateTime,
) -> Result<Added, StoreError> {
    new.address = address_key(&new.address);
    if let Some(existing) = stored(conn, &new.address)?
        && existing.is_active(now)
    {
        return Ok(Added::Exists(existing));
    }
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO suppressions ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
    ))
    .and_then(|mut insert| {
        insert.execute(params![
            new.address,
            new.reason.as_str(),
            new.message,
            new.response,
            ms(new.created_at),
            new.expires_at.map(ms),
        ])
    })
    .map_err(db("add suppression"))?;
    append(
        conn,
        &outbox::suppression_event(WebhookEventType::SuppressionAdded, &new, now),
    )?;
    Ok(Added::Added(new))
}

/// Adds entries in order (see [`herald_store::Store::add_suppressions`]).
pub(super) fn add(
    conn: &Connection,
    entries: Vec<Suppression>,
    now: OffsetDateTime,
) -> Result<Vec<Added>, StoreError> {
    entries
        .into_iter()
        .map(|entry| add_one(conn, entry, now))
        .collect()
}

/// Removes an entry (see [`herald_store::Store::remove_suppression`]).
pub(super) fn remove(
    conn: &Connection,
    address: &str,
    now: OffsetDateTime,
) -> Result<Option<Suppression>, StoreError> {
    let key = address_key(address);
    let Some(existing) = stored(conn, &key)? else {
        return Ok(None);
    };
    conn.prepare_cached("DELETE FROM suppressions WHERE address = ?")
        .and_then(|mut delete| delete.execute([&key]))
        .map_err(db("remove suppression"))?;
    append(
        conn,
        &outbox::suppression_event(WebhookEventType::SuppressionRemoved, &existing, now),
    )?;
    Ok(Some(existing))
}

/// The entry holding for `address` at `now`.
pub(super) fn get(
    conn: &Connection,
    address: &str,
    now: OffsetDateTime,
) -> Result<Option<Suppression>, StoreError> {
    Ok(stored(conn, &address_key(address))?.filter(|e| e.is_active(now)))
}

/// The entries holding at `now` among `addresses`.
pub(super) fn among(
    conn: &Connection,
    addresses: &[String],
    now: OffsetDateTime,
) -> Result<Vec<Suppression>, StoreError> {
    let mut found = Vec::new();
    for address in addresses {
        if let Some(entry) = get(conn, address, now)? {
            found.push(entry);
        }
    }
    Ok(found)
}

/// A page of the entries holding at `now`, newest first.
pub(super) fn list(
    conn: &Connection,
    filter: &SuppressionFilter,
    now: OffsetDateTime,
) -> Result<SuppressionPage, StoreError> {
    let limit = filter.limit.max(1);
    let (after_at, after_address) = match &filter.after {
        Some(cursor) => (Some(ms(cursor.created_at)), Some(cursor.address.as_str())),
        None => (None, None),
    };
    let raw = rows(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM suppressions \
             WHERE (expires_at IS NULL OR expires_at > ?1) \
             AND (?2 IS NULL OR reason = ?2) AND (?3 IS NULL OR created_at >= ?3) \
             AND (?4 IS NULL OR created_at < ?4 OR (created_at = ?4 AND address < ?5)) \
             ORDER BY created_at DESC, address DESC LIMIT ?6"
        ),
        params![
            ms(now),
            filter.reason.map(|r| r.as_str()),
            filter.since.map(ms),
            after_at,
            after_address,
            i64::try_from(limit + 1).unwrap_or(i64::MAX),
        ],
        read,
        "list suppressions",
    )?;
    let mut entries = raw.into_iter().map(entry).collect::<Result<Vec<_>, _>>()?;
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
