//! Answering a repeated request: what an idempotency key (of one message,
//! or of a batch) answered within the window, read without writing.

use time::OffsetDateTime;

use super::Shared;
use super::codec::micros;
use super::enqueue::{Kind, Seen, seen_row};
use super::pipeline::{Conn, step};
use herald_store::{Enqueued, IDEMPOTENCY_WINDOW, Idempotency, StoreError};

/// What `key` (of `kind`) answered within the window before `now`, in
/// position order. Reads only.
async fn look_up(
    shared: &Shared,
    key: &str,
    kind: Kind,
    now: OffsetDateTime,
) -> Result<Vec<Seen>, StoreError> {
    let conn = Conn::get(&shared.pool).await?;
    let window = micros(IDEMPOTENCY_WINDOW);
    let kind = kind.as_str();
    let rows = conn
        .pipeline(
            &[step!(
                "SELECT i.request_hash, m.id, m.message_id, m.created_at, m.send_at \
                 FROM idempotency i JOIN messages m ON m.id = i.message_id \
                 WHERE i.key = $1 AND i.kind = $2 \
                     AND i.created_at > $3::timestamptz - $4::bigint * interval '1 microsecond' \
                 ORDER BY i.position",
                key,
                kind,
                now,
                window,
            )],
            "read idempotency keys",
        )
        .await?;
    rows.iter().flatten().map(|row| seen_row(row, 0)).collect()
}

/// The idempotency look-up of one message's key (see
/// [`herald_store::Store::replay`]).
pub(crate) async fn replay(
    shared: &Shared,
    idempotency: &Idempotency,
    now: OffsetDateTime,
) -> Result<Option<Enqueued>, StoreError> {
    let seen = look_up(shared, &idempotency.key, Kind::Message, now).await?;
    match seen.into_iter().next() {
        None => Ok(None),
        Some(seen) if seen.hash == idempotency.request_hash => Ok(Some(seen.answer)),
        Some(_) => Err(StoreError::IdempotencyConflict),
    }
}

/// The look-up of a keyed batch (see [`herald_store::Store::replay_batch`]).
pub(crate) async fn replay_batch(
    shared: &Shared,
    batch: &Idempotency,
    now: OffsetDateTime,
) -> Result<Option<Vec<Enqueued>>, StoreError> {
    let seen = look_up(shared, &batch.key, Kind::Batch, now).await?;
    if seen.is_empty() {
        return Ok(None);
    }
    if seen.iter().any(|s| s.hash != batch.request_hash) {
        return Err(StoreError::IdempotencyConflict);
    }
    Ok(Some(seen.into_iter().map(|s| s.answer).collect()))
}
