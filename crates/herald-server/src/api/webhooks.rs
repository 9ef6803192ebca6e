//! `GET /v1/webhooks/deliveries`: every try to deliver an event to an
//! endpoint, newest first (the `read` scope).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use herald_api as api;

use super::answers::webhook_delivery;

use super::{AppState, Problem};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// `GET /v1/webhooks/deliveries`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<api::WebhookDeliveryPage>, Problem> {
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
    Ok(Json(api::WebhookDeliveryPage {
        deliveries: tries.into_iter().map(webhook_delivery).collect(),
        next_cursor,
    }))
}
