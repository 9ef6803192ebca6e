//! Conversions between the model and SQLite's columns: times as Unix
//! milliseconds, statuses as text, tags and metadata as JSON, rows as
//! structs, and SQLite errors as [`StoreError::Unavailable`] with the
//! operation named.

use std::collections::BTreeMap;
use std::time::Duration;

use rusqlite::{Connection, Params, Row, params};
use time::OffsetDateTime;

use herald_store::{
    AttemptOutcome, BounceClass, Event, EventKind, MessageRecord, MessageStatus, RecipientRecord,
    RecipientStatus, StoreError, TemplateRef,
};

/// The columns [`MessageRow`] reads, for `SELECT … FROM messages m`.
pub(super) const MESSAGE_COLUMNS: &str = "m.id, m.message_id, m.status, m.created_at, \
     m.updated_at, m.send_at, m.next_attempt_at, m.attempts, m.sender, m.tags, m.metadata, \
     m.trace_id, m.submitted_by, m.template, m.template_version";

/// Unix milliseconds of `t`. Every representable `OffsetDateTime` fits in
/// an `i64` of milliseconds, so the fallback is never taken.
pub(super) fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

/// `t + d` in milliseconds, saturating.
pub(super) fn ms_after(t: OffsetDateTime, d: Duration) -> i64 {
    ms(t).saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The instant `ms` milliseconds after the epoch.
pub(super) fn time(ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| corrupt(format!("time {ms}: {e}")))
}

/// [`time`] for a nullable column.
pub(super) fn opt_time(ms: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    ms.map(time).transpose()
}

/// Maps a SQLite error to `Unavailable`, naming what was being done.
pub(super) fn db(context: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Unavailable(format!("sqlite: {context}: {e}"))
}

/// Every row `sql` (prepared once per connection) returns for `params`,
/// each read by `read`; errors name `context`.
pub(super) fn rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    read: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    context: &'static str,
) -> Result<Vec<T>, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut select| select.query_map(params, read)?.collect())
        .map_err(db(context))
}

/// A row that the schema's checks should have made impossible.
pub(super) fn corrupt(what: String) -> StoreError {
    StoreError::Unavailable(format!("sqlite: corrupt row: {what}"))
}

/// Parses a message status column.
pub(super) fn message_status(s: &str) -> Result<MessageStatus, StoreError> {
    s.parse().map_err(corrupt)
}

/// Parses a recipient status column.
pub(super) fn recipient_status(s: &str) -> Result<RecipientStatus, StoreError> {
    s.parse().map_err(corrupt)
}

/// Parses a nullable bounce class column.
pub(super) fn opt_class(s: Option<String>) -> Result<Option<BounceClass>, StoreError> {
    s.map(|s| s.parse().map_err(corrupt)).transpose()
}

/// An INTEGER column that must hold a non-negative count or code.
pub(super) fn unsigned<T: TryFrom<i64>>(n: i64, what: &str) -> Result<T, StoreError> {
    T::try_from(n).map_err(|_| corrupt(format!("{what} {n} out of range")))
}

/// Serialises tags or metadata for a TEXT column.
pub(super) fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Unavailable(format!("json: {e}")))
}

/// One row of `messages` as read by [`MESSAGE_COLUMNS`].
#[derive(Debug)]
pub(super) struct MessageRow {
    pub(super) id: String,
    pub(super) message_id: String,
    pub(super) status: String,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
    pub(super) send_at: Option<i64>,
    pub(super) next_attempt_at: Option<i64>,
    pub(super) attempts: i64,
    pub(super) sender: Option<String>,
    pub(super) tags: String,
    pub(super) metadata: String,
    pub(super) trace_id: Option<String>,
    pub(super) submitted_by: Option<String>,
    pub(super) template: Option<String>,
    pub(super) template_version: Option<i64>,
}

