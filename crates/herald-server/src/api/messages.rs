//! The `/v1/messages` handlers. A message is validated and rendered here,
//! committed by the store, and only then acknowledged; any error answer
//! means nothing was stored.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use herald_api::{Accepted as AcceptedBody, ListQuery, MAX_LIST_LIMIT, Message, MessagePage};
use herald_message::{
    HeaderName, HeaderValue, MessageRequest, RenderOptions, message_id_for, new_id,
};
use herald_store::{Enqueued, Idempotency, ListFilter, NewMessage, StoreError, TemplateRef};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use tracing::Instrument as _;

use crate::trace::export::{EXPORT_TARGET, continue_request};
use crate::trace::{TRACE_HEADER, TraceId, TraceParent};

use super::ApiKeyName;
use super::{AppState, Problem, answers, templates};
use crate::observe::metrics::AcceptSource;

const MAX_IDEMPOTENCY_KEY: usize = 255;
const DEFAULT_LIST_LIMIT: usize = 50;

/// What `POST /v1/messages` and `POST /v1/messages/raw` answer.
pub(super) type Accepted = (StatusCode, TraceHeader, Json<AcceptedBody>);

/// `POST /v1/messages`.
pub(crate) async fn create(
    State(state): State<AppState>,
    key: Option<Extension<ApiKeyName>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Accepted, Problem> {
    let submitter = key.map(|Extension(ApiKeyName(name))| name);
    let headers = &headers;
    in_accept_span(headers, "/v1/messages", |trace| async move {
        let body = body_bytes(body)?;
        let key = idempotency_key(headers)?;
        let mut request: MessageRequest = json_object(&body)?;
        // The key's hash is of the request as sent (template and
        // variables), not of what they rendered to.
        let idempotency = idempotency_of(key, &request)?;
        let made_by = templates::Cache::default()
            .expand(&state, &mut request)
            .await?;
        let mut new = prepare(
            &state,
            &request,
            idempotency,
            state.clock.now(),
            &trace,
            submitter.as_deref(),
        )?;
        record_template(&mut new, made_by);
        store_one(&state, new, trace, AcceptSource::Api).await
    })
    .await
}

/// Runs the accepting of one message in its request's span (continuing
/// the caller's trace), and records the outcome on the span.
pub(super) async fn in_accept_span<F, Fut>(
    headers: &HeaderMap,
    route: &'static str,
    accept: F,
) -> Result<Accepted, Problem>
where
    F: FnOnce(TraceId) -> Fut,
    Fut: Future<Output = Result<Accepted, Problem>>,
{
    let (trace, span) = accept_span(headers, route);
    let answer = accept(trace).instrument(span.clone()).await;
    match &answer {
        Ok((status, _, Json(created))) => {
            span.record("id", created.id.as_str());
            span.record("http.response.status_code", status.as_u16());
        }
        Err(problem) => record_problem(&span, problem),
    }
    answer
}

/// The idempotency of a request under `key`: the key with a hash of the
/// request as parsed. "The same body" means the same request, however it
/// is spelled: key order, white space and escapes do not make a retry a
/// new request.
pub(super) fn idempotency_of<T: serde::Serialize>(
    key: Option<String>,
    request: &T,
) -> Result<Option<Idempotency>, Problem> {
    let Some(key) = key else {
        return Ok(None);
    };
    let canonical = serde_json::to_vec(request).map_err(|_| Problem::internal())?;
    Ok(Some(Idempotency {
        key,
        request_hash: hex_sha256(&canonical),
    }))
}

/// What follows a new message's commit, whichever way it came: it is
/// counted, the dispatcher woken, and a log line written.
pub(crate) fn queued(state: &AppState, id: &str, trace: &TraceId, source: AcceptSource) {
    state.metrics.accepted(source, 1);
    state.wake.notify_one();
    tracing::info!(id, trace_id = %trace, source = source.as_str(), "message queued");
}

/// Stores one prepared message and answers `202`: with the first answer
/// if its idempotency key already has one (even when the queue is full),
/// `429` if the queue is full, otherwise once it is committed (then
/// counted, logged and the dispatcher woken).
pub(super) async fn store_one(
    state: &AppState,
    new: NewMessage,
    trace: TraceId,
    source: AcceptSource,
) -> Result<Accepted, Problem> {
    let replay = async {
        match &new.idempotency {
            Some(idempotency) => state.store.replay(idempotency, new.created_at).await,
            None => Ok(None),
        }
    };
    if let Some(first) = admit_or_replay(state, 1, replay).await? {
        return Ok((
            StatusCode::ACCEPTED,
            TraceHeader(trace),
            Json(created(first)),
        ));
    }
    let enqueued = state.store.enqueue(new).await?;
    if enqueued.created {
        queued(state, &enqueued.id, &trace, source);
    }
    Ok((
        StatusCode::ACCEPTED,
        TraceHeader(trace),
        Json(created(enqueued)),
    ))
}

/// The `202` body for a stored (or replayed) message.
pub(super) fn created(enqueued: Enqueued) -> AcceptedBody {
    answers::accepted(enqueued)
}

/// `GET /v1/messages/{id}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Message>, Problem> {
    let record = state.store.get(&id).await?.ok_or_else(Problem::not_found)?;
    Ok(Json(answers::full(record)))
}

