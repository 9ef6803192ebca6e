//! Where a mail waits, as a contract. The [`Store`] trait is the whole
//! contract between the service and its database: enqueue durably, claim
//! with a lease, record an attempt and its consequences in one
//! transaction, answer questions. The rules of a message's life are pure
//! functions in [`lifecycle`]; [`StoreUrl`] says which backend a URL
//! names. Backends live in their own crates (`herald-store-sqlite`,
//! `herald-store-postgres`); one conformance suite ([`conformance`],
//! behind the `conformance` feature) is run against each of them.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod lifecycle;
mod limits;
mod model;
pub mod outbox;
pub mod suppression;
mod template;
mod url;

use std::time::Duration;

use async_trait::async_trait;
use herald_policy::RateLimit;
use time::OffsetDateTime;

pub use herald_policy::BounceClass;
pub use lifecycle::{AttemptOutcome, EventKind};
pub use limits::RateSlots;
pub use model::{
    AttemptRecord, Claimed, Enqueued, Event, FeedCursor, FeedEntry, FeedRecord, Idempotency,
    Leases, ListFilter, MessageRecord, MessageStatus, NewMessage, NextStep, Page, Postponed,
    Purged, QueueStats, RecipientRecord, RecipientResult, RecipientStatus, Recorded, Retention,
    StoreOptions,
};
pub use outbox::{
    DeliveryOutcome, DisabledWebhook, EventRetention, NewOutboxEvent, OutboxEvent, PurgedEvents,
    WebhookDelivery, WebhookDeliveryRecord, WebhookEventType,
};
pub use suppression::{
    Added, Suppression, SuppressionCursor, SuppressionFilter, SuppressionPage, SuppressionPolicy,
    SuppressionReason,
};
pub use template::{NewTemplate, TemplateRecord, TemplateRef};
pub use url::{SqliteLocation, StoreUrl, redact as redact_url};

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No message with that id.
    #[error("no such message")]
    NotFound,
    /// The idempotency key was used with a different request body.
    #[error("idempotency key reused with a different request")]
    IdempotencyConflict,
    /// The change is not allowed from the message's current status (e.g.
    /// cancelling a delivered message).
    #[error("not allowed while the message is {0}")]
    IllegalState(MessageStatus),
    /// The caller's lease on the message expired and another worker may
    /// have it; the attempt was not recorded.
    #[error("lease lost")]
    LeaseLost,
    /// The database failed or is unreachable; nothing was changed. Worth
    /// trying again.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store cannot be used as configured (a bad URL, a schema newer
    /// than this herald knows, a corrupt row); trying again will not help.
    #[error("store unusable: {0}")]
    Unusable(String),
}

impl StoreError {
    /// Whether the same operation may succeed if tried again later (the
    /// database was down or busy), as opposed to an answer that stands.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// The queue's durable home. Every method either completes its change
/// atomically or changes nothing.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores one message. Returns only after the commit is durable (an
    /// fsync on SQLite). With an idempotency key seen in the last
    /// [`IDEMPOTENCY_WINDOW`]: the same request hash returns the first
    /// message (`created: false`) and stores nothing; another hash is
    /// [`StoreError::IdempotencyConflict`].
    async fn enqueue(&self, message: NewMessage) -> Result<Enqueued, StoreError>;

    /// The idempotency look-up, changing nothing: the first answer given
    /// for `idempotency.key` if the key was used in the
    /// [`IDEMPOTENCY_WINDOW`] before `now` with the same request hash
    /// (`created: false`, the status as first answered), or
    /// [`StoreError::IdempotencyConflict`] for another hash; `None` for a
    /// key free to use. [`Store::enqueue`] makes the same check atomically
    /// with storing; this answers a repeat without storing (when the queue
    /// is full, say).
    async fn replay(
        &self,
        idempotency: &Idempotency,
        now: OffsetDateTime,
    ) -> Result<Option<Enqueued>, StoreError>;

