//! `POST /v1/messages/batch`. The body is read item by item: each message
//! stays the raw JSON text it was sent as until its turn comes, and a list
//! longer than `max_batch` is refused while it is being read, so a batch
//! never costs much more memory than its body.

use std::cell::Cell;
use std::fmt;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use herald_api::{BatchAnswer, BatchResult};
use herald_message::MessageRequest;
use herald_store::Idempotency;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tracing::Instrument as _;

use super::ApiKeyName;
use super::messages::record_template;
use super::messages::{
    TraceHeader, accept_span, admit, admit_or_replay, body_bytes, created, idempotency_key,
    prepare, record_problem,
};
use super::{AppState, Problem, templates};
use crate::trace::TraceId;

/// `POST /v1/messages/batch`: every valid item is queued in one commit;
/// invalid ones get their problem in place.
pub(crate) async fn create_batch(
    State(state): State<AppState>,
    key: Option<Extension<ApiKeyName>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(TraceHeader, Json<BatchAnswer>), Problem> {
    // One request, one trace: every message of the batch carries it.
    let (trace, span) = accept_span(&headers, "/v1/messages/batch");
    let submitter = key.map(|Extension(ApiKeyName(name))| name);
    let answer = create_batch_in_trace(state, &headers, body, trace, submitter)
        .instrument(span.clone())
        .await;
    match &answer {
        Ok((_, Json(view))) => {
            span.record("messages", view.results.len() as u64);
            span.record("http.response.status_code", StatusCode::OK.as_u16());
        }
        Err(problem) => record_problem(&span, problem),
    }
    answer
}

async fn create_batch_in_trace(
    state: AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    trace: TraceId,
    submitter: Option<String>,
) -> Result<(TraceHeader, Json<BatchAnswer>), Problem> {
    let body = body_bytes(body)?;
    let key = idempotency_key(headers)?;
    let items = read_items(&body, state.limits().max_batch)?;
    let now = state.clock.now();
    // With a key, the batch is one request, under the hash of all of it:
    // a repeat replays every item, any other body conflicts.
    let mut hasher = key.is_some().then(Sha256::new);
    let mut results: Vec<Option<BatchResult>> = Vec::with_capacity(items.len());
    let mut valid = Vec::new();
    let mut positions = Vec::new();
    let mut templates = templates::Cache::default();
    for (i, raw) in items.into_iter().enumerate() {
        let request = parse_item(i, raw);
        if let Some(hasher) = hasher.as_mut() {
            hash_item(hasher, &request)?;
        }
        let prepared = match request {
            Ok(mut request) => match templates.expand(&state, &mut request).await {
                Ok(made_by) => prepare(&state, &request, None, now, &trace, submitter.as_deref())
                    .map(|mut new| {
                        record_template(&mut new, made_by);
                        new
                    }),
                Err(problem) => Err(problem),
            },
            Err(problem) => Err(problem),
        };
        match prepared {
            Ok(new) => {
                valid.push(new);
                positions.push(i);
                results.push(None);
            }
            Err(problem) => results.push(Some(BatchResult::Error {
                error: problem.body(),
            })),
        }
    }
    let batch_key = match (key, hasher) {
        (Some(key), Some(hasher)) => Some(Idempotency {
            key,
            request_hash: const_hex::encode(hasher.finalize()),
        }),
        _ => None,
    };
    if !valid.is_empty() {
        let stored = match batch_key {
            None => {
                admit(&state, valid.len() as u64).await?;
                state.store.enqueue_batch(valid).await?
            }
            Some(batch_key) => {
                // A repeat is answered by enqueue_batch_once itself.
                let replay = state.store.replay_batch(&batch_key, now);
                admit_or_replay(&state, valid.len() as u64, replay).await?;
                let stored = state.store.enqueue_batch_once(&batch_key, valid).await?;
                stored.into_iter().map(Ok).collect()
            }
        };
        state.metrics.accepted_batch(&stored);
        for (position, outcome) in positions.into_iter().zip(stored) {
            results[position] = Some(match outcome {
                Ok(enqueued) => BatchResult::Accepted(created(enqueued)),
                Err(error) => BatchResult::Error {
                    error: Problem::from(error).body(),
                },
            });
        }
        state.wake.notify_one();
    }
    Ok((
        TraceHeader(trace),
        Json(BatchAnswer {
            results: results
                .into_iter()
                .map(|r| {
                    r.unwrap_or_else(|| BatchResult::Error {
                        error: Problem::internal().body(),
                    })
                })
                .collect(),
        }),
    ))
}

/// One item of the batch, which must be a JSON object of the message
/// schema; its problem names its position.
fn parse_item(i: usize, raw: &RawValue) -> Result<MessageRequest, Problem> {
    if !raw.get().starts_with('{') {
        return Err(Problem::malformed(format!(
            "messages[{i}]: not a JSON object"
        )));
    }
    serde_json::from_str::<MessageRequest>(raw.get())
        .map_err(|e| Problem::malformed(format!("messages[{i}]: {e}")))
}

/// Adds one item to the request hash of a keyed batch: the item as parsed
/// (so key order and white space do not matter), or its problem where it
/// did not parse. Length-prefixed, so no two lists of items hash alike by
/// concatenation.
fn hash_item(
    hasher: &mut Sha256,
    request: &Result<MessageRequest, Problem>,
) -> Result<(), Problem> {
    let item = match request {
        Ok(request) => serde_json::to_vec(request),
        Err(problem) => serde_json::to_vec(&problem.detail),
    }
    .map_err(|_| Problem::internal())?;
    hasher.update((item.len() as u64).to_be_bytes());
    hasher.update(&item);
    Ok(())
}

/// The raw items of `{"messages": [...]}`, borrowed from `body`; more than
/// `max` of them is `413`, decided at item `max + 1`, before the rest of
/// the list is read.
pub(super) fn read_items(body: &[u8], max: usize) -> Result<Vec<&RawValue>, Problem> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Problem::malformed("the body must be a JSON object"));
    }
    let over = Cell::new(false);
    let mut json = serde_json::Deserializer::from_slice(body);
    let items = BatchBody { max, over: &over }
        .deserialize(&mut json)
        .and_then(|items| json.end().map(|()| items));
    items.map_err(|e| {
        if over.get() {
            Problem::too_large(format!(
                "more than {max} messages in one batch; at most {max}"
            ))
        } else {
            Problem::malformed(e.to_string())
        }
    })
}

