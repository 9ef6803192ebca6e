//! Storing new messages: any number of enqueue requests (single messages,
//! batches, keyed batches) in one transaction, as the group-commit task
//! hands them over.
//!
//! Idempotency keys come first, all in one statement: each key is
//! inserted at position 0, or taken over if its row is older than the
//! window; a key whose row stays is answered from that row (a replay, or a
//! conflict for another request hash). The row lock the insert takes makes
//! a concurrent request with the same key wait, then find the answer.
//! Then every message to store goes in with one multi-row insert per table
//! (arrays `unnest`ed), pipelined with the `NOTIFY` and the `COMMIT`: an
//! enqueue without a key is one round trip, with keys two or three.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::Clock;
use super::Shared;
use super::codec::{get, json, micros};
use super::pipeline::{Step, Tx, step};
use herald_store::lifecycle::initial_state;
use herald_store::{Enqueued, EventKind, IDEMPOTENCY_WINDOW, Idempotency, NewMessage, StoreError};

/// One enqueue call: a single message or a batch (each item answered on
/// its own), or a keyed batch (`batch`: answered as a whole).
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) messages: Vec<NewMessage>,
    pub(crate) batch: Option<Idempotency>,
}

/// A request's answer: one per item, or an error for the whole request.
pub(crate) type Answer = Result<Vec<Result<Enqueued, StoreError>>, StoreError>;

/// What one transaction did.
#[derive(Debug)]
pub(crate) struct Stored {
    /// Each request's answer, in order.
    pub(crate) answers: Vec<Answer>,
    /// How many messages were stored (all of them not final yet).
    pub(crate) messages: i64,
}

/// Which requests a key answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Message,
    Batch,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Batch => "batch",
        }
    }
}

/// The first request in the transaction to use a key.
#[derive(Debug)]
struct Claim<'a> {
    key: &'a str,
    kind: Kind,
    hash: &'a str,
    /// The message the key's row points at (a batch's first item).
    first: &'a NewMessage,
    created: OffsetDateTime,
    request: usize,
}

/// The keys of a transaction, each claimed by its first user.
#[derive(Debug, Default)]
struct Claims<'a> {
    list: Vec<Claim<'a>>,
    index: HashMap<(&'a str, Kind), usize>,
}

impl<'a> Claims<'a> {
    /// The index of the claim on `claim`'s key: `claim` itself if the key
    /// is new, else the first claim on it.
    fn add(&mut self, claim: Claim<'a>) -> usize {
        let list = &mut self.list;
        *self
            .index
            .entry((claim.key, claim.kind))
            .or_insert_with(|| {
                list.push(claim);
                list.len() - 1
            })
    }
}

/// An answer a key already gave.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) hash: String,
    pub(crate) answer: Enqueued,
}