/// `GET /v1/messages`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<MessagePage>, Problem> {
    let filter = list_filter(list_query(&query)?);
    let page = state.store.list(&filter).await?;
    Ok(Json(MessagePage {
        messages: page.messages.into_iter().map(answers::summary).collect(),
        next_cursor: page.next_after_id,
    }))
}

/// `POST /v1/messages/{id}/retry`.
pub(crate) async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Message>, Problem> {
    let record = state.store.retry(&id, state.clock.now()).await?;
    state.wake.notify_one();
    tracing::info!(id = %id, "retry requested");
    Ok(Json(answers::full(record)))
}

/// `POST /v1/messages/{id}/cancel`.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Message>, Problem> {
    let record = state.store.cancel(&id, state.clock.now()).await?;
    state.metrics.finished(record.status);
    tracing::info!(id = %id, "message cancelled");
    Ok(Json(answers::full(record)))
}

/// The request's trace (from a valid `traceparent`, or a new one) and its
/// `accept` span, exported only (see [`crate::trace::export`]), in that
/// trace and, with a `traceparent`, a child of the caller's span.
pub(super) fn accept_span(headers: &HeaderMap, route: &'static str) -> (TraceId, tracing::Span) {
    let parent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let trace = parent
        .as_ref()
        .map(|p| p.trace.clone())
        .unwrap_or_else(TraceId::generate);
    let span = tracing::info_span!(
        target: EXPORT_TARGET,
        "accept",
        otel.kind = "server",
        http.route = route,
        trace_id = %trace,
        id = tracing::field::Empty,
        messages = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    );
    continue_request(&span, &trace, parent.as_ref());
    (trace, span)
}

/// A refused request: its status, and an error status for server faults.
pub(super) fn record_problem(span: &tracing::Span, problem: &Problem) {
    span.record("http.response.status_code", problem.status);
    if problem.status >= 500 {
        span.record("otel.status_code", "error");
        span.record("otel.status_description", problem.title);
    }
}

/// `X-Herald-Trace-Id` for the rendered mail.
fn trace_header(trace: &TraceId) -> Vec<(HeaderName, HeaderValue)> {
    match (
        HeaderName::new(TRACE_HEADER),
        HeaderValue::new(trace.as_str()),
    ) {
        (Ok(name), Ok(value)) => vec![(name, value)],
        _ => Vec::new(),
    }
}

/// Answers carry the trace id of the request as `X-Herald-Trace-Id`.
pub(crate) struct TraceHeader(pub(crate) TraceId);

impl axum::response::IntoResponseParts for TraceHeader {
    type Error = std::convert::Infallible;

    fn into_response_parts(
        self,
        mut res: axum::response::ResponseParts,
    ) -> Result<axum::response::ResponseParts, Self::Error> {
        if let Ok(value) = axum::http::HeaderValue::from_str(self.0.as_str()) {
            res.headers_mut().insert(TRACE_HEADER, value);
        }
        Ok(res)
    }
}

pub(super) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Problem> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::too_large("request body larger than the configured limit")
        } else {
            Problem::malformed(rejection.body_text())
        }
    })
}

/// Parses a request body that must be a JSON object. serde would also
/// build a struct from a positional array (`[]` as an empty message),
/// which is not the schema.
pub(super) fn json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Problem::malformed("the body must be a JSON object"));
    }
    serde_json::from_slice(body).map_err(|e| Problem::malformed(e.to_string()))
}

pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = raw
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty()
                && k.len() <= MAX_IDEMPOTENCY_KEY
                && k.chars().all(|c| c.is_ascii_graphic())
        })
        .ok_or_else(|| {
            Problem::malformed("Idempotency-Key must be 1 to 255 visible ASCII characters")
        })?;
    Ok(Some(key.to_owned()))
}

