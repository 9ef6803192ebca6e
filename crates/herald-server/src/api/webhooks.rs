//! `GET /v1/webhooks/deliveries`: every try to deliver an event to an
//! endpoint, newest first (the `read` scope).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use herald_store::{DeliveryOutcome, WebhookDeliveryRecord, WebhookEventType};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{AppState, Problem};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// One try, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDeliveryView {
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
    /// How long it took.
    pub duration_ms: u64,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// `delivered`, `retrying`, `gave_up` or `disabled`.
    pub outcome: DeliveryOutcome,
}

impl From<WebhookDeliveryRecord> for WebhookDeliveryView {
    fn from(record: WebhookDeliveryRecord) -> Self {
        let d = record.delivery;
        Self {
            id: record.id,
            webhook: d.endpoint,
            event_id: d.event_id,
            event_type: d.kind,
            attempt: d.attempt,
            at: d.at,
            http_status: d.http_status,
            duration_ms: u64::try_from(d.duration.as_millis()).unwrap_or(u64::MAX),
            error: d.error,
            outcome: d.outcome,
        }
    }
}

/// A page of tries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDeliveryList {
    /// The tries, newest first.
    pub deliveries: Vec<WebhookDeliveryView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// `GET /v1/webhooks/deliveries`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<WebhookDeliveryList>, Problem> {
    let mut limit = DEFAULT_LIMIT;
    let mut before = None;
    for (name, value) in &query {
        match name.as_str() {
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| Problem::malformed("limit: a number from 1 to 500"))?;
            }
            "cursor" => {
                before = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| Problem::malformed("cursor: not a cursor this API gave"))?,
                );
            }
            other => {
                return Err(Problem::malformed(format!(
                    "unknown query parameter {other:?}"
                )));
            }
        }
    }
    let mut tries = state
        .store
        .list_webhook_deliveries(before, limit + 1)
        .await?;
    let next_cursor = if tries.len() > limit {
        tries.truncate(limit);
        tries.last().map(|t| t.id.to_string())
    } else {
        None
    };
    Ok(Json(WebhookDeliveryList {
        deliveries: tries.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}
