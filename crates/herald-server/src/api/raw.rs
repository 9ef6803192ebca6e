//! `POST /v1/messages/raw`: a message the client rendered itself (RFC
//! 5322, base64 in JSON) with its envelope, queued as the SMTP listener
//! queues it, with the validation, idempotency and `202` of
//! `POST /v1/messages`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use herald_api::RawRequest;
use herald_message::{FieldError, MessageRequest, new_id};
use herald_store::{Idempotency, NewMessage};
use time::OffsetDateTime;

use super::messages::{
    Accepted, body_bytes, idempotency_key, idempotency_of, in_accept_span, json_object, store_one,
};
use super::{ApiKeyName, AppState, Problem};
use crate::observe::metrics::AcceptSource;
use crate::submission::raw;
use crate::trace::TraceId;

/// `POST /v1/messages/raw`.
pub(crate) async fn create(
    State(state): State<AppState>,
    key: Option<Extension<ApiKeyName>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Accepted, Problem> {
    let submitter = key.map(|Extension(ApiKeyName(name))| name);
    let headers = &headers;
    in_accept_span(headers, "/v1/messages/raw", |trace| async move {
        let body = body_bytes(body)?;
        let key = idempotency_key(headers)?;
        let request: RawRequest = json_object(&body)?;
        let idempotency = idempotency_of(key, &request)?;
        let new = prepare(
            &state,
            request,
            idempotency,
            state.clock.now(),
            &trace,
            submitter,
        )?;
        store_one(&state, new, trace, AcceptSource::Raw).await
    })
    .await
}

fn field_error(field: &str, message: impl Into<String>) -> Problem {
    Problem::validation(vec![FieldError {
        field: field.to_owned(),
        message: message.into(),
    }])
}

/// Validates the envelope, tags, metadata and `send_at` by the rules of
/// `POST /v1/messages` (same field names in the errors), then prepares
/// the bytes as the SMTP listener does.
fn prepare(
    state: &AppState,
    request: RawRequest,
    idempotency: Option<Idempotency>,
    now: OffsetDateTime,
    trace: &TraceId,
    submitter: Option<String>,
) -> Result<NewMessage, Problem> {
    // The envelope goes through the API's own validation: a message
    // request with these addresses, tags, metadata and time, and a body
    // that is not used.
    let check = MessageRequest {
        from: request.from,
        to: request.to,
        text: Some(String::new()),
        tags: request.tags,
        metadata: request.metadata,
        send_at: request.send_at,
        ..MessageRequest::default()
    };
    let message = check
        .validate(&state.limits().message)
        .map_err(|errors| Problem::validation(errors.errors().to_vec()))?;
    let Some(raw) = request.raw.filter(|r| !r.trim().is_empty()) else {
        return Err(field_error("raw", "is required"));
    };
    let cleaned: String = raw.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = BASE64
        .decode(cleaned.as_bytes())
        .map_err(|_| field_error("raw", "is not valid base64"))?;
    if bytes.len() > state.limits().max_message_bytes {
        return Err(Problem::too_large(format!(
            "the message is {} bytes; the limit is {}",
            bytes.len(),
            state.limits().max_message_bytes
        )));
    }
    let id = new_id();
    let prepared = raw::prepare(&bytes, &id, Some(message.from()), now)
        .map_err(|raw::RawError(why)| field_error("raw", why))?;
    if prepared.bytes.len() > state.limits().max_message_bytes {
        return Err(Problem::too_large(format!(
            "the message is {} bytes with the headers herald adds; the limit is {}",
            prepared.bytes.len(),
            state.limits().max_message_bytes
        )));
    }
    let mut tags = message.tags().to_vec();
    for tag in prepared.tags {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    if tags.len() > state.limits().message.max_tags {
        return Err(field_error(
            "tags",
            format!(
                "too many tags with those of {} (at most {})",
                raw::TAGS_HEADER,
                state.limits().message.max_tags
            ),
        ));
    }
    let envelope = message.envelope();
    let smtputf8 = prepared.utf8_headers
        || message.from().needs_smtputf8()
        || envelope.recipients().iter().any(|r| r.needs_smtputf8());
    Ok(NewMessage {
        id,
        message_id: prepared.message_id,
        created_at: now,
        send_at: message.send_at(),
        sender: Some(message.from().address().to_owned()),
        recipients: envelope
            .recipients()
            .iter()
            .map(|r| r.address().to_owned())
            .collect(),
        rendered: prepared.bytes,
        smtputf8,
        tags,
        metadata: message.metadata().clone(),
        trace_id: Some(trace.to_string()),
        submitted_by: submitter,
        template: None,
        idempotency,
    })
}