/// Validates and renders one request into what the store keeps.
pub(super) fn prepare(
    state: &AppState,
    request: &MessageRequest,
    idempotency: Option<Idempotency>,
    now: OffsetDateTime,
    trace: &TraceId,
    submitter: Option<&str>,
) -> Result<NewMessage, Problem> {
    let message = request
        .validate(&state.limits().message)
        .map_err(|errors| Problem::validation(errors.errors().to_vec()))?;
    let id = new_id();
    let rendered = message.render(&RenderOptions {
        message_id: message_id_for(&id, message.from()),
        date: now,
        extra_headers: trace_header(trace),
    });
    if rendered.bytes.len() > state.limits().max_message_bytes {
        return Err(Problem::too_large(format!(
            "the rendered message is {} bytes; the limit is {}",
            rendered.bytes.len(),
            state.limits().max_message_bytes
        )));
    }
    let envelope = message.envelope();
    Ok(NewMessage {
        id,
        message_id: rendered.message_id,
        created_at: now,
        send_at: message.send_at(),
        sender: envelope.sender().map(|s| s.address().to_owned()),
        recipients: envelope
            .recipients()
            .iter()
            .map(|r| r.address().to_owned())
            .collect(),
        rendered: rendered.bytes,
        smtputf8: rendered.smtputf8,
        tags: message.tags().to_vec(),
        metadata: message.metadata().clone(),
        trace_id: Some(trace.to_string()),
        submitted_by: submitter.map(str::to_owned),
        template: None,
        idempotency,
    })
}

/// A message made from a template says which version made it: in columns
/// of its own (the answer's `template` and `template_version`), and in its
/// metadata (`herald.template`, `herald.template_version`), as before.
pub(super) fn record_template(new: &mut NewMessage, made_by: Option<(String, u32)>) {
    if let Some((name, version)) = made_by {
        new.template = Some(TemplateRef {
            name: name.clone(),
            version,
        });
        new.metadata
            .insert(templates::TEMPLATE_KEY.to_owned(), name);
        new.metadata.insert(
            templates::TEMPLATE_VERSION_KEY.to_owned(),
            version.to_string(),
        );
    }
}

/// Backpressure that a repeat passes: when `more` messages would overfill
/// the queue, `replay` (the idempotency look-up, run only then) decides: a
/// request already answered gets its first answer (`Some`), new work 429.
pub(super) async fn admit_or_replay<T>(
    state: &AppState,
    more: u64,
    replay: impl Future<Output = Result<Option<T>, StoreError>>,
) -> Result<Option<T>, Problem> {
    match admit(state, more).await {
        Ok(()) => Ok(None),
        Err(full) => replay.await?.map(Some).ok_or(full),
    }
}

/// Backpressure: refuse (429) when `more` messages would overfill the queue.
pub(crate) async fn admit(state: &AppState, more: u64) -> Result<(), Problem> {
    let depth = state.store.depth().await?;
    let max = state.limits().max_queue_depth;
    if depth.saturating_add(more) > max {
        tracing::warn!(depth, max, "queue full; refusing new messages");
        return Err(Problem::queue_full(depth, max));
    }
    Ok(())
}

/// The query of `GET /v1/messages`, checked: an unknown parameter or a
/// value out of its range is `400`.
fn list_query(query: &HashMap<String, String>) -> Result<ListQuery, Problem> {
    let mut list = ListQuery::default();
    for (name, value) in query {
        match name.as_str() {
            "status" => {
                list.status = Some(
                    value
                        .parse()
                        .map_err(|e| Problem::malformed(format!("{e}")))?,
                );
            }
            "tag" => list.tag = Some(value.clone()),
            "recipient" => list.recipient = Some(value.clone()),
            "since" => list.since = Some(timestamp("since", value)?),
            "until" => list.until = Some(timestamp("until", value)?),
            "limit" => {
                list.limit = Some(
                    value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIST_LIMIT).contains(n))
                        .ok_or_else(|| Problem::malformed("limit: a number from 1 to 500"))?,
                );
            }
            "cursor" => list.cursor = Some(value.clone()),
            other => {
                return Err(Problem::malformed(format!(
                    "unknown query parameter {other:?}"
                )));
            }
        }
    }
    Ok(list)
}

/// What the store is asked for a checked query.
fn list_filter(query: ListQuery) -> ListFilter {
    ListFilter {
        status: query.status.map(answers::store_status),
        tag: query.tag,
        recipient: query.recipient,
        since: query.since,
        until: query.until,
        limit: query.limit.unwrap_or(DEFAULT_LIST_LIMIT),
        after_id: query.cursor,
    }
}

fn timestamp(name: &str, raw: &str) -> Result<OffsetDateTime, Problem> {
    OffsetDateTime::parse(raw, &Rfc3339)
        .map_err(|_| Problem::malformed(format!("{name}: not an RFC 3339 time")))
}

pub(super) fn hex_sha256(bytes: &[u8]) -> String {
    const_hex::encode(Sha256::digest(bytes))
}
