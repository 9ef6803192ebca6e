//! The records a store keeps: messages, their recipients and their event
//! history, and what goes in and out of each store operation. Plain data;
//! the decisions that produce it live in the service and in herald-policy.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::SuppressionPolicy;
use crate::lifecycle::{AttemptOutcome, EventKind};
use herald_policy::BounceClass;
use time::OffsetDateTime;

/// A message's state (the API's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// `send_at` lies in the future.
    Scheduled,
    /// Waiting for its first attempt.
    Queued,
    /// Claimed by a worker (under a lease).
    Sending,
    /// Waiting for a retry at `next_attempt_at`.
    Deferred,
    /// Final: every recipient accepted.
    Delivered,
    /// Final: some recipients accepted, the others failed.
    Partial,
    /// Final: no recipient accepted.
    Failed,
    /// Final: stopped by a user.
    Cancelled,
}

impl MessageStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 8] = [
        Self::Scheduled,
        Self::Queued,
        Self::Sending,
        Self::Deferred,
        Self::Delivered,
        Self::Partial,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Deferred => "deferred",
            Self::Delivered => "delivered",
            Self::Partial => "partial",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether nothing more will happen to the message on its own.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Delivered | Self::Partial | Self::Failed | Self::Cancelled
        )
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown status {s:?}"))
    }
}

/// A recipient's state (the API's recipient `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientStatus {
    /// Not tried yet.
    Pending,
    /// Failed transiently; will be retried.
    Deferred,
    /// Accepted by the relay.
    Delivered,
    /// Refused for good (or retries exhausted, or cancelled).
    Failed,
    /// Not sent on purpose: the address is on the suppression list.
    Suppressed,
}

impl RecipientStatus {
    /// The name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Deferred => "deferred",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Suppressed => "suppressed",
        }
    }

    /// Whether a future attempt should still include this recipient.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Deferred)
    }
}

impl fmt::Display for RecipientStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecipientStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Pending,
            Self::Deferred,
            Self::Delivered,
            Self::Failed,
            Self::Suppressed,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| format!("unknown recipient status {s:?}"))
    }
}

/// What to store for a new message. The message is already validated and
/// rendered: attempts send `rendered` as it is, never re-rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// herald's id (a ULID string): unique, sortable by creation time.
    pub id: String,
    /// The RFC 5322 Message-ID, with angle brackets.
    pub message_id: String,
    /// When the API accepted it.
    pub created_at: OffsetDateTime,
    /// Do not attempt before this instant (status `scheduled` until then).
    pub send_at: Option<OffsetDateTime>,
    /// The envelope sender (reverse-path); `None` is `<>`.
    pub sender: Option<String>,
    /// The envelope recipients, at least one, no duplicates.
    pub recipients: Vec<String>,
    /// The rendered RFC 5322 bytes.
    pub rendered: Vec<u8>,
    /// Whether sending needs SMTPUTF8.
    pub smtputf8: bool,
    /// Labels, for filtering.
    pub tags: Vec<String>,
    /// Application data kept with the message.
    pub metadata: BTreeMap<String, String>,
    /// The W3C trace id the message belongs to, if any.
    pub trace_id: Option<String>,
    /// The name of the API key that queued it, if known.
    pub submitted_by: Option<String>,
    /// `Idempotency-Key` and a hash of the request body it came with.
    pub idempotency: Option<Idempotency>,
    /// The template version it was rendered from, if any.
    pub template: Option<crate::TemplateRef>,
}

/// An idempotency key with the fingerprint of the request that used it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The client's `Idempotency-Key` (at most 255 characters).
    pub key: String,
    /// A hash of the request body; the same key with another hash is a
    /// conflict.
    pub request_hash: String,
}

/// The answer to an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The message's id: the new one, or the first one for a repeated
    /// idempotency key.
    pub id: String,
    /// Its Message-ID header.
    pub message_id: String,
    /// Its status now.
    pub status: MessageStatus,
    /// False when an idempotency key matched an earlier message and nothing
    /// new was stored.
    pub created: bool,
}

