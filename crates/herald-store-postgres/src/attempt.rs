//! The consequences of an attempt, and the user's cancel and retry. Each
//! locks the message and reads its recipients (one round trip), decides
//! the next state with [`herald_store::lifecycle`], and writes the change,
//! its events and the lease's end in one pipeline with the commit.

use std::collections::{BTreeMap, HashMap};

use time::OffsetDateTime;

use super::codec::{self, after, corrupt, get, int, recipient_status, unsigned};
use super::pipeline::{Step, Tx, step};
use super::query::GET;
use super::suppress::{Adding, Appending};
use super::{Clock, Shared};
use herald_store::lifecycle::{
    self, AfterAttempt, Tally, after_attempt, deferral_detail, final_detail,
};
use herald_store::outbox::{MessageContext, attempt_events};
use herald_store::{
    AttemptRecord, BounceClass, EventKind, MessageRecord, MessageStatus, NextStep, RecipientResult,
    Recorded, StoreError,
};

/// Locks the message and reads its status, lease holder and attempts,
/// and the database's now.
const LOCK: &str = "SELECT status, lease_owner, attempts, now(), message_id, tags::text, \
     metadata::text FROM messages WHERE id = $1 FOR UPDATE";

/// The message's recipients' addresses and states, in envelope order.
const RECIPIENTS: &str =
    "SELECT address, status FROM recipients WHERE message_id = $1 ORDER BY position";

/// What [`LOCK`] and [`RECIPIENTS`] read.
#[derive(Debug)]
struct Locked {
    status: MessageStatus,
    holder: Option<String>,
    attempts: u32,
    db_now: OffsetDateTime,
    recipients: Vec<(String, String)>,
    /// The Message-ID, tags and metadata (JSON), for webhook events.
    message_id: String,
    tags: String,
    metadata: String,
}

/// Locks `id` in `tx`; `NotFound` (the transaction rolled back) if it does
/// not exist.
async fn lock(tx: &mut Tx, id: &str) -> Result<Locked, StoreError> {
    // The recipients are read by a statement of their own, after the row
    // lock is held: a statement that waited for the lock still reads
    // other rows as they were when it started.
    let rows = tx
        .run(&[step!(LOCK, id), step!(RECIPIENTS, id)], "lock message")
        .await?;
    let Some(row) = rows.first().and_then(|rows| rows.first()) else {
        return Err(StoreError::NotFound);
    };
    let recipients = rows
        .get(1)
        .into_iter()
        .flatten()
        .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
        .collect::<Result<Vec<(String, String)>, StoreError>>()?;
    Ok(Locked {
        status: codec::message_status(get(row, 0)?)?,
        holder: get(row, 1)?,
        attempts: unsigned(i64::from(get::<i32>(row, 2)?), "attempts")?,
        db_now: get(row, 3)?,
        recipients,
        message_id: get(row, 4)?,
        tags: get(row, 5)?,
        metadata: get(row, 6)?,
    })
}

/// Locks `id`, rolling back and failing if it does not exist.
async fn locked(tx: Tx, id: &str) -> Result<(Tx, Locked), StoreError> {
    let mut tx = tx;
    match lock(&mut tx, id).await {
        Ok(locked) => Ok((tx, locked)),
        Err(e) => {
            tx.rollback().await;
            Err(e)
        }
    }
}

/// The instant a change made at `caller` is recorded at: the caller's, or
/// the database's now.
fn at(shared: &Shared, caller: OffsetDateTime, db_now: OffsetDateTime) -> OffsetDateTime {
    match shared.clock {
        Clock::Caller => caller,
        Clock::Database => db_now,
    }
}

