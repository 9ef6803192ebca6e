//! The webhook outbox: the events an application hears about, written in
//! the same transaction as the change that causes them, so a crash loses
//! none. Which events a change makes, and their bodies (the Standard
//! Webhooks payload: `type`, `timestamp`, `data`), are decided here;
//! backends only store and read them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{FeedCursor, RecipientResult, RecipientStatus, Suppression};

/// What an event reports (its `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WebhookEventType {
    /// A recipient's relay accepted the message.
    #[serde(rename = "message.delivered")]
    MessageDelivered,
    /// A recipient failed for now; it will be tried again.
    #[serde(rename = "message.deferred")]
    MessageDeferred,
    /// A recipient failed for good (a permanent reply).
    #[serde(rename = "message.bounced")]
    MessageBounced,
    /// A recipient was not sent to: the address is on the suppression list.
    #[serde(rename = "message.suppressed")]
    MessageSuppressed,
    /// herald gave up on a recipient: retries or age exhausted.
    #[serde(rename = "message.failed")]
    MessageFailed,
    /// An address was put on the suppression list.
    #[serde(rename = "suppression.added")]
    SuppressionAdded,
    /// An address was taken off the suppression list.
    #[serde(rename = "suppression.removed")]
    SuppressionRemoved,
}

impl WebhookEventType {
    /// Every type.
    pub const ALL: [Self; 7] = [
        Self::MessageDelivered,
        Self::MessageDeferred,
        Self::MessageBounced,
        Self::MessageSuppressed,
        Self::MessageFailed,
        Self::SuppressionAdded,
        Self::SuppressionRemoved,
    ];

    /// The name in the payload, the configuration's `events` filter and
    /// the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageDelivered => "message.delivered",
            Self::MessageDeferred => "message.deferred",
            Self::MessageBounced => "message.bounced",
            Self::MessageSuppressed => "message.suppressed",
            Self::MessageFailed => "message.failed",
            Self::SuppressionAdded => "suppression.added",
            Self::SuppressionRemoved => "suppression.removed",
        }
    }

    /// The event a recipient's new state after an attempt makes, if any.
    pub fn of_recipient(status: RecipientStatus) -> Option<Self> {
        match status {
            RecipientStatus::Delivered => Some(Self::MessageDelivered),
            RecipientStatus::Deferred => Some(Self::MessageDeferred),
            RecipientStatus::Failed => Some(Self::MessageBounced),
            RecipientStatus::Suppressed => Some(Self::MessageSuppressed),
            RecipientStatus::Pending => None,
        }
    }
}

impl fmt::Display for WebhookEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WebhookEventType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown webhook event type {s:?}"))
    }
}

/// An event to write to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxEvent {
    /// Its type.
    pub kind: WebhookEventType,
    /// When it happened.
    pub at: OffsetDateTime,
    /// The herald id of the message it is about, if any.
    pub message: Option<String>,
    /// The payload, as sent (JSON).
    pub body: String,
}

/// An event read from the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Its position: read on from the last one to miss nothing.
    pub cursor: FeedCursor,
    /// Its id (the `webhook-id`), the same on every delivery of it.
    pub id: String,
    /// Its type.
    pub kind: WebhookEventType,
    /// When it happened.
    pub at: OffsetDateTime,
    /// The message it is about, if any.
    pub message: Option<String>,
    /// The payload.
    pub body: String,
}

/// What one attempt to deliver an event to an endpoint came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The endpoint answered 2xx.
    Delivered,
    /// It failed; the event will be sent again.
    Retrying,
    /// It failed, and the event is older than the endpoint's maximum age:
    /// given up.
    GaveUp,
    /// The endpoint answered 410 Gone: it is disabled.
    Disabled,
    /// A manual retry (`POST /v1/webhooks/deliveries/{id}/retry`) got no
    /// 2xx; nothing more is sent for it.
    Failed,
}

impl DeliveryOutcome {
    /// Every outcome.
    pub const ALL: [Self; 5] = [
        Self::Delivered,
        Self::Retrying,
        Self::GaveUp,
        Self::Disabled,
        Self::Failed,
    ];

    /// The name in the API, the database and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retrying => "retrying",
            Self::GaveUp => "gave_up",
            Self::Disabled => "disabled",
            Self::Failed => "failed",
        }
    }
}