/// A message handed to a worker, under a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// herald's id.
    pub id: String,
    /// The Message-ID header.
    pub message_id: String,
    /// The envelope sender.
    pub sender: Option<String>,
    /// The recipients still open (pending or deferred), in order.
    pub recipients: Vec<String>,
    /// The rendered bytes.
    pub rendered: Vec<u8>,
    /// Whether sending needs SMTPUTF8.
    pub smtputf8: bool,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When the message was accepted (retry max-age counts from here).
    pub created_at: OffsetDateTime,
    /// The trace id, if any.
    pub trace_id: Option<String>,
    /// The lease's end; the worker must finish (or renew) before.
    pub lease_until: OffsetDateTime,
}

/// The result of one attempt for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientResult {
    /// The recipient's address.
    pub address: String,
    /// `Delivered`, `Deferred` (retry it) or `Failed` (never again).
    pub status: RecipientStatus,
    /// The SMTP reply code, if the server answered.
    pub smtp_code: Option<u16>,
    /// The enhanced status code, e.g. `5.1.1`.
    pub enhanced_code: Option<String>,
    /// The reply text or the local error.
    pub response: Option<String>,
    /// What the failure means, for a failed or deferred recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<BounceClass>,
}

/// What happens to the message after an attempt; decided by the caller
/// (the retry policy), carried out by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Recipients left deferred are tried again at this instant.
    RetryAt(OffsetDateTime),
    /// No more attempts: recipients still deferred become failed.
    GiveUp,
}

/// One delivery attempt, written with its consequences in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// When the attempt started.
    pub started_at: OffsetDateTime,
    /// How long it took.
    pub duration: Duration,
    /// The relay used (its configured name, or `outbox`).
    pub relay: String,
    /// The attempt's overall outcome, for the event
    /// ([`AttemptOutcome::of`] its recipients' results).
    pub outcome: AttemptOutcome,
    /// The SMTP code that characterises the attempt, if any.
    pub smtp_code: Option<u16>,
    /// Its enhanced code, if any.
    pub enhanced_code: Option<String>,
    /// A one-line description (`451 4.7.1 try again later`).
    pub detail: String,
    /// The class of the failure that characterises the attempt, if any.
    pub class: Option<BounceClass>,
    /// One result per recipient tried in this attempt.
    pub recipients: Vec<RecipientResult>,
    /// What to do with the recipients left deferred.
    pub next: NextStep,
    /// Which failures put their address on the suppression list, in the
    /// same transaction.
    pub suppression: SuppressionPolicy,
}

/// A claimed message put off untried ([`Store::postpone`](crate::Store::postpone)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postponed {
    /// When it is due again (the first quota reset).
    pub until: OffsetDateTime,
    /// Now: the time of the `deferred` event.
    pub at: OffsetDateTime,
    /// The relay whose limit put it off.
    pub relay: String,
    /// Why, for the event (`daily quota of relay gmail (500) spent; resets at …`).
    pub detail: String,
}

/// A message with everything known about it (the API's message view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// herald's id.
    pub id: String,
    /// The Message-ID header.
    pub message_id: String,
    /// Current status.
    pub status: MessageStatus,
    /// When accepted.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
    /// Scheduled send time, if any.
    pub send_at: Option<OffsetDateTime>,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (scheduled, queued, deferred).
    pub next_attempt_at: Option<OffsetDateTime>,
    /// The envelope sender.
    pub sender: Option<String>,
    /// Every recipient with its latest state.
    pub recipients: Vec<RecipientRecord>,
    /// The history, oldest first (empty in list views).
    pub events: Vec<Event>,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Trace id, if any.
    pub trace_id: Option<String>,
    /// The name of the API key that queued it, if known.
    pub submitted_by: Option<String>,
    /// The template version it was rendered from, if any.
    pub template: Option<crate::TemplateRef>,
}

/// A recipient's latest state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientRecord {
    /// The address.
    pub address: String,
    /// Its state.
    pub status: RecipientStatus,
    /// The last SMTP code for it.
    pub smtp_code: Option<u16>,
    /// The last enhanced code.
    pub enhanced_code: Option<String>,
    /// The last reply text or error.
    pub response: Option<String>,
    /// The class of the last failure, if the recipient failed or was
    /// deferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<BounceClass>,
}

