//! The webhook endpoints over HTTP: `GET /v1/webhooks` (each configured
//! endpoint and whether it is disabled) and `GET /v1/webhooks/deliveries`
//! (every try to deliver an event, newest first), in the `read` scope;
//! `POST /v1/webhooks/deliveries/{id}/retry` (send a try's event again,
//! now) in the `manage` scope.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use herald_api as api;

use super::answers::{webhook_delivery, webhook_event_type};

use super::{AppState, Problem};
use crate::webhooks::{ResendError, resend};

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

/// `GET /v1/webhooks`.
pub(crate) async fn endpoints(
    State(state): State<AppState>,
) -> Result<Json<api::WebhookList>, Problem> {
    let disabled = state.store.disabled_webhooks().await?;
    let webhooks = state
        .webhooks
        .iter()
        .map(|endpoint| {
            let digest = endpoint.url_digest();
            let mark = disabled
                .iter()
                .find(|d| d.endpoint == endpoint.name && d.url_digest == digest);
            api::WebhookEndpoint {
                name: endpoint.name.clone(),
                events: endpoint
                    .events
                    .as_ref()
                    .map(|kinds| kinds.iter().copied().map(webhook_event_type).collect()),
                enabled: mark.is_none(),
                disabled: mark.map(|d| api::WebhookDisabled {
                    at: d.at,
                    reason: d.reason.clone(),
                    delivery: d.delivery,
                }),
            }
        })
        .collect();
    Ok(Json(api::WebhookList { webhooks }))
}

/// `POST /v1/webhooks/deliveries/{id}/retry`: the try's event sent once
/// more, now, waiting for the endpoint's answer (at most its `timeout`);
/// `200` with the new try, whatever the endpoint answered.
pub(crate) async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<api::WebhookDelivery>, Problem> {
    let no_such = || {
        let mut problem = Problem::not_found();
        problem.detail = "no webhook delivery with that id".into();
        problem
    };
    let id: i64 = id.parse().map_err(|_| no_such())?;
    let tried = resend(
        state.store.as_ref(),
        &state.webhooks,
        id,
        &state.metrics,
        state.clock.as_ref(),
    )
    .await;
    match tried {
        Ok(record) => Ok(Json(webhook_delivery(record))),
        Err(ResendError::NoSuchDelivery) => Err(no_such()),
        Err(ResendError::EndpointGone(name)) => Err(Problem::conflict(format!(
            "the webhook endpoint {name:?} is no longer configured"
        ))),
        Err(ResendError::EventGone(event)) => Err(Problem::conflict(format!(
            "the event {event} is no longer kept (retention deleted it)"
        ))),
        Err(ResendError::Store(error)) => Err(error.into()),
    }
}
