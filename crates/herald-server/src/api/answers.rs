//! The JSON the API answers with, exactly as api.md shows it, built from
//! store records. Kept apart from the handlers so the contract is in one
//! place (and docs/openapi.yaml can be checked against it).

use std::collections::BTreeMap;

use herald_store::{Event, MessageRecord, RecipientRecord};
use serde::Serialize;
use time::OffsetDateTime;

/// `202` to `POST /v1/messages`, and one batch result.
#[derive(Debug, Serialize)]
pub(crate) struct Created {
    pub(crate) id: String,
    pub(crate) status: String,
    pub(crate) message_id: String,
}

/// A message, as `GET /v1/messages/{id}` shows it (list views omit events).
#[derive(Debug, Serialize)]
pub(crate) struct MessageView {
    id: String,
    message_id: String,
    status: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    send_at: Option<OffsetDateTime>,
    attempts: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    next_attempt_at: Option<OffsetDateTime>,
    recipients: Vec<RecipientRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<Event>>,
    tags: Vec<String>,
    metadata: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
    /// The name of the API key that queued it.
    #[serde(skip_serializing_if = "Option::is_none")]
    submitted_by: Option<String>,
}

impl MessageView {
    pub(crate) fn full(record: MessageRecord) -> Self {
        Self::build(record, true)
    }

    pub(crate) fn summary(record: MessageRecord) -> Self {
        Self::build(record, false)
    }

    fn build(record: MessageRecord, with_events: bool) -> Self {
        Self {
            id: record.id,
            message_id: record.message_id,
            status: record.status.to_string(),
            created_at: record.created_at,
            updated_at: record.updated_at,
            send_at: record.send_at,
            attempts: record.attempts,
            next_attempt_at: record.next_attempt_at,
            recipients: record.recipients,
            events: with_events.then_some(record.events),
            tags: record.tags,
            metadata: record.metadata,
            trace_id: record.trace_id,
            submitted_by: record.submitted_by,
        }
    }
}

/// `GET /v1/messages`.
#[derive(Debug, Serialize)]
pub(crate) struct ListView {
    pub(crate) messages: Vec<MessageView>,
    pub(crate) next_cursor: Option<String>,
}

/// One item of a batch answer: the created message or its problem.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum BatchItem {
    Created(Created),
    Error { error: super::Problem },
}

/// `POST /v1/messages/batch`.
#[derive(Debug, Serialize)]
pub(crate) struct BatchView {
    pub(crate) results: Vec<BatchItem>,
}