impl FromStr for DeliveryOutcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("unknown delivery outcome {s:?}"))
    }
}

/// One attempt to deliver an event to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// The endpoint's configured name.
    pub endpoint: String,
    /// The event's id (`webhook-id`).
    pub event_id: String,
    /// The event's type.
    pub kind: WebhookEventType,
    /// 1 for the first try of this event at this endpoint.
    pub attempt: u32,
    /// When the try started.
    pub at: OffsetDateTime,
    /// The HTTP status answered, if any.
    pub http_status: Option<u16>,
    /// How long the try took.
    pub duration: std::time::Duration,
    /// What went wrong, if anything (never the URL).
    pub error: Option<String>,
    /// What it came to.
    pub outcome: DeliveryOutcome,
}

/// A [`WebhookDelivery`] as stored, with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDeliveryRecord {
    /// Its id: newer tries have larger ids.
    pub id: i64,
    /// The try.
    pub delivery: WebhookDelivery,
}

/// The message an attempt's events are about, as the payload shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContext<'a> {
    /// herald's id.
    pub id: &'a str,
    /// The Message-ID header.
    pub message_id: &'a str,
    /// Its tags.
    pub tags: &'a [String],
    /// Its metadata.
    pub metadata: &'a BTreeMap<String, String>,
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

fn envelope(kind: WebhookEventType, at: OffsetDateTime, data: Value) -> String {
    json!({"type": kind.as_str(), "timestamp": rfc3339(at), "data": data}).to_string()
}

/// The events an attempt makes: one per recipient result (delivered,
/// deferred, bounced, suppressed), then one `message.failed` per
/// recipient herald gave up on (`given_up`, still open when the message
/// ended), all at `at`.
pub fn attempt_events(
    message: &MessageContext<'_>,
    attempt: u32,
    results: &[RecipientResult],
    given_up: &[String],
    at: OffsetDateTime,
) -> Vec<NewOutboxEvent> {
    let data = |address: &str, result: Option<&RecipientResult>| {
        json!({
            "id": message.id,
            "message_id": message.message_id,
            "tags": message.tags,
            "metadata": message.metadata,
            "address": address,
            "smtp_code": result.and_then(|r| r.smtp_code),
            "enhanced_code": result.and_then(|r| r.enhanced_code.as_deref()),
            "response": result.and_then(|r| r.response.as_deref()),
            "class": result.and_then(|r| r.class).map(|c| c.as_str()),
            "attempt": attempt,
        })
    };
    let event = |kind, data| NewOutboxEvent {
        kind,
        at,
        message: Some(message.id.to_owned()),
        body: envelope(kind, at, data),
    };
    let mut events: Vec<NewOutboxEvent> = results
        .iter()
        .filter_map(|r| {
            let kind = WebhookEventType::of_recipient(r.status)?;
            Some(event(kind, data(&r.address, Some(r))))
        })
        .collect();
    for address in given_up {
        let last = results.iter().find(|r| &r.address == address);
        events.push(event(WebhookEventType::MessageFailed, data(address, last)));
    }
    events
}

/// The event of an entry added to or removed from the suppression list.
pub fn suppression_event(
    kind: WebhookEventType,
    entry: &Suppression,
    at: OffsetDateTime,
) -> NewOutboxEvent {
    let data = json!({
        "id": entry.message,
        "address": entry.address,
        "reason": entry.reason.as_str(),
        "response": entry.response,
        "created_at": rfc3339(entry.created_at),
        "expires_at": entry.expires_at.map(rfc3339),
    });
    NewOutboxEvent {
        kind,
        at,
        message: entry.message.clone(),
        body: envelope(kind, at, data),
    }
}

/// The `webhook-id` of the outbox event at `cursor`: stable across every
/// delivery of it.
pub fn event_id(cursor: FeedCursor) -> String {
    format!("evt_{}_{}", cursor.tx, cursor.id)
}

/// The outbox position an [`event_id`] names; `None` for text that is not
/// one.
pub fn event_cursor(id: &str) -> Option<FeedCursor> {
    let (tx, id) = id.strip_prefix("evt_")?.split_once('_')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(tx) || !digits(id) {
        return None;
    }
    Some(FeedCursor {
        tx: tx.parse().ok()?,
        id: id.parse().ok()?,
    })
}