    /// Stores several messages in one commit; each gets its own result
    /// (an idempotency conflict fails only that item). An `Err` means
    /// nothing was stored.
    async fn enqueue_batch(
        &self,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError>;

    /// Stores `messages` as one request made under `batch` (the batch's
    /// idempotency key and the hash of the whole request; the messages'
    /// own `idempotency` is not used). If the key answered a batch within
    /// the [`IDEMPOTENCY_WINDOW`] for the same hash, nothing is stored and
    /// the first answers are returned (`created: false`), in order; for
    /// another hash, nothing is stored and the answer is
    /// [`StoreError::IdempotencyConflict`]. Batch keys and single-message
    /// keys never answer for each other. This is what makes a keyed batch
    /// request safe to repeat whole.
    async fn enqueue_batch_once(
        &self,
        batch: &Idempotency,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Enqueued>, StoreError>;

    /// The look-up of [`Store::enqueue_batch_once`], changing nothing: the
    /// first answers of the batch stored under `batch` within the window
    /// before `now`, [`StoreError::IdempotencyConflict`] if it was stored
    /// for another hash, `None` if the key is free.
    async fn replay_batch(
        &self,
        batch: &Idempotency,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<Enqueued>>, StoreError>;

    /// Claims up to `limit` messages that are due at `now` (queued,
    /// deferred or scheduled with their time reached, or `sending` with an
    /// expired lease), oldest due first, marking them `sending` under a
    /// lease held by `owner` until `now + lease`. Atomic: two callers never
    /// get the same message while its lease holds.
    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        now: OffsetDateTime,
    ) -> Result<Vec<Claimed>, StoreError>;

    /// Extends `owner`'s lease on `id` to `until`.
    async fn extend_lease(
        &self,
        id: &str,
        owner: &str,
        until: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// The heartbeat: extends every lease `owner` holds to `now + lease`,
    /// so that a lease can be short while an attempt runs as long as it
    /// must. Returns how many leases were renewed.
    async fn renew_leases(
        &self,
        owner: &str,
        lease: Duration,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError>;

    /// Records an attempt by `owner` and its consequences in one
    /// transaction: each recipient's new state and class, an `attempt`
    /// event, the webhook events of the attempt
    /// ([`outbox::attempt_events`]), the suppression entries that
    /// `attempt.suppression` makes of its failures (each with its
    /// `suppression.added` event), the
    /// attempt count, the next state (`deferred` at the retry time while
    /// recipients remain deferred and the step is `RetryAt`; otherwise
    /// final: `delivered`, `partial` or `failed` by the recipients'
    /// states, with a matching event), and the lease released. Fails with
    /// [`StoreError::LeaseLost`] (recording nothing) if `owner` no longer
    /// holds the lease. Returns the message's new status.
    async fn record_attempt(
        &self,
        id: &str,
        owner: &str,
        attempt: AttemptRecord,
    ) -> Result<MessageStatus, StoreError> {
        Ok(self
            .record_attempt_counted(id, owner, attempt)
            .await?
            .status)
    }

    /// [`Store::record_attempt`], answering also how many suppression
    /// entries the attempt actually added (an address already on the list
    /// is left as it is, and not counted).
    async fn record_attempt_counted(
        &self,
        id: &str,
        owner: &str,
        attempt: AttemptRecord,
    ) -> Result<Recorded, StoreError>;

    /// Gives a claimed message back untried (shutdown): it becomes due
    /// again at once, its attempt count unchanged.
    async fn release(&self, id: &str, owner: &str) -> Result<(), StoreError>;

    /// Puts a claimed message off without trying it (every relay it could
    /// go through has spent its daily quota): status `deferred`, due at
    /// `postponed.until`, the lease released, and a `deferred` event at
    /// `postponed.at` naming the relay, with the detail. Its attempt count
    /// and its recipients stay as they were, so waiting for a quota never
    /// spends the retry policy's attempts. Fails with
    /// [`StoreError::LeaseLost`] (changing nothing) if `owner` no longer
    /// holds the lease.
    async fn postpone(&self, id: &str, owner: &str, postponed: Postponed)
    -> Result<(), StoreError>;

    /// Stops a message that is not final: open recipients become failed
    /// ("cancelled"), status `cancelled`. A message being sent is
    /// cancelled too; the worker's later `record_attempt` then fails with
    /// `LeaseLost`. Final messages: [`StoreError::IllegalState`].
    async fn cancel(&self, id: &str, now: OffsetDateTime) -> Result<MessageRecord, StoreError>;

    /// Puts a `failed` or `partial` message's failed recipients back in the
    /// queue, due now (status `queued`, attempt count kept). Other states:
    /// [`StoreError::IllegalState`].
    async fn retry(&self, id: &str, now: OffsetDateTime) -> Result<MessageRecord, StoreError>;

    /// The message with recipients and events, if it exists.
    async fn get(&self, id: &str) -> Result<Option<MessageRecord>, StoreError>;

    /// A page of messages, newest first, without events.
    async fn list(&self, filter: &ListFilter) -> Result<Page, StoreError>;

    /// Queue figures at `now`.
    async fn stats(&self, now: OffsetDateTime) -> Result<QueueStats, StoreError>;

    /// Messages not yet final (cheap; consulted on every enqueue for
    /// backpressure).
    async fn depth(&self) -> Result<u64, StoreError>;

    /// Ends the [`Leases`] chosen without an attempt: each message is due
    /// at `now` again (event `lease_expired`, or `lease_reclaimed` for
    /// leases taken back by their owner or at start-up), or failed as a
    /// poison message once its leases were lost
    /// [`StoreOptions::max_lost_leases`] times in a row. Returns how many
    /// leases ended. `claim` takes expired leases anyway; this makes them
    /// visible at start-up, and lets a restarted node take its own back
    /// at once instead of waiting for them to expire.
    async fn reclaim(&self, leases: Leases<'_>, now: OffsetDateTime) -> Result<u64, StoreError>;

    /// Deletes, in one small transaction, up to `retention.limit` final
    /// messages last changed before `retention.messages_before` (with
    /// their bodies, recipients, tags and events), the idempotency
    /// records made before `retention.keys_before` and the feed entries
    /// older than `retention.feed_before` (up to the limit each). Call it repeatedly
    /// until it deletes fewer than the limit; it never touches a message
    /// that is not final.
    async fn purge(&self, retention: &Retention) -> Result<Purged, StoreError>;

    /// Holds the role `role` (e.g. the alert evaluator's) for `holder`
    /// until `now + ttl`, if nobody else holds it unexpired: true if
    /// `holder` holds it now. One holder at a time across every node that
    /// shares the store; a holder renews by calling again before `ttl`
    /// runs out.
    async fn lead(
        &self,
        role: &str,
        holder: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Takes up to `want` messages from `relay`'s daily quota in the
    /// period that began at `period` (the quota's last reset), and answers
    /// how many it took: `want` while at least that many are left, what is
    /// left when fewer are, 0 (counting nothing) once the quota is spent.
    /// A later period starts again from zero; an earlier one (a node whose
    /// clock lags) counts against the current one. One count per relay,
    /// shared by every node; a node may hold what it took and spend it
    /// without asking again (see [`herald_policy::QuotaBlock`]).
    async fn take_quota(
        &self,
        relay: &str,
        period: OffsetDateTime,
        limit: u64,
        want: u64,
    ) -> Result<u64, StoreError>;

    /// Gives back `count` messages taken from `relay`'s quota in `period`
    /// (sends that failed before the relay could have taken them, or a
    /// stopping node's unspent block). Nothing happens if the period is
    /// over; the count never goes below zero.
    async fn return_quota(
        &self,
        relay: &str,
        period: OffsetDateTime,
        count: u64,
    ) -> Result<(), StoreError>;

    /// How many messages `relay` has taken from its quota in `period`
    /// (0 once a later period has begun), blocks that nodes hold unspent
    /// included.
    async fn quota_used(&self, relay: &str, period: OffsetDateTime) -> Result<u64, StoreError>;

    /// Takes `count` consecutive slots of `relay`'s rate `limit` at `now`
    /// by the GCRA rule ([`RateLimit::decide_many`]): when the first is
    /// free, all `count` are counted and the answer says when they fall
    /// due ([`RateSlots::Taken`], for a [`herald_policy::SlotBlock`]);
    /// otherwise nothing is taken and the answer says how long until a
    /// slot would be free. A backend that many nodes share keeps the
    /// rule's one number (the TAT) per relay in the database and moves it
    /// with one conditional update, so the rate holds across nodes (exact
    /// up to the nodes' clock skew and one block per node); one that a
    /// single process owns may keep it in memory.
    async fn take_rate_slots(
        &self,
        relay: &str,
        limit: RateLimit,
        now: OffsetDateTime,
        count: u32,
    ) -> Result<RateSlots, StoreError>;

    /// Whether the database answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Appends `entries` to the feed, in one commit.
    async fn append_feed(&self, entries: Vec<FeedEntry>) -> Result<(), StoreError>;

    /// Up to `limit` feed entries after `after` (from the start when
    /// `None`) written at or after `since`, in feed order. Reading on from
    /// the last cursor returned never misses an entry, however commits
    /// interleave: an entry whose transaction may still be overtaken is
    /// held back until it cannot be.
    async fn read_feed(
        &self,
        after: Option<FeedCursor>,
        since: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<FeedRecord>, StoreError>;

    /// Puts `entries` on the suppression list in one commit (their
    /// addresses as [`suppression::address_key`] makes them), answering
    /// for each in order: [`Added::Added`] (with a `suppression.added`
    /// event in the outbox), or [`Added::Exists`] for an address already
    /// on the list at `now` (left as it is). A lapsed entry is replaced.
    async fn add_suppressions(
        &self,
        entries: Vec<Suppression>,
        now: OffsetDateTime,
    ) -> Result<Vec<Added>, StoreError>;

    /// Takes `address` off the list (lapsed or not), with a
    /// `suppression.removed` event at `now`: the entry removed, or `None`
    /// if there was none.
    async fn remove_suppression(
        &self,
        address: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Suppression>, StoreError>;

    /// The entry for `address` holding at `now`, if any.
    async fn suppression(
        &self,
        address: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Suppression>, StoreError>;

    /// The entries holding at `now` for any of `addresses` (the
    /// dispatcher's check before sending), in no particular order.
    async fn suppressions_among(
        &self,
        addresses: &[String],
        now: OffsetDateTime,
    ) -> Result<Vec<Suppression>, StoreError>;

    /// A page of the entries holding at `now`, newest first.
    async fn list_suppressions(
        &self,
        filter: &SuppressionFilter,
        now: OffsetDateTime,
    ) -> Result<SuppressionPage, StoreError>;

    /// Up to `limit` webhook events after `after` (from the start when
    /// `None`), in outbox order. Like the feed, reading on from the last
    /// cursor returned never misses an event, however commits interleave.
    async fn read_outbox(
        &self,
        after: Option<FeedCursor>,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError>;

    /// How far `endpoint` has read the outbox (`None`: from the start).
    async fn webhook_cursor(&self, endpoint: &str) -> Result<Option<FeedCursor>, StoreError>;

    /// Moves `endpoint`'s cursor to `cursor` (events up to it are done).
    async fn advance_webhook(&self, endpoint: &str, cursor: FeedCursor) -> Result<(), StoreError>;

    /// Records one try to deliver an event and, with `advance`, moves the
    /// endpoint's cursor past it, in one commit. Returns the try's id.
    async fn record_webhook_delivery(
        &self,
        delivery: WebhookDelivery,
        advance: Option<FeedCursor>,
    ) -> Result<i64, StoreError>;

    /// Up to `limit` tries, newest first, before the try `before` (from
    /// the newest when `None`).
    async fn list_webhook_deliveries(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<WebhookDeliveryRecord>, StoreError>;

    /// The try `id`, if it is still kept.
    async fn webhook_delivery(&self, id: i64) -> Result<Option<WebhookDeliveryRecord>, StoreError>;

    /// The outbox event whose `webhook-id` is `id` ([`outbox::event_id`]),
    /// if it is still kept.
    async fn outbox_event(&self, id: &str) -> Result<Option<OutboxEvent>, StoreError>;

    /// Marks `disabled.endpoint` disabled (replacing an earlier mark).
    async fn disable_webhook(&self, disabled: DisabledWebhook) -> Result<(), StoreError>;

    /// Takes the mark off `endpoint`: whether it was disabled.
    async fn enable_webhook(&self, endpoint: &str) -> Result<bool, StoreError>;

    /// Every endpoint marked disabled, by name.
    async fn disabled_webhooks(&self) -> Result<Vec<DisabledWebhook>, StoreError>;

    /// Deletes, in one small transaction, up to `retention.limit` each of
    /// the outbox events every listed endpoint has passed, the webhook
    /// delivery tries and the lapsed suppression entries older than their
    /// instants in `retention`. Call it again until it deletes fewer than
    /// the limit of each.
    async fn purge_events(&self, retention: &EventRetention) -> Result<PurgedEvents, StoreError>;
    /// Stores `template` as the next version of its name (version 1 for a
    /// new name); earlier versions are kept.
    async fn put_template(&self, template: NewTemplate) -> Result<TemplateRecord, StoreError>;

    /// Version `version` of the template `name`, or its latest when
    /// `None`; `None` if there is no such template or version.
    async fn template(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<TemplateRecord>, StoreError>;

    /// The latest version of every template, by name.
    async fn templates(&self) -> Result<Vec<TemplateRecord>, StoreError>;

    /// Deletes the template `name`, every version; whether it existed.
    async fn delete_template(&self, name: &str) -> Result<bool, StoreError>;

    /// Calls `wake` whenever another process sharing the store may have
    /// made work due (an enqueue, a retry, a release), so that idle nodes
    /// start at once instead of at their next poll. A hint: callers still
    /// poll. A store that only one process uses has nobody else to hear
    /// from, so by default this does nothing.
    fn on_new_work(&self, wake: std::sync::Arc<dyn Fn() + Send + Sync>) {
        let _ = wake;
    }
}