impl MessageRow {
    /// Reads the row's [`MESSAGE_COLUMNS`], in order.
    pub(super) fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            message_id: row.get(1)?,
            status: row.get(2)?,
            created_at: row.get(3)?,
            updated_at: row.get(4)?,
            send_at: row.get(5)?,
            next_attempt_at: row.get(6)?,
            attempts: row.get(7)?,
            sender: row.get(8)?,
            tags: row.get(9)?,
            metadata: row.get(10)?,
            trace_id: row.get(11)?,
            submitted_by: row.get(12)?,
            template: row.get(13)?,
            template_version: row.get(14)?,
        })
    }

    /// The record, with the recipients and events given.
    pub(super) fn into_record(
        self,
        recipients: Vec<RecipientRecord>,
        events: Vec<Event>,
    ) -> Result<MessageRecord, StoreError> {
        let status = message_status(&self.status)?;
        // The column is kept while sending (see the migration); the model
        // shows a due time only where one is pending.
        let next_attempt_at = match status {
            MessageStatus::Scheduled | MessageStatus::Queued | MessageStatus::Deferred => {
                opt_time(self.next_attempt_at)?
            }
            _ => None,
        };
        let tags: Vec<String> = serde_json::from_str(&self.tags)
            .map_err(|e| corrupt(format!("tags of {}: {e}", self.id)))?;
        let metadata: BTreeMap<String, String> = serde_json::from_str(&self.metadata)
            .map_err(|e| corrupt(format!("metadata of {}: {e}", self.id)))?;
        Ok(MessageRecord {
            message_id: self.message_id,
            status,
            created_at: time(self.created_at)?,
            updated_at: time(self.updated_at)?,
            send_at: opt_time(self.send_at)?,
            attempts: unsigned(self.attempts, "attempts")?,
            next_attempt_at,
            sender: self.sender,
            recipients,
            events,
            tags,
            metadata,
            trace_id: self.trace_id,
            submitted_by: self.submitted_by,
            template: match (self.template, self.template_version) {
                (Some(name), Some(version)) => Some(TemplateRef {
                    name,
                    version: unsigned(version, "template_version")?,
                }),
                _ => None,
            },
            id: self.id,
        })
    }
}

/// The columns [`RecipientRow`] reads, for `SELECT … FROM recipients`.
pub(super) const RECIPIENT_COLUMNS: &str =
    "message_id, address, status, smtp_code, enhanced_code, response, class";

/// One row of `recipients`.
#[derive(Debug)]
pub(super) struct RecipientRow {
    pub(super) message_id: String,
    pub(super) address: String,
    pub(super) status: String,
    pub(super) smtp_code: Option<i64>,
    pub(super) enhanced_code: Option<String>,
    pub(super) response: Option<String>,
    pub(super) class: Option<String>,
}

impl RecipientRow {
    /// Reads the row's [`RECIPIENT_COLUMNS`], in order.
    pub(super) fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            message_id: row.get(0)?,
            address: row.get(1)?,
            status: row.get(2)?,
            smtp_code: row.get(3)?,
            enhanced_code: row.get(4)?,
            response: row.get(5)?,
            class: row.get(6)?,
        })
    }

    /// The model's view of the row.
    pub(super) fn into_record(self) -> Result<RecipientRecord, StoreError> {
        Ok(RecipientRecord {
            status: recipient_status(&self.status)?,
            smtp_code: self
                .smtp_code
                .map(|c| unsigned(c, "smtp_code"))
                .transpose()?,
            enhanced_code: self.enhanced_code,
            response: self.response,
            class: opt_class(self.class)?,
            address: self.address,
        })
    }
}

/// The columns [`EventRow`] reads, for `SELECT … FROM events`.
pub(super) const EVENT_COLUMNS: &str =
    "at, kind, relay, attempt, outcome, smtp_code, enhanced_code, detail, duration_ms, class";

/// One row of `events`.
#[derive(Debug)]
pub(super) struct EventRow {
    pub(super) at: i64,
    pub(super) kind: String,
    pub(super) relay: Option<String>,
    pub(super) attempt: Option<i64>,
    pub(super) outcome: Option<String>,
    pub(super) smtp_code: Option<i64>,
    pub(super) enhanced_code: Option<String>,
    pub(super) detail: Option<String>,
    pub(super) duration_ms: Option<i64>,
    pub(super) class: Option<String>,
}