/// An endpoint herald stopped sending to because it answered `410 Gone`.
/// Kept in the store, so it stays disabled across restarts, until a
/// manual retry to it succeeds or its URL changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisabledWebhook {
    /// The endpoint's configured name.
    pub endpoint: String,
    /// A digest of the URL that answered 410 (never the URL itself, which
    /// may hold a token): the same name at another URL is another
    /// endpoint, and is not disabled.
    pub url_digest: String,
    /// When it was disabled.
    pub at: OffsetDateTime,
    /// Why, in words.
    pub reason: String,
    /// The try that disabled it (`GET /v1/webhooks/deliveries`), if
    /// recorded: retrying it is how an operator turns the endpoint back on.
    pub delivery: Option<i64>,
}

/// What [`crate::Store::purge_events`] deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRetention {
    /// Outbox events written before this instant…
    pub outbox_before: OffsetDateTime,
    /// …that every one of these endpoints has passed (delivered, given up
    /// or filtered out: at or before its cursor). An endpoint without a
    /// cursor has passed nothing; none listed: every old event goes.
    pub endpoints: Vec<String>,
    /// Webhook delivery tries made before this instant.
    pub deliveries_before: OffsetDateTime,
    /// Suppression entries that lapsed (`expires_at`) before this instant.
    pub lapsed_before: OffsetDateTime,
    /// At most this many of each per call.
    pub limit: usize,
}

/// What one [`crate::Store::purge_events`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgedEvents {
    /// Outbox events.
    pub events: u64,
    /// Webhook delivery tries.
    pub deliveries: u64,
    /// Lapsed suppression entries.
    pub suppressions: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use herald_policy::BounceClass;
    use time::macros::datetime;

    #[test]
    fn an_attempt_makes_one_event_per_recipient_and_one_per_give_up() {
        let metadata = BTreeMap::from([("user_id".to_owned(), "42".to_owned())]);
        let tags = vec!["welcome".to_owned()];
        let message = MessageContext {
            id: "01M",
            message_id: "<01M@x>",
            tags: &tags,
            metadata: &metadata,
        };
        let result = |address: &str, status, code| RecipientResult {
            address: address.to_owned(),
            status,
            smtp_code: Some(code),
            enhanced_code: None,
            response: Some("r".to_owned()),
            class: (code >= 400).then_some(BounceClass::InvalidRecipient),
        };
        let at = datetime!(2030-01-01 00:00 UTC);
        let events = attempt_events(
            &message,
            3,
            &[
                result("a@x", RecipientStatus::Delivered, 250),
                result("b@x", RecipientStatus::Failed, 550),
                result("c@x", RecipientStatus::Deferred, 451),
            ],
            &["c@x".to_owned()],
            at,
        );
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "message.delivered",
                "message.bounced",
                "message.deferred",
                "message.failed"
            ]
        );
        let body: Value = serde_json::from_str(&events[1].body).unwrap();
        assert_eq!(body["type"], "message.bounced");
        assert_eq!(body["timestamp"], "2030-01-01T00:00:00Z");
        assert_eq!(body["data"]["id"], "01M");
        assert_eq!(body["data"]["message_id"], "<01M@x>");
        assert_eq!(body["data"]["tags"][0], "welcome");
        assert_eq!(body["data"]["metadata"]["user_id"], "42");
        assert_eq!(body["data"]["address"], "b@x");
        assert_eq!(body["data"]["smtp_code"], 550);
        assert_eq!(body["data"]["class"], "invalid_recipient");
        assert_eq!(body["data"]["attempt"], 3);
    }

    #[test]
    fn event_ids_name_their_cursor() {
        let cursor = FeedCursor { tx: 812, id: 77 };
        assert_eq!(event_cursor(&event_id(cursor)), Some(cursor));
        for bad in [
            "", "evt_", "evt_1", "evt_1_", "evt__2", "evt_-1_2", "evt_1_2x", "msg_1_2",
        ] {
            assert_eq!(event_cursor(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        for kind in WebhookEventType::ALL {
            assert_eq!(kind.as_str().parse::<WebhookEventType>(), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
        }
    }
}