/// Records `owner`'s attempt on `id` (see
/// [`herald_store::Store::record_attempt_counted`]).
pub(crate) async fn record(
    shared: &Shared,
    id: &str,
    owner: &str,
    attempt: AttemptRecord,
) -> Result<Recorded, StoreError> {
    let (tx, locked) = locked(Tx::begin(&shared.pool).await?, id).await?;
    // A lease that ran out but was not taken by anyone is still honoured:
    // the attempt happened, and forgetting it would send the mail again.
    if locked.status != MessageStatus::Sending || locked.holder.as_deref() != Some(owner) {
        tx.rollback().await;
        return Err(StoreError::LeaseLost);
    }
    let attempts = locked.attempts.saturating_add(1);

    // Each result replaces its recipient's state (the last one, should an
    // address be reported twice).
    let results: HashMap<&str, &RecipientResult> = attempt
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), r))
        .collect();
    let mut tally = Tally::default();
    for (address, status) in &locked.recipients {
        let status = match results.get(address.as_str()) {
            Some(result) => result.status,
            None => recipient_status(status)?,
        };
        tally.add(status, 1);
    }
    if results
        .keys()
        .any(|address| !locked.recipients.iter().any(|(a, _)| a == address))
    {
        // A caller bug, but the attempt itself must still be recorded.
        tracing::warn!(
            message = id,
            "attempt result for an address not on the message"
        );
    }

    let ended = after(attempt.started_at, attempt.duration);
    let now = at(shared, ended, locked.db_now);
    // With the database's clock, the wait the caller chose (from the
    // attempt's end to the retry) starts at the database's now.
    let next = match (attempt.next, shared.clock) {
        (NextStep::RetryAt(retry), Clock::Database) => NextStep::RetryAt(now + (retry - ended)),
        (next, _) => next,
    };

    let addresses: Vec<&str> = results.keys().copied().collect();
    let states: Vec<&str> = results.values().map(|r| r.status.as_str()).collect();
    let codes: Vec<Option<i32>> = results
        .values()
        .map(|r| r.smtp_code.map(i32::from))
        .collect();
    let enhanced: Vec<Option<&str>> = results
        .values()
        .map(|r| r.enhanced_code.as_deref())
        .collect();
    let responses: Vec<Option<&str>> = results.values().map(|r| r.response.as_deref()).collect();
    let classes: Vec<Option<&str>> = results
        .values()
        .map(|r| r.class.map(BounceClass::as_str))
        .collect();
    let class = attempt.class.map(BounceClass::as_str);
    let attempt_number = int(attempts);
    let outcome = attempt.outcome.as_str();
    let smtp_code = attempt.smtp_code.map(i32::from);
    let duration_ms = i64::try_from(attempt.duration.as_millis()).unwrap_or(i64::MAX);
    let mut steps: Vec<Step<'_>> = vec![
        step!(
            "UPDATE recipients r SET status = u.status, smtp_code = u.code, \
                 enhanced_code = u.enhanced, response = u.response, class = u.class \
             FROM unnest($2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[]) \
                 AS u (address, status, code, enhanced, response, class) \
             WHERE r.message_id = $1 AND r.address = u.address",
            id,
            addresses,
            states,
            codes,
            enhanced,
            responses,
            classes,
        ),
        step!(
            "INSERT INTO events (message_id, at, kind, relay, attempt, outcome, smtp_code, \
                 enhanced_code, detail, duration_ms, class) \
             VALUES ($1, $2, 'attempt', $3, $4, $5, $6, $7, $8, $9, $10)",
            id,
            attempt.started_at,
            attempt.relay,
            attempt_number,
            outcome,
            smtp_code,
            attempt.enhanced_code,
            attempt.detail,
            duration_ms,
            class,
        ),
    ];
    // An attempt was recorded: the message did not kill its worker, so
    // the count of leases lost in a row starts again.
    let (status, due, detail) = match after_attempt(tally, next) {
        AfterAttempt::Defer { at, open } => {
            (MessageStatus::Deferred, Some(at), deferral_detail(open, at))
        }
        AfterAttempt::Finish {
            status,
            given_up,
            tally,
        } => {
            if given_up > 0 {
                steps.push(step!(
                    "UPDATE recipients SET status = 'failed', \
                         response = coalesce(response, 'retries exhausted') \
                     WHERE message_id = $1 AND status IN ('pending', 'deferred')",
                    id,
                ));
            }
            (status, None, final_detail(&tally))
        }
    };
    // What the attempt tells the application, in the same transaction:
    // its webhook events, and the entries its failures add to the
    // suppression list (each with its own event, if it was added).
    let given_up: Vec<String> = if status.is_final() {
        open_after(&locked.recipients, &results)?
    } else {
        Vec::new()
    };
    let tags: Vec<String> =
        serde_json::from_str(&locked.tags).map_err(|e| corrupt(e.to_string()))?;
    let metadata: BTreeMap<String, String> =
        serde_json::from_str(&locked.metadata).map_err(|e| corrupt(e.to_string()))?;
    let context = MessageContext {
        id,
        message_id: &locked.message_id,
        tags: &tags,
        metadata: &metadata,
    };
    let events: Vec<Appending> =
        attempt_events(&context, attempts, &attempt.recipients, &given_up, now)
            .into_iter()
            .map(Appending::new)
            .collect();
    let adding: Vec<Adding> = attempt
        .recipients
        .iter()
        .filter_map(|r| attempt.suppression.entry_for(r, id, now))
        .map(|entry| Adding::new(entry, now))
        .collect();
    let lapse = Some(now);
    steps.extend(events.iter().map(Appending::step));
    // Each ADD step returns a row only for an entry it added.
    let first_add = steps.len();
    steps.extend(adding.iter().map(|a| a.step(&lapse)));
    let status_name = status.as_str();
    let kind = EventKind::entering(status)
        .unwrap_or(EventKind::Failed)
        .as_str();
    steps.push(step!(
        "UPDATE messages SET status = $2, attempts = $3, next_attempt_at = $4, updated_at = $5, \
             lease_owner = NULL, lease_until = NULL, lost_leases = 0 \
         WHERE id = $1",
        id,
        status_name,
        attempt_number,
        due,
        now,
    ));
    steps.push(step!(
        "INSERT INTO events (message_id, at, kind, detail) VALUES ($1, $2, $3, $4)",
        id,
        now,
        kind,
        detail,
    ));
    let answers = tx.commit(&steps, "record attempt").await?;
    if status.is_final() {
        shared.depth.add(-1);
    }
    let added = answers
        .iter()
        .skip(first_add)
        .take(adding.len())
        .filter(|rows| !rows.is_empty())
        .count();
    Ok(Recorded {
        status,
        suppressed: u32::try_from(added).unwrap_or(u32::MAX),
    })
}

