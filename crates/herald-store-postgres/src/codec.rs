//! Conversions between the model and PostgreSQL: errors as
//! [`StoreError`]s (transient or not, by SQLSTATE), columns read without
//! panicking, durations as microseconds, and the JSON the queries build
//! for a message's recipients and events.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::time::Duration;

use deadpool_postgres::PoolError;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::FromSql;

use herald_store::{
    BounceClass, Event, MessageRecord, MessageStatus, RecipientRecord, RecipientStatus, StoreError,
    TemplateRef,
};

/// Maps a driver error to a [`StoreError`], naming what was being done:
/// [`StoreError::Unavailable`] for what may pass (the connection, the
/// server's resources or state, a conflict between transactions),
/// [`StoreError::Unusable`] for what will not (constraints, the schema,
/// data the database refuses, credentials).
pub(crate) fn db(context: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| {
        let text = format!("postgres: {context}: {}", describe(&e));
        if transient(&e) {
            StoreError::Unavailable(text)
        } else {
            StoreError::Unusable(text)
        }
    }
}

/// Whether the error may pass if the operation is tried again.
fn transient(e: &tokio_postgres::Error) -> bool {
    let Some(code) = e.code() else {
        // No SQLSTATE: the connection failed or closed, or the server
        // could not be reached.
        return true;
    };
    let code = code.code();
    // 08 connection, 40 transaction rollback (serialization, deadlock),
    // 53 insufficient resources, 55 object not in prerequisite state
    // (lock not available), 57 operator intervention (shutdown, query
    // cancelled), 58 system error, XX000 internal error; 25006: a
    // read-only transaction (connected to a standby after a failover);
    // 25P03: idle-in-transaction timeout.
    ["08", "40", "53", "55", "57", "58"]
        .iter()
        .any(|class| code.starts_with(class))
        || [
            SqlState::INTERNAL_ERROR.code(),
            SqlState::READ_ONLY_SQL_TRANSACTION.code(),
            SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT.code(),
        ]
        .contains(&code)
}

/// The error with what the server said (severity, SQLSTATE, message,
/// detail) or, for other errors, its chain of causes: the driver's own
/// text leaves them out.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        return text;
    }
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Maps a failure to get a pooled connection.
pub(crate) fn pool(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => db("connect")(e),
        PoolError::Timeout(_) => {
            StoreError::Unavailable("postgres: no connection could be had in time".into())
        }
        PoolError::Closed => StoreError::Unavailable("postgres: the store is closed".into()),
        other => StoreError::Unavailable(format!("postgres: connection pool: {other}")),
    }
}

/// A row that the schema's checks should have made impossible.
pub(crate) fn corrupt(what: String) -> StoreError {
    StoreError::Unusable(format!("postgres: corrupt row: {what}"))
}

/// Column `idx` of `row`, or a corrupt-row error naming it.
pub(crate) fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T, StoreError> {
    row.try_get(idx).map_err(|e| {
        let name = row.columns().get(idx).map_or("?", |c| c.name());
        corrupt(format!("column {name}: {}", describe(&e)))
    })
}

/// A count or code column that must not be negative.
/// The `count(*)` the pipeline step `step` of a purge answered (0 for a
/// step that answered no row).
pub(crate) fn purged(rows: &[Vec<Row>], step: usize) -> Result<u64, StoreError> {
    match rows.get(step).and_then(|rows| rows.first()) {
        Some(row) => unsigned(get::<i64>(row, 0)?, "purged"),
        None => Ok(0),
    }
}

pub(crate) fn unsigned<T: TryFrom<i64>>(n: i64, what: &str) -> Result<T, StoreError> {
    T::try_from(n).map_err(|_| corrupt(format!("{what} {n} out of range")))
}

/// A count for an `int` column, saturating.
pub(crate) fn int(n: impl TryInto<i32>) -> i32 {
    n.try_into().unwrap_or(i32::MAX)
}

/// A duration in whole microseconds (the precision of `timestamptz`), for
/// `$n * interval '1 microsecond'`; saturating.
pub(crate) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A lease, a role's term or a retry delay in microseconds, at most a
/// century (so that adding it to a time stays within PostgreSQL's range).
pub(crate) fn interval(d: Duration) -> i64 {
    micros(d.min(Duration::from_secs(100 * 365 * 24 * 3600)))
}

/// `t + d`, saturating at the latest representable instant.
pub(crate) fn after(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    t.checked_add(time::Duration::try_from(d).unwrap_or(time::Duration::MAX))
        .unwrap_or(OffsetDateTime::new_utc(time::Date::MAX, time::Time::MAX))
}

/// Parses a message status column.
pub(crate) fn message_status(s: &str) -> Result<MessageStatus, StoreError> {
    s.parse().map_err(corrupt)
}

/// Parses a recipient status column.
pub(crate) fn recipient_status(s: &str) -> Result<RecipientStatus, StoreError> {
    s.parse().map_err(corrupt)
}

/// Serialises tags or metadata for a `jsonb` column (sent as text).
pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Unusable(format!("postgres: json: {e}")))
}

fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("{what}: {e}")))
}

/// The columns [`message`] reads, for `SELECT … FROM messages m`: the row,
/// then its recipients as JSON.
pub(crate) const MESSAGE_COLUMNS: &str = "m.id, m.message_id, m.status, m.created_at, \
     m.updated_at, m.send_at, m.next_attempt_at, m.attempts, m.sender, m.tags::text, \
     m.metadata::text, m.trace_id, \
     (SELECT coalesce(json_agg(json_build_array(r.address, r.status, r.smtp_code, \
         r.enhanced_code, r.response, r.class) ORDER BY r.position), '[]')::text \
      FROM recipients r WHERE r.message_id = m.id), m.submitted_by, m.template, \
     m.template_version";