impl EventRow {
    /// Reads the row's [`EVENT_COLUMNS`], in order.
    pub(super) fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            at: row.get(0)?,
            kind: row.get(1)?,
            relay: row.get(2)?,
            attempt: row.get(3)?,
            outcome: row.get(4)?,
            smtp_code: row.get(5)?,
            enhanced_code: row.get(6)?,
            detail: row.get(7)?,
            duration_ms: row.get(8)?,
            class: row.get(9)?,
        })
    }

    /// The model's view of the row.
    pub(super) fn into_event(self) -> Result<Event, StoreError> {
        Ok(Event {
            at: time(self.at)?,
            kind: self.kind.parse().map_err(corrupt)?,
            relay: self.relay,
            attempt: self.attempt.map(|n| unsigned(n, "attempt")).transpose()?,
            outcome: self
                .outcome
                .map(|o| o.parse().map_err(corrupt))
                .transpose()?,
            smtp_code: self
                .smtp_code
                .map(|c| unsigned(c, "smtp_code"))
                .transpose()?,
            enhanced_code: self.enhanced_code,
            detail: self.detail,
            duration_ms: self
                .duration_ms
                .map(|d| unsigned(d, "duration_ms"))
                .transpose()?,
            class: opt_class(self.class)?,
        })
    }
}

/// An event to insert; fields not given stay NULL.
#[derive(Debug)]
pub(super) struct NewEvent<'a> {
    pub(super) kind: EventKind,
    pub(super) at: i64,
    pub(super) relay: Option<&'a str>,
    pub(super) attempt: Option<i64>,
    pub(super) outcome: Option<AttemptOutcome>,
    pub(super) smtp_code: Option<i64>,
    pub(super) enhanced_code: Option<&'a str>,
    pub(super) detail: Option<String>,
    pub(super) duration_ms: Option<i64>,
    pub(super) class: Option<BounceClass>,
}

impl NewEvent<'_> {
    /// An event of `kind` at `at` (Unix ms), its other fields empty.
    pub(super) fn of(kind: EventKind, at: i64) -> Self {
        Self {
            kind,
            at,
            relay: None,
            attempt: None,
            outcome: None,
            smtp_code: None,
            enhanced_code: None,
            detail: None,
            duration_ms: None,
            class: None,
        }
    }

    /// Appends the event to `message`'s history.
    pub(super) fn insert(self, conn: &Connection, message: &str) -> Result<(), StoreError> {
        conn.prepare_cached(
            "INSERT INTO events (message_id, at, kind, relay, attempt, outcome, smtp_code, \
             enhanced_code, detail, duration_ms, class) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .and_then(|mut insert| {
            insert.execute(params![
                message,
                self.at,
                self.kind.as_str(),
                self.relay,
                self.attempt,
                self.outcome.map(AttemptOutcome::as_str),
                self.smtp_code,
                self.enhanced_code,
                self.detail,
                self.duration_ms,
                self.class.map(BounceClass::as_str),
            ])
        })
        .map_err(db("insert event"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use time::macros::datetime;

    #[test]
    fn millisecond_round_trip_truncates_below_a_millisecond() {
        let t = datetime!(2030-01-02 03:04:05.678_901 UTC);
        assert_eq!(ms(t), 1_893_553_445_678);
        assert_eq!(time(ms(t)).unwrap(), datetime!(2030-01-02 03:04:05.678 UTC));
        let before_epoch = datetime!(1969-12-31 23:59:59.999_5 UTC);
        assert_eq!(ms(before_epoch), -1);
    }

    #[test]
    fn lease_end_saturates() {
        let t = datetime!(2030-01-01 0:00 UTC);
        assert_eq!(ms_after(t, Duration::from_secs(1)), ms(t) + 1000);
        assert_eq!(ms_after(t, Duration::MAX), i64::MAX);
    }
}