/// The recipients still open once `results` are applied, in envelope
/// order: those a final state gives up on.
fn open_after(
    recipients: &[(String, String)],
    results: &HashMap<&str, &RecipientResult>,
) -> Result<Vec<String>, StoreError> {
    let mut open = Vec::new();
    for (address, status) in recipients {
        let status = match results.get(address.as_str()) {
            Some(result) => result.status,
            None => recipient_status(status)?,
        };
        if status.is_open() {
            open.push(address.clone());
        }
    }
    Ok(open)
}

/// Stops a message that is not final (see [`herald_store::Store::cancel`]).
pub(crate) async fn cancel(
    shared: &Shared,
    id: &str,
    now: OffsetDateTime,
) -> Result<MessageRecord, StoreError> {
    let (tx, locked) = locked(Tx::begin(&shared.pool).await?, id).await?;
    if let Err(e) = lifecycle::check_cancel(locked.status) {
        tx.rollback().await;
        return Err(e);
    }
    let now = at(shared, now, locked.db_now);
    let detail = format!("cancelled while {}", locked.status);
    // The last reply codes belonged to a deferral that no longer matters
    // (the event history keeps them). Clearing the lease is what turns the
    // worker's later record_attempt into LeaseLost.
    let rows = tx
        .commit(
            &[
                step!(
                    "UPDATE recipients SET status = 'failed', smtp_code = NULL, \
                         enhanced_code = NULL, response = 'cancelled' \
                     WHERE message_id = $1 AND status IN ('pending', 'deferred')",
                    id,
                ),
                step!(
                    "UPDATE messages SET status = 'cancelled', next_attempt_at = NULL, \
                         updated_at = $2, lease_owner = NULL, lease_until = NULL \
                     WHERE id = $1",
                    id,
                    now,
                ),
                step!(
                    "INSERT INTO events (message_id, at, kind, detail) \
                     VALUES ($1, $2, 'cancelled', $3)",
                    id,
                    now,
                    detail,
                ),
                step!(GET.as_str(), id),
            ],
            "cancel message",
        )
        .await?;
    shared.depth.add(-1);
    changed(rows.get(3))
}

/// Requeues a failed or partial message's failed recipients (see
/// [`herald_store::Store::retry`]).
pub(crate) async fn retry(
    shared: &Shared,
    id: &str,
    now: OffsetDateTime,
) -> Result<MessageRecord, StoreError> {
    let (tx, locked) = locked(Tx::begin(&shared.pool).await?, id).await?;
    let failed = locked
        .recipients
        .iter()
        .filter(|(_, status)| status == "failed")
        .count();
    let refused = lifecycle::check_retry(locked.status).err().or_else(|| {
        // Only suppressed recipients failed to arrive: nothing to send.
        (failed == 0).then_some(StoreError::IllegalState(locked.status))
    });
    if let Some(e) = refused {
        tx.rollback().await;
        return Err(e);
    }
    let now = at(shared, now, locked.db_now);
    let detail = format!("{failed} recipient(s) requeued");
    // The last reply stays on the recipient until the next attempt
    // replaces it: it says why the recipient is being retried.
    let rows = tx
        .commit(
            &[
                step!(
                    "UPDATE recipients SET status = 'pending' \
                     WHERE message_id = $1 AND status = 'failed'",
                    id,
                ),
                step!(
                    "UPDATE messages SET status = 'queued', next_attempt_at = $2, updated_at = $2 \
                     WHERE id = $1",
                    id,
                    now,
                ),
                step!(
                    "INSERT INTO events (message_id, at, kind, detail) \
                     VALUES ($1, $2, 'retried', $3)",
                    id,
                    now,
                    detail,
                ),
                step!("SELECT pg_notify('herald_work', '')"),
                step!(GET.as_str(), id),
            ],
            "retry message",
        )
        .await?;
    shared.depth.add(1);
    changed(rows.get(4))
}

/// The message as a change left it (read inside its transaction).
fn changed(rows: Option<&Vec<tokio_postgres::Row>>) -> Result<MessageRecord, StoreError> {
    let row = rows
        .and_then(|rows| rows.first())
        .ok_or(StoreError::NotFound)?;
    codec::message(row, true)
}