/// A message's events as JSON, oldest first, for a column after
/// [`MESSAGE_COLUMNS`]; times as microseconds since the epoch.
pub(crate) const EVENTS_COLUMN: &str = "\
     (SELECT coalesce(json_agg(json_build_array( \
         (extract(epoch FROM e.at) * 1000000)::bigint, e.kind, e.relay, e.attempt, \
         e.outcome, e.smtp_code, e.enhanced_code, e.detail, e.duration_ms, e.class) \
         ORDER BY e.id), \
         '[]')::text \
      FROM events e WHERE e.message_id = m.id)";

/// A recipient as [`MESSAGE_COLUMNS`] puts it in JSON.
type RecipientJson = (
    String,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// An event as [`EVENTS_COLUMN`] puts it in JSON.
type EventJson = (
    i64,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

/// The message in a row of [`MESSAGE_COLUMNS`] (and [`EVENTS_COLUMN`] after
/// them, if `with_events`).
pub(crate) fn message(row: &Row, with_events: bool) -> Result<MessageRecord, StoreError> {
    let id: String = get(row, 0)?;
    let status = message_status(get(row, 2)?)?;
    // The column is kept while sending (see the migration); the model
    // shows a due time only where one is pending.
    let next_attempt_at = match status {
        MessageStatus::Scheduled | MessageStatus::Queued | MessageStatus::Deferred => get(row, 6)?,
        _ => None,
    };
    let tags: Vec<String> = from_json(get(row, 9)?, "tags")?;
    let metadata: BTreeMap<String, String> = from_json(get(row, 10)?, "metadata")?;
    let recipients: Vec<RecipientJson> = from_json(get(row, 12)?, "recipients")?;
    let recipients = recipients
        .into_iter()
        .map(
            |(address, status, smtp_code, enhanced_code, response, class)| {
                Ok(RecipientRecord {
                    address,
                    status: recipient_status(&status)?,
                    smtp_code: smtp_code.map(|c| unsigned(c, "smtp_code")).transpose()?,
                    enhanced_code,
                    response,
                    class: opt_class(class)?,
                })
            },
        )
        .collect::<Result<Vec<_>, StoreError>>()?;
    let events = if with_events {
        let events: Vec<EventJson> = from_json(get(row, 16)?, "events")?;
        events.into_iter().map(event).collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    Ok(MessageRecord {
        message_id: get(row, 1)?,
        status,
        created_at: get(row, 3)?,
        updated_at: get(row, 4)?,
        send_at: get(row, 5)?,
        next_attempt_at,
        attempts: unsigned(i64::from(get::<i32>(row, 7)?), "attempts")?,
        sender: get(row, 8)?,
        recipients,
        events,
        tags,
        metadata,
        trace_id: get(row, 11)?,
        submitted_by: get(row, 13)?,
        template: match (
            get::<Option<String>>(row, 14)?,
            get::<Option<i32>>(row, 15)?,
        ) {
            (Some(name), Some(version)) => Some(TemplateRef {
                name,
                version: unsigned(i64::from(version), "template_version")?,
            }),
            _ => None,
        },
        id,
    })
}

fn event(
    (at, kind, relay, attempt, outcome, smtp_code, enhanced_code, detail, duration_ms, class): EventJson,
) -> Result<Event, StoreError> {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1000)
        .map_err(|e| corrupt(format!("event time {at}: {e}")))?;
    Ok(Event {
        at,
        kind: kind.parse().map_err(corrupt)?,
        relay,
        attempt: attempt.map(|n| unsigned(n, "attempt")).transpose()?,
        outcome: outcome.map(|o| o.parse().map_err(corrupt)).transpose()?,
        smtp_code: smtp_code.map(|c| unsigned(c, "smtp_code")).transpose()?,
        enhanced_code,
        detail,
        duration_ms: duration_ms
            .map(|d| unsigned(d, "duration_ms"))
            .transpose()?,
        class: opt_class(class)?,
    })
}

/// Parses a nullable bounce class column.
pub(crate) fn opt_class(class: Option<String>) -> Result<Option<BounceClass>, StoreError> {
    class.map(|c| c.parse().map_err(corrupt)).transpose()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use time::macros::datetime;

    #[test]
    fn durations_become_microseconds_and_saturate() {
        assert_eq!(micros(Duration::from_millis(1500)), 1_500_000);
        assert_eq!(micros(Duration::MAX), i64::MAX);
        let t = datetime!(2030-01-01 0:00 UTC);
        assert_eq!(
            after(t, Duration::from_secs(60)),
            datetime!(2030-01-01 0:01 UTC)
        );
        assert!(after(t, Duration::MAX) > t);
    }

    #[test]
    fn events_read_from_json() {
        let json = r#"[[1893456000000000, "attempt", "primary", 1, "transient", 451, "4.7.1", "try", 84, "rate_limited"]]"#;
        let rows: Vec<EventJson> = from_json(json, "events").unwrap();
        let event = event(rows.into_iter().next().unwrap()).unwrap();
        assert_eq!(event.at, datetime!(2030-01-01 0:00 UTC));
        assert_eq!(event.kind, "attempt");
        assert_eq!(event.attempt, Some(1));
        assert_eq!(event.smtp_code, Some(451));
        assert_eq!(event.duration_ms, Some(84));
    }
}
