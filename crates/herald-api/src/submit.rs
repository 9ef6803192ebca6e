//! Sending: the bodies of `POST /v1/messages/batch` and
//! `POST /v1/messages/raw`, and what accepting a message answers. The
//! body of `POST /v1/messages` is [`MessageRequest`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{MessageRequest, MessageStatus, Problem};

/// `202 Accepted`: the message is committed to the queue (also one
/// accepted item of a batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// herald's id for it, as in `/v1/messages/{id}`.
    pub id: String,
    /// Its state: `queued`, or `scheduled` when `send_at` lies ahead (a
    /// repeated request answers the state it has now).
    pub status: MessageStatus,
    /// The `Message-ID` header it will be sent with, angle brackets
    /// included: `<id@domain>`.
    pub message_id: String,
}

/// The body of `POST /v1/messages/batch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The messages, each as the body of `POST /v1/messages`.
    pub messages: Vec<MessageRequest>,
}

/// The answer to a batch: one result per message, in the request's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAnswer {
    /// The results, item `i` for message `i`.
    pub results: Vec<BatchResult>,
}

/// One message of a batch: accepted, or refused with its problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BatchResult {
    /// Queued, as `POST /v1/messages` would have answered.
    Accepted(Accepted),
    /// Refused; nothing of it was stored.
    Error {
        /// Why, as the whole request would have been refused.
        error: Problem,
    },
}

/// The body of `POST /v1/messages/raw`: a message the client rendered
/// itself, with its envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequest {
    /// The envelope sender (reverse-path), `local@domain`. Required.
    #[serde(default)]
    pub from: Option<String>,
    /// The envelope recipients. At least one.
    #[serde(default)]
    pub to: Vec<String>,
    /// The RFC 5322 message, base64 (white space ignored). Required.
    #[serde(default)]
    pub raw: Option<String>,
    /// Tags, added to those of its `X-Herald-Tags` header.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Metadata, kept with the message and shown in its answers.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Send no earlier than this (RFC 3339); now when absent.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub send_at: Option<OffsetDateTime>,
}