/// Stores `requests` in one transaction and commits (see the module's
/// documentation). An error means nothing was stored.
pub(crate) async fn store(shared: &Shared, requests: &[Request]) -> Result<Stored, StoreError> {
    let mut keys = Claims::default();
    // Per request: the keyed batch's claim, or each item's claim (if keyed).
    let mut plans: Vec<Plan> = Vec::with_capacity(requests.len());
    for (request, r) in requests.iter().enumerate() {
        plans.push(match (&r.batch, r.messages.first()) {
            (_, None) => Plan::Empty,
            (Some(batch), Some(first)) => Plan::Batch(
                keys.add(Claim {
                    key: &batch.key,
                    kind: Kind::Batch,
                    hash: &batch.request_hash,
                    first,
                    created: r
                        .messages
                        .iter()
                        .map(|m| m.created_at)
                        .min()
                        .unwrap_or(first.created_at),
                    request,
                }),
            ),
            (None, Some(_)) => Plan::Items(
                r.messages
                    .iter()
                    .map(|m| {
                        m.idempotency.as_ref().map(|key| {
                            keys.add(Claim {
                                key: &key.key,
                                kind: Kind::Message,
                                hash: &key.request_hash,
                                first: m,
                                created: m.created_at,
                                request,
                            })
                        })
                    })
                    .collect(),
            ),
        });
    }

    let claims = keys.list;
    let mut tx = Tx::begin(&shared.pool).await?;
    let won = take_keys(&mut tx, &claims).await?;
    let lost: Vec<&Claim<'_>> = claims
        .iter()
        .zip(&won)
        .filter(|(_, w)| !**w)
        .map(|(c, _)| c)
        .collect();
    let seen = seen_answers(&mut tx, &lost).await?;

    // Decide every answer; collect what to store.
    let mut stored: Vec<&NewMessage> = Vec::new();
    let mut batch_items: Vec<(&str, i32, &str, &NewMessage)> = Vec::new();
    let mut answers: Vec<Answer> = Vec::with_capacity(requests.len());
    for ((request, r), plan) in requests.iter().enumerate().zip(&plans) {
        answers.push(match plan {
            Plan::Empty => Ok(Vec::new()),
            Plan::Batch(c) => {
                let claim = &claims[*c];
                let hash = r.batch.as_ref().map_or("", |b| b.request_hash.as_str());
                if won[*c] && claim.request == request {
                    for (position, message) in (0..).zip(&r.messages) {
                        if position > 0 {
                            batch_items.push((claim.key, position, hash, message));
                        }
                        stored.push(message);
                    }
                    Ok(r.messages.iter().map(|m| Ok(answer(m, true))).collect())
                } else {
                    let first: Vec<Seen> = if won[*c] {
                        requests[claim.request]
                            .messages
                            .iter()
                            .map(|m| Seen {
                                hash: claim.hash.to_owned(),
                                answer: answer(m, false),
                            })
                            .collect()
                    } else {
                        seen.get(&(claim.key, claim.kind))
                            .cloned()
                            .unwrap_or_default()
                    };
                    replay_whole(first, hash, r.messages.len())
                }
            }
            Plan::Items(items) => Ok(r
                .messages
                .iter()
                .zip(items)
                .map(|(message, item)| {
                    let Some(c) = item else {
                        stored.push(message);
                        return Ok(answer(message, true));
                    };
                    let claim = &claims[*c];
                    let hash = message
                        .idempotency
                        .as_ref()
                        .map_or("", |k| k.request_hash.as_str());
                    if won[*c] && std::ptr::eq(claim.first, message) {
                        stored.push(message);
                        return Ok(answer(message, true));
                    }
                    let first = if won[*c] {
                        Some(Seen {
                            hash: claim.hash.to_owned(),
                            answer: answer(claim.first, false),
                        })
                    } else {
                        seen.get(&(claim.key, claim.kind))
                            .and_then(|rows| rows.first().cloned())
                    };
                    match first {
                        Some(seen) if seen.hash == hash => Ok(seen.answer),
                        Some(_) => Err(StoreError::IdempotencyConflict),
                        None => Err(vanished()),
                    }
                })
                .collect()),
        });
    }

    let won_batches: Vec<&str> = claims
        .iter()
        .zip(&won)
        .filter(|(c, w)| **w && c.kind == Kind::Batch)
        .map(|(c, _)| c.key)
        .collect();
    insert(tx, shared.clock, &stored, &won_batches, &batch_items).await?;
    Ok(Stored {
        answers,
        messages: i64::try_from(stored.len()).unwrap_or(i64::MAX),
    })
}

/// How a request's keys are planned.
#[derive(Debug)]
enum Plan {
    Empty,
    /// A keyed batch: the index of its claim.
    Batch(usize),
    /// Each item's claim, if it has a key.
    Items(Vec<Option<usize>>),
}

/// The answer for a message stored now (`created`) or earlier.
fn answer(message: &NewMessage, created: bool) -> Enqueued {
    Enqueued {
        id: message.id.clone(),
        message_id: message.message_id.clone(),
        status: initial_state(message.created_at, message.send_at).0,
        created,
    }
}

/// A keyed batch against the answers its key already gave: the same
/// request (hash and number of items) replays them, any other conflicts.
fn replay_whole(first: Vec<Seen>, hash: &str, items: usize) -> Answer {
    if first.is_empty() {
        return Err(vanished());
    }
    if first.len() != items || first.iter().any(|seen| seen.hash != hash) {
        return Err(StoreError::IdempotencyConflict);
    }
    Ok(first.into_iter().map(|seen| Ok(seen.answer)).collect())
}

/// A key's row disappeared between taking its lock and reading it (only a
/// purge of its message can do that).
fn vanished() -> StoreError {
    StoreError::Unavailable("postgres: an idempotency key changed while in use; try again".into())
}