/// The batch body: one field, `messages`.
struct BatchBody<'a> {
    max: usize,
    over: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for BatchBody<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BatchBody<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with a list of messages")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut messages = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != "messages" {
                return Err(de::Error::unknown_field(&key, &["messages"]));
            }
            if messages.is_some() {
                return Err(de::Error::duplicate_field("messages"));
            }
            messages = Some(map.next_value_seed(Items {
                max: self.max,
                over: self.over,
            })?);
        }
        messages.ok_or_else(|| de::Error::missing_field("messages"))
    }
}

/// The list of messages, each kept as raw JSON, at most `max` of them.
struct Items<'a> {
    max: usize,
    over: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Items<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Items<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of messages")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max).min(1024));
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if items.len() == self.max {
                self.over.set(true);
                return Err(de::Error::custom("too many messages"));
            }
            items.push(item);
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::read_items;

    #[test]
    fn items_are_kept_raw_and_counted_while_read() {
        let items = read_items(br#" {"messages": [{"a": 1}, [2], "x"]} "#, 3).unwrap();
        let raw: Vec<&str> = items.iter().map(|r| r.get()).collect();
        assert_eq!(raw, [r#"{"a": 1}"#, "[2]", r#""x""#]);
        let problem = read_items(br#"{"messages": [{}, {}, {}, {}]}"#, 3).unwrap_err();
        assert_eq!(problem.status, 413, "{problem:?}");
        // The list is refused at item max + 1: what follows is never read,
        // not even to find that it is not JSON.
        let problem =
            read_items(br#"{"messages": [{}, {}, {}, {}, this is not json"#, 3).unwrap_err();
        assert_eq!(problem.status, 413, "{problem:?}");
    }

    #[test]
    fn the_body_shape_is_checked() {
        for (body, expected) in [
            (&b"[]"[..], "must be a JSON object"),
            (b"{}", "missing field `messages`"),
            (br#"{"messages": [], "extra": 1}"#, "unknown field `extra`"),
            (br#"{"messages": [], "messages": []}"#, "duplicate field"),
            (br#"{"messages": {}}"#, "a list of messages"),
            (br#"{"messages": []} x"#, "trailing characters"),
        ] {
            let problem = read_items(body, 10).unwrap_err();
            assert_eq!(problem.status, 400, "{body:?}");
            assert!(problem.detail.contains(expected), "{}", problem.detail);
        }
    }
}
