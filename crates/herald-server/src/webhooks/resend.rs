//! The manual retry of one try (`POST /v1/webhooks/deliveries/{id}/retry`):
//! the try's event sent once more to its endpoint, now, with the same
//! `webhook-id`, a fresh timestamp and signature, recorded as a try of its
//! own. It never moves the endpoint's cursor and is not retried: a 2xx
//! enables a disabled endpoint again, a 410 disables it, anything else is
//! `failed`.

use std::sync::Arc;

use herald_policy::Clock;
use herald_store::{
    DeliveryOutcome, DisabledWebhook, Store, StoreError, WebhookDelivery, WebhookDeliveryRecord,
};

use super::send::post;
use super::{Answer, agent, is_disabled};
use crate::config::WebhookConfig;
use crate::observe::Metrics;

/// Why a try could not be sent again.
#[derive(Debug)]
pub(crate) enum ResendError {
    /// No try with that id (or no longer kept).
    NoSuchDelivery,
    /// The try's endpoint (named) is no longer configured.
    EndpointGone(String),
    /// The try's event (its id) is no longer kept.
    EventGone(String),
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for ResendError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// Sends try `id`'s event again to its endpoint among `endpoints`,
/// waiting at most the endpoint's `timeout`; answers with the new try.
pub(crate) async fn resend(
    store: &dyn Store,
    endpoints: &[WebhookConfig],
    id: i64,
    metrics: &Metrics,
    clock: &dyn Clock,
) -> Result<WebhookDeliveryRecord, ResendError> {
    let earlier = store
        .webhook_delivery(id)
        .await?
        .ok_or(ResendError::NoSuchDelivery)?
        .delivery;
    let config = endpoints
        .iter()
        .find(|e| e.name == earlier.endpoint)
        .ok_or_else(|| ResendError::EndpointGone(earlier.endpoint.clone()))?;
    let event = store
        .outbox_event(&earlier.event_id)
        .await?
        .ok_or_else(|| ResendError::EventGone(earlier.event_id.clone()))?;
    let config = Arc::new(config.clone());
    let started = clock.now();
    let began = clock.instant();
    let answer = post(&agent(config.timeout, 1), &config, &event, started).await;
    let duration = clock.instant().saturating_duration_since(began);
    let (http_status, error, outcome) = match &answer {
        Answer::Status(code @ 200..=299, _) => (Some(*code), None, DeliveryOutcome::Delivered),
        Answer::Status(410, _) => (
            Some(410),
            Some("HTTP 410".to_owned()),
            DeliveryOutcome::Disabled,
        ),
        Answer::Status(code, _) => (
            Some(*code),
            Some(format!("HTTP {code}")),
            DeliveryOutcome::Failed,
        ),
        Answer::Failed(why) => (None, Some(why.clone()), DeliveryOutcome::Failed),
    };
    let delivery = WebhookDelivery {
        endpoint: config.name.clone(),
        event_id: event.id.clone(),
        kind: event.kind,
        attempt: earlier.attempt.saturating_add(1),
        at: started,
        http_status,
        duration,
        error,
        outcome,
    };
    metrics.webhook_delivery(&config.name, outcome);
    let new_id = store
        .record_webhook_delivery(delivery.clone(), None)
        .await?;
    match outcome {
        DeliveryOutcome::Delivered => {
            if is_disabled(store, &config).await?.is_some() {
                store.enable_webhook(&config.name).await?;
                tracing::info!(webhook = %config.name, delivery = new_id, "a manual retry succeeded: webhook endpoint enabled again");
            }
        }
        DeliveryOutcome::Disabled => {
            tracing::error!(webhook = %config.name, delivery = new_id, "endpoint answered 410 Gone to a manual retry; disabled");
            store
                .disable_webhook(DisabledWebhook {
                    endpoint: config.name.clone(),
                    url_digest: config.url_digest(),
                    at: clock.now(),
                    reason: "the endpoint answered 410 Gone".to_owned(),
                    delivery: Some(new_id),
                })
                .await?;
        }
        _ => {
            tracing::info!(webhook = %config.name, delivery = new_id, "a manual webhook retry failed");
        }
    }
    // As stored (times at the store's precision), as the log shows it.
    Ok(store
        .webhook_delivery(new_id)
        .await?
        .unwrap_or(WebhookDeliveryRecord {
            id: new_id,
            delivery,
        }))
}