/// Inserts (or takes over, if expired) each claim's key at position 0;
/// whether each is now this transaction's.
async fn take_keys(tx: &mut Tx, claims: &[Claim<'_>]) -> Result<Vec<bool>, StoreError> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&str> = claims.iter().map(|c| c.key).collect();
    let kinds: Vec<&str> = claims.iter().map(|c| c.kind.as_str()).collect();
    let hashes: Vec<&str> = claims.iter().map(|c| c.hash).collect();
    let ids: Vec<&str> = claims.iter().map(|c| c.first.id.as_str()).collect();
    let created: Vec<OffsetDateTime> = claims.iter().map(|c| c.created).collect();
    let window = micros(IDEMPOTENCY_WINDOW);
    // Rows are locked in one order by every transaction, so two requests
    // sharing several keys cannot deadlock.
    let rows = tx
        .run(
            &[step!(
                "INSERT INTO idempotency AS i (key, kind, position, request_hash, message_id, \
                     created_at) \
                 SELECT key, kind, 0, hash, id, created \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
                     $5::timestamptz[]) AS u (key, kind, hash, id, created) \
                 ORDER BY key COLLATE \"C\", kind \
                 ON CONFLICT (key, kind, position) DO UPDATE \
                     SET request_hash = EXCLUDED.request_hash, \
                         message_id = EXCLUDED.message_id, created_at = EXCLUDED.created_at \
                     WHERE i.created_at <= EXCLUDED.created_at \
                         - $6::bigint * interval '1 microsecond' \
                 RETURNING key, kind",
                keys,
                kinds,
                hashes,
                ids,
                created,
                window,
            )],
            "take idempotency keys",
        )
        .await?;
    let mut taken = std::collections::HashSet::new();
    for row in rows.iter().flatten() {
        taken.insert((get::<String>(row, 0)?, get::<String>(row, 1)?));
    }
    Ok(claims
        .iter()
        .map(|c| taken.contains(&(c.key.to_owned(), c.kind.as_str().to_owned())))
        .collect())
}

