//! One event to one endpoint: signed POSTs until it is delivered, given up
//! or the endpoint is gone. Every try but the last is recorded here; the
//! last goes back to the sender's loop, which records it together with how
//! far the endpoint's cursor may move (see [`Window`](super::window::Window)).

use std::sync::Arc;
use std::time::Duration;

use herald_store::{DeliveryOutcome, FeedCursor, OutboxEvent, WebhookDelivery};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{Answer, Endpoint, Next, after_try, pause, signature};
use crate::config::WebhookConfig;

/// What became of one event at an endpoint.
pub(super) enum Sent {
    /// Delivered or given up: the last try, to record.
    Done(WebhookDelivery),
    /// The endpoint answered 410 on this try, to record.
    Gone(WebhookDelivery),
    /// The sender was stopped.
    Stopped,
}

impl Endpoint {
    /// Sends `event` until it is delivered or given up, the endpoint is
    /// gone, or the sender stops; answers with the event's cursor.
    pub(super) async fn deliver(
        &self,
        event: OutboxEvent,
        stop: &CancellationToken,
    ) -> (FeedCursor, Sent) {
        let name = &self.config.name;
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            let started = self.clock.now();
            self.metrics
                .webhook_backlog(name, (started - event.at).try_into().unwrap_or_default());
            let clock = self.clock.instant();
            let answer = post(&self.agent, &self.config, &event, started).await;
            let duration = self.clock.instant().saturating_duration_since(clock);
            let now = self.clock.now();
            let next = after_try(
                &answer,
                attempt,
                event.at,
                now,
                &self.config.retry,
                &mut rand::rng(),
            );
            let (http_status, error) = match &answer {
                Answer::Status(code, _) => (
                    Some(*code),
                    (!(200..300).contains(code)).then(|| format!("HTTP {code}")),
                ),
                Answer::Failed(why) => (None, Some(why.clone())),
            };
            let outcome = match next {
                Next::Delivered => DeliveryOutcome::Delivered,
                Next::RetryAt(_) => DeliveryOutcome::Retrying,
                Next::GiveUp => DeliveryOutcome::GaveUp,
                Next::Disable => DeliveryOutcome::Disabled,
            };
            self.metrics.webhook_delivery(name, outcome);
            let delivery = WebhookDelivery {
                endpoint: name.clone(),
                event_id: event.id.clone(),
                kind: event.kind,
                attempt,
                at: started,
                http_status,
                duration,
                error,
                outcome,
            };
            let wait = match next {
                Next::Delivered => return (event.cursor, Sent::Done(delivery)),
                Next::GiveUp => {
                    tracing::warn!(webhook = %name, event = %event.id, attempt, "webhook event given up: older than retry_max_age");
                    return (event.cursor, Sent::Done(delivery));
                }
                Next::Disable => return (event.cursor, Sent::Gone(delivery)),
                Next::RetryAt(at) => (at - now).try_into().unwrap_or_default(),
            };
            if let Err(e) = self.store.record_webhook_delivery(delivery, None).await {
                tracing::warn!(webhook = %name, error = %e, "recording a webhook delivery failed");
            }
            tracing::info!(webhook = %name, event = %event.id, attempt, retry_in = ?wait, "webhook delivery failed; will retry");
            if pause(stop, wait).await {
                return (event.cursor, Sent::Stopped);
            }
        }
    }
}

/// One signed POST of `event` to `config`'s URL, stamped `at`, on a
/// blocking thread. Errors never show the URL.
pub(super) async fn post(
    agent: &ureq::Agent,
    config: &Arc<WebhookConfig>,
    event: &OutboxEvent,
    at: OffsetDateTime,
) -> Answer {
    let timestamp = at.unix_timestamp();
    let signed = signature(&config.secrets, &event.id, timestamp, &event.body);
    let (agent, config) = (agent.clone(), Arc::clone(config));
    let (id, body) = (event.id.clone(), event.body.clone());
    let sent = tokio::task::spawn_blocking(move || {
        agent
            .post(&config.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", &timestamp.to_string())
            .header("webhook-signature", &signed)
            .send(body.as_bytes())
            .map(|response| {
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Answer::Status(response.status().as_u16(), retry_after)
            })
            .unwrap_or_else(|e| Answer::Failed(herald_alerts::describe_http_error(&e)))
    })
    .await;
    sent.unwrap_or_else(|_| Answer::Failed("the sending thread failed".into()))
}