/// One entry in a message's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The relay, for attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
    /// The attempt number (1-based), for attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The attempt's outcome, for attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AttemptOutcome>,
    /// The SMTP code, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_code: Option<u16>,
    /// The enhanced code, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enhanced_code: Option<String>,
    /// A one-line description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// How long the attempt took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The class of the attempt's failure, for attempts that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<BounceClass>,
}

/// Filters for listing messages, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only this status.
    pub status: Option<MessageStatus>,
    /// Only messages carrying this tag.
    pub tag: Option<String>,
    /// Only messages with this recipient (exact address).
    pub recipient: Option<String>,
    /// Created at or after.
    pub since: Option<OffsetDateTime>,
    /// Created before.
    pub until: Option<OffsetDateTime>,
    /// At most this many (the API caps it at 500).
    pub limit: usize,
    /// Continue after this id (the previous page's last id).
    pub after_id: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The messages, newest first, without events.
    pub messages: Vec<MessageRecord>,
    /// The id to pass as `after_id` for the next page, if there is one.
    pub next_after_id: Option<String>,
}

/// Queue figures for backpressure, readiness and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages per status (every status present, zeros included).
    pub by_status: BTreeMap<MessageStatus, u64>,
    /// Age of the oldest message due now (queued, deferred or scheduled
    /// with `next_attempt_at` ≤ now), counted from when it became due: how
    /// far the workers are behind. `None` when nothing is due.
    pub oldest_due_age: Option<Duration>,
}

impl QueueStats {
    /// Messages not yet final: what `limits.max_queue_depth` bounds.
    pub fn depth(&self) -> u64 {
        self.by_status
            .iter()
            .filter(|(status, _)| !status.is_final())
            .map(|(_, n)| n)
            .sum()
    }
}

/// Which leases [`crate::Store::reclaim`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leases<'a> {
    /// Those that ran out (event `lease_expired`).
    Expired,
    /// Every lease held by this owner, expired or not: a restarted node's
    /// own, left by its previous run (event `lease_reclaimed`).
    OwnedBy(&'a str),
    /// Every lease: at the start of the only process that may use the
    /// store (event `lease_reclaimed`).
    All,
}

/// Settings a backend applies to every operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// A message whose lease ends this many times in a row without an
    /// attempt being recorded is failed as a poison message.
    pub max_lost_leases: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { max_lost_leases: 3 }
    }
}

/// What [`crate::Store::record_attempt_counted`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The message's new status.
    pub status: MessageStatus,
    /// Suppression entries the attempt added (addresses not yet listed).
    pub suppressed: u32,
}

/// What [`crate::Store::purge`] deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Final messages last changed before this instant.
    pub messages_before: OffsetDateTime,
    /// Idempotency records made before this instant.
    pub keys_before: OffsetDateTime,
    /// Feed entries (see [`FeedEntry`]) older than this instant.
    pub feed_before: OffsetDateTime,
    /// At most this many messages (and this many keys) per call.
    pub limit: usize,
}

/// What one [`crate::Store::purge`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Messages, with everything of theirs.
    pub messages: u64,
    /// Idempotency records.
    pub keys: u64,
    /// Feed entries.
    pub feed: u64,
}

/// One entry of the feed through which nodes sharing a store tell each
/// other what they saw (the failures and attempt counts that error groups
/// and alert rules are made of). The store keeps `body` as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    /// When it happened, by the writing node's clock.
    pub at: OffsetDateTime,
    /// The node that wrote it.
    pub node: String,
    /// What happened, in the writer's own format (JSON for herald).
    pub body: String,
}

/// A position in the feed: entries are read in this order, and an entry
/// that becomes visible later never sorts before one already read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FeedCursor {
    /// The writing transaction's position (0 where commits are already in
    /// order, as with one writer).
    pub tx: u64,
    /// The entry's own number within it.
    pub id: i64,
}

/// An entry read from the feed, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRecord {
    /// Where it is; pass the last one read to read on.
    pub cursor: FeedCursor,
    /// The entry.
    pub entry: FeedEntry,
}