/// The answers the keys this transaction did not get already gave, each
/// key's in position order.
async fn seen_answers<'a>(
    tx: &mut Tx,
    lost: &[&Claim<'a>],
) -> Result<HashMap<(&'a str, Kind), Vec<Seen>>, StoreError> {
    let mut seen: HashMap<(&'a str, Kind), Vec<Seen>> = HashMap::new();
    if lost.is_empty() {
        return Ok(seen);
    }
    let keys: Vec<&str> = lost.iter().map(|c| c.key).collect();
    let kinds: Vec<&str> = lost.iter().map(|c| c.kind.as_str()).collect();
    let rows = tx
        .run(
            &[step!(
                "SELECT i.key, i.kind, i.request_hash, m.id, m.message_id, m.created_at, \
                     m.send_at \
                 FROM idempotency i JOIN messages m ON m.id = i.message_id \
                 WHERE (i.key, i.kind) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
                 ORDER BY i.position",
                keys,
                kinds,
            )],
            "read idempotency keys",
        )
        .await?;
    let by_name: HashMap<(&str, &str), (&'a str, Kind)> = lost
        .iter()
        .map(|c| ((c.key, c.kind.as_str()), (c.key, c.kind)))
        .collect();
    for row in rows.iter().flatten() {
        let (key, kind): (&str, &str) = (get(row, 0)?, get(row, 1)?);
        let Some(name) = by_name.get(&(key, kind)) else {
            continue;
        };
        let seen_row = seen_row(row, 2)?;
        seen.entry(*name).or_default().push(seen_row);
    }
    Ok(seen)
}

/// A [`Seen`] from the columns request_hash, id, message_id, created_at,
/// send_at starting at `from`.
pub(crate) fn seen_row(row: &tokio_postgres::Row, from: usize) -> Result<Seen, StoreError> {
    let created: OffsetDateTime = get(row, from + 3)?;
    let send_at: Option<OffsetDateTime> = get(row, from + 4)?;
    Ok(Seen {
        hash: get(row, from)?,
        answer: Enqueued {
            id: get(row, from + 1)?,
            message_id: get(row, from + 2)?,
            // The status the first answer gave.
            status: initial_state(created, send_at).0,
            created: false,
        },
    })
}

/// Inserts `messages` (with bodies, recipients and first events) and the
/// items of the keyed batches won, notifies, and commits: one pipeline.
async fn insert(
    tx: Tx,
    clock: Clock,
    messages: &[&NewMessage],
    won_batches: &[&str],
    batch_items: &[(&str, i32, &str, &NewMessage)],
) -> Result<(), StoreError> {
    let n = messages.len();
    let mut ids = Vec::with_capacity(n);
    let mut message_ids = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    let mut send_at = Vec::with_capacity(n);
    let mut due = Vec::with_capacity(n);
    let mut senders = Vec::with_capacity(n);
    let mut smtputf8 = Vec::with_capacity(n);
    let mut tags = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    let mut trace_ids = Vec::with_capacity(n);
    let mut submitters = Vec::with_capacity(n);
    let (mut templates, mut versions) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut bodies: Vec<&[u8]> = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let (mut r_ids, mut r_positions, mut r_addresses) = (Vec::new(), Vec::new(), Vec::new());
    for m in messages {
        let (status, at) = initial_state(m.created_at, m.send_at);
        ids.push(m.id.as_str());
        message_ids.push(m.message_id.as_str());
        statuses.push(status.as_str());
        kinds.push(
            EventKind::entering(status)
                .unwrap_or(EventKind::Queued)
                .as_str(),
        );
        created.push(m.created_at);
        send_at.push(m.send_at);
        due.push(at);
        senders.push(m.sender.as_deref());
        smtputf8.push(m.smtputf8);
        tags.push(json(&m.tags)?);
        metadata.push(json(&m.metadata)?);
        trace_ids.push(m.trace_id.as_deref());
        submitters.push(m.submitted_by.as_deref());
        templates.push(m.template.as_ref().map(|t| t.name.as_str()));
        versions.push(
            m.template
                .as_ref()
                .map(|t| i32::try_from(t.version).unwrap_or(i32::MAX)),
        );
        bodies.push(m.rendered.as_slice());
        // The caller promises no duplicate recipients; should one slip
        // through, the first stands.
        let mut seen = std::collections::HashSet::new();
        for (position, address) in (0..).zip(&m.recipients) {
            if seen.insert(address.as_str()) {
                r_ids.push(m.id.as_str());
                r_positions.push(position);
                r_addresses.push(address.as_str());
            }
        }
    }
    // With the database's clock, a message due at once is due by the
    // database's clock too (the caller's may run ahead of it).
    let database_clock = clock == Clock::Database;
    let mut item_keys = Vec::with_capacity(batch_items.len());
    let mut item_positions = Vec::with_capacity(batch_items.len());
    let mut item_hashes = Vec::with_capacity(batch_items.len());
    let mut item_ids = Vec::with_capacity(batch_items.len());
    let mut item_created = Vec::with_capacity(batch_items.len());
    for (key, position, hash, message) in batch_items {
        item_keys.push(*key);
        item_positions.push(*position);
        item_hashes.push(*hash);
        item_ids.push(message.id.as_str());
        item_created.push(message.created_at);
    }
    let mut steps: Vec<Step<'_>> = Vec::new();
    if !won_batches.is_empty() {
        steps.push(step!(
            "DELETE FROM idempotency WHERE kind = 'batch' AND key = ANY($1::text[]) \
             AND position > 0",
            won_batches,
        ));
    }
    if n > 0 {
        steps.push(step!(
            "INSERT INTO messages (id, message_id, status, created_at, updated_at, send_at, \
                 next_attempt_at, sender, smtputf8, tags, metadata, trace_id, submitted_by, \
                 template, template_version) \
             SELECT id, message_id, status, created, created, send_at, \
                 CASE WHEN $12::boolean AND status = 'queued' THEN least(due, now()) \
                     ELSE due END, \
                 sender, smtputf8, tags::jsonb, metadata::jsonb, trace_id, submitted_by, \
                 template, template_version \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], \
                 $5::timestamptz[], $6::timestamptz[], $7::text[], $8::boolean[], $9::text[], \
                 $10::text[], $11::text[], $13::text[], $14::text[], $15::integer[]) \
                 AS u (id, message_id, status, created, send_at, due, sender, smtputf8, tags, \
                     metadata, trace_id, submitted_by, template, template_version)",
            ids,
            message_ids,
            statuses,
            created,
            send_at,
            due,
            senders,
            smtputf8,
            tags,
            metadata,
            trace_ids,
            database_clock,
            submitters,
            templates,
            versions,
        ));
        steps.push(step!(
            "INSERT INTO message_bodies (message_id, rendered) \
             SELECT * FROM unnest($1::text[], $2::bytea[])",
            ids,
            bodies,
        ));
        steps.push(step!(
            "INSERT INTO recipients (message_id, position, address, status) \
             SELECT id, position, address, 'pending' \
             FROM unnest($1::text[], $2::int[], $3::text[]) AS u (id, position, address)",
            r_ids,
            r_positions,
            r_addresses,
        ));
        steps.push(step!(
            "INSERT INTO events (message_id, at, kind) \
             SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[])",
            ids,
            created,
            kinds,
        ));
        steps.push(step!("SELECT pg_notify('herald_work', '')"));
    }
    if !batch_items.is_empty() {
        steps.push(step!(
            "INSERT INTO idempotency (key, kind, position, request_hash, message_id, created_at) \
             SELECT key, 'batch', position, hash, id, created \
             FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::timestamptz[]) \
                 AS u (key, position, hash, id, created)",
            item_keys,
            item_positions,
            item_hashes,
            item_ids,
            item_created,
        ));
    }
    tx.commit(&steps, "store messages").await?;
    Ok(())
}

/// A request's share of a group: a batch weighs as many messages as it
/// holds.
pub(crate) fn weight(request: &Request) -> usize {
    request.messages.len().max(1)
}
