//! The suppression list and the webhook delivery log, as the API shows
//! them: `/v1/suppressions` and `/v1/webhooks/deliveries`.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::message::{DeliveryOutcome, SuppressionReason};

/// Most addresses one `POST /v1/suppressions` may carry.
pub const MAX_ADDRESSES: usize = 1000;

/// One entry of the suppression list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// The address (the domain in lower case, the local part as written).
    pub address: String,
    /// Why it is on the list.
    pub reason: SuppressionReason,
    /// The herald id of the message whose failure added it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The SMTP reply that added it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// When it was added.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it lapses, if ever.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// One page of `GET /v1/suppressions`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressionPage {
    /// The entries that hold now.
    pub suppressions: Vec<Suppression>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// The body of `POST /v1/suppressions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddSuppressions {
    /// The addresses, 1 to [`MAX_ADDRESSES`].
    pub addresses: Vec<String>,
    /// Why (default `manual`).
    #[serde(default = "manual")]
    pub reason: SuppressionReason,
    /// When the entries lapse, if ever.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

fn manual() -> SuppressionReason {
    SuppressionReason::Manual
}

/// What became of one address of [`AddSuppressions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddStatus {
    /// Put on the list.
    Added,
    /// Already on it; left as it was.
    Exists,
    /// Not an address.
    Invalid,
}

/// One address's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddResult {
    /// The address as given.
    pub address: String,
    /// What became of it.
    pub status: AddStatus,
    /// The entry now on the list (added or existing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppression: Option<Suppression>,
    /// Why the address is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer to [`AddSuppressions`]: one result per address, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddResults {
    /// The results.
    pub results: Vec<AddResult>,
}

/// The type of a webhook event (its payload's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WebhookEventType {
    /// A recipient's relay accepted the message.
    #[serde(rename = "message.delivered")]
    MessageDelivered,
    /// A recipient failed for now.
    #[serde(rename = "message.deferred")]
    MessageDeferred,
    /// A recipient was refused for good.
    #[serde(rename = "message.bounced")]
    MessageBounced,
    /// A recipient was not sent to: suppressed.
    #[serde(rename = "message.suppressed")]
    MessageSuppressed,
    /// herald gave up on a recipient.
    #[serde(rename = "message.failed")]
    MessageFailed,
    /// An address was put on the suppression list.
    #[serde(rename = "suppression.added")]
    SuppressionAdded,
    /// An address was taken off the list.
    #[serde(rename = "suppression.removed")]
    SuppressionRemoved,
}

impl WebhookEventType {
    /// The name on the wire.
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
}

impl fmt::Display for WebhookEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One try to deliver an event to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// The try's id.
    pub id: i64,
    /// The endpoint's configured name.
    pub webhook: String,
    /// The event's id (its `webhook-id`).
    pub event_id: String,
    /// The event's type.
    pub event_type: WebhookEventType,
    /// 1 for the event's first try at this endpoint.
    pub attempt: u32,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The HTTP status answered, if any.
    pub http_status: Option<u16>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// What it came to.
    pub outcome: DeliveryOutcome,
}

/// One page of `GET /v1/webhooks/deliveries`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDeliveryPage {
    /// The tries.
    pub deliveries: Vec<WebhookDelivery>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// Why and since when an endpoint is disabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDisabled {
    /// When it was disabled.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Why, in words.
    pub reason: String,
    /// The try that disabled it: `POST /v1/webhooks/deliveries/{id}/retry`
    /// with it (or any try of the endpoint) enables the endpoint again if
    /// it succeeds.
    pub delivery: Option<i64>,
}

/// One configured endpoint, as `GET /v1/webhooks` shows it (never its URL,
/// which may hold a token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    /// Its configured name.
    pub name: String,
    /// The event types it gets; `null`: every type.
    pub events: Option<Vec<WebhookEventType>>,
    /// Whether events are sent to it.
    pub enabled: bool,
    /// Set while it is disabled (it answered `410 Gone`).
    pub disabled: Option<WebhookDisabled>,
}

/// The answer of `GET /v1/webhooks`: every configured endpoint, in
/// configuration order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookList {
    /// The endpoints.
    pub webhooks: Vec<WebhookEndpoint>,
}
