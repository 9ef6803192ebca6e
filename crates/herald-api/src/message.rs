//! A message as the API shows it (`GET /v1/messages/{id}`, the list, and
//! the answers of retry and cancel), and the names of its states. The
//! names are spelled as in the logs, the metrics and the webhooks.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A name that is not one of an enum's: what `FromStr` refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// What the names were of (`status`, `event type`, …).
    pub what: &'static str,
    /// The name given.
    pub name: String,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}", self.what, self.name)
    }
}

impl std::error::Error for UnknownName {}

/// An enum of names: serde in snake_case, `ALL`, `as_str`, `Display` and
/// `FromStr`, all from one list so that they cannot disagree.
macro_rules! names {
    (
        $(#[$meta:meta])*
        $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every name, in the order of the API's documentation.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The name on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // pad, not write_str: tables give it a width.
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownName { what: $what, name: s.to_owned() })
            }
        }
    };
}

names! {
    /// A message's state.
    MessageStatus ("status") {
        /// `send_at` lies in the future.
        Scheduled = "scheduled",
        /// Waiting for its first attempt.
        Queued = "queued",
        /// Being sent by a worker.
        Sending = "sending",
        /// Waiting for a retry at `next_attempt_at`.
        Deferred = "deferred",
        /// Final: every recipient accepted.
        Delivered = "delivered",
        /// Final: some recipients accepted, the others failed.
        Partial = "partial",
        /// Final: no recipient accepted.
        Failed = "failed",
        /// Final: stopped by a user.
        Cancelled = "cancelled",
    }
}

impl MessageStatus {
    /// Whether nothing more will happen to the message on its own.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Delivered | Self::Partial | Self::Failed | Self::Cancelled
        )
    }
}

names! {
    /// A recipient's state.
    RecipientStatus ("recipient status") {
        /// Not tried yet.
        Pending = "pending",
        /// Failed transiently; will be retried.
        Deferred = "deferred",
        /// Accepted by the relay.
        Delivered = "delivered",
        /// Refused for good (or retries exhausted, or cancelled).
        Failed = "failed",
        /// Not sent on purpose: the address is on the suppression list.
        Suppressed = "suppressed",
    }
}

names! {
    /// What a failed or deferred recipient's reply means (docs/webhooks.md).
    BounceClass ("bounce class") {
        /// The address does not exist (5.1.x).
        InvalidRecipient = "invalid_recipient",
        /// Over quota (4.2.2 / 5.2.2).
        MailboxFull = "mailbox_full",
        /// The receiver's policy: spam, reputation, authentication, relaying.
        Policy = "policy",
        /// The message itself: content, headers, size.
        Message = "message",
        /// Throttled.
        RateLimited = "rate_limited",
        /// Connection, TLS or timeout: no answer about the recipient.
        Network = "network",
        /// The relay refused herald's credentials.
        Auth = "auth",
        /// Anything else.
        Other = "other",
    }
}

names! {
    /// Why an address is on the suppression list.
    SuppressionReason ("suppression reason") {
        /// A permanent failure of a class `[suppression] auto` names.
        Bounce = "bounce",
        /// The recipient complained.
        Complaint = "complaint",
        /// Added by a user.
        Manual = "manual",
    }
}

names! {
    /// What one try to deliver a webhook event came to.
    DeliveryOutcome ("delivery outcome") {
        /// The endpoint answered 2xx.
        Delivered = "delivered",
        /// It failed; the event will be sent again.
        Retrying = "retrying",
        /// It failed and the event is older than `retry_max_age`.
        GaveUp = "gave_up",
        /// The endpoint answered 410 Gone and is disabled.
        Disabled = "disabled",
        /// A manual retry got no 2xx; nothing more is sent for it.
        Failed = "failed",
    }
}

names! {
    /// What an event in a message's history records (its `type`).
    EventKind ("event type") {
        /// Accepted, due at once.
        Queued = "queued",
        /// Accepted, due at `send_at`.
        Scheduled = "scheduled",
        /// One delivery attempt (relay, outcome, codes, duration).
        Attempt = "attempt",
        /// Recipients remain deferred; the next attempt is scheduled.
        Deferred = "deferred",
        /// Final: every recipient accepted.
        Delivered = "delivered",
        /// Final: some recipients accepted, the others failed.
        Partial = "partial",
        /// Final: no recipient accepted.
        Failed = "failed",
        /// Stopped by a user.
        Cancelled = "cancelled",
        /// Failed recipients put back in the queue by a user.
        Retried = "retried",
        /// A worker's lease ran out before it recorded an attempt; the
        /// message is due again.
        LeaseExpired = "lease_expired",
        /// A restarted node took back a lease it held when it stopped; the
        /// message is due again at once.
        LeaseReclaimed = "lease_reclaimed",
    }
}

names! {
    /// What one attempt came to, over all the recipients it tried.
    AttemptOutcome ("attempt outcome") {
        /// Every recipient accepted.
        Delivered = "delivered",
        /// Some accepted; the others refused or deferred.
        Partial = "partial",
        /// Nobody accepted, and every recipient is to be retried.
        Transient = "transient",
        /// Nobody accepted, and nobody is to be retried.
        Permanent = "permanent",
        /// The relay failed as a whole (connect, TLS, AUTH, a dropped
        /// session, a timeout): no recipient got an answer of its own.
        Error = "error",
    }
}

/// A message: its state, its recipients' states and (in the answers about
/// one message) its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// herald's id for it (a ULID), as in `/v1/messages/{id}`.
    pub id: String,
    /// Its `Message-ID` header, angle brackets included: `<id@domain>`.
    pub message_id: String,
    /// Its state.
    pub status: MessageStatus,
    /// When it was accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When its state last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When it was asked to be sent, if it was scheduled (absent otherwise).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub send_at: Option<OffsetDateTime>,
    /// How many delivery attempts were made.
    pub attempts: u32,
    /// When the next attempt is due (`null` when none is planned).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// Every envelope recipient and its state.
    pub recipients: Vec<Recipient>,
    /// The history, oldest first: present when one message is shown,
    /// absent in a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Event>>,
    /// The tags it was sent with.
    pub tags: Vec<String>,
    /// The metadata it was sent with.
    pub metadata: BTreeMap<String, String>,
    /// The trace it was accepted in (W3C trace id, 32 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The name of the API key that queued it (absent for SMTP submission
    /// without a named user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<String>,
    /// The stored template it was rendered from (`null` when none).
    #[serde(default)]
    pub template: Option<String>,
    /// The version of that template that rendered it (`null` when none).
    #[serde(default)]
    pub template_version: Option<u32>,
}

/// One envelope recipient's latest state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address, `local@domain`.
    pub address: String,
    /// Its state.
    pub status: RecipientStatus,
    /// The last SMTP reply code for it (`null` before any).
    pub smtp_code: Option<u16>,
    /// The last enhanced status code, such as `5.1.1` (`null` if none).
    pub enhanced_code: Option<String>,
    /// The last reply text or error (`null` if none).
    pub response: Option<String>,
    /// What the last failure means, for a failed or deferred recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<BounceClass>,
}

/// One entry of a message's history. Fields that do not apply to its
/// kind are absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The relay, for attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
    /// The attempt's number (from 1), for attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The attempt's outcome, for attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AttemptOutcome>,
    /// The SMTP reply code, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_code: Option<u16>,
    /// The enhanced status code, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enhanced_code: Option<String>,
    /// A one-line description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// How long the attempt took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The class of the attempt's failure, for attempts that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<BounceClass>,
}

/// One page of `GET /v1/messages`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePage {
    /// The messages, without their events.
    pub messages: Vec<Message>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}
