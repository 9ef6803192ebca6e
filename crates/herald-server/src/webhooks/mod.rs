//! The webhook sender: drains the outbox to each `[[webhooks]]` endpoint,
//! in outbox order, signing every POST (Standard Webhooks), retrying a
//! failed event with backoff (or the endpoint's `Retry-After`) before the
//! next, giving an event up at its maximum age, disabling an endpoint that
//! answers 410 (in the store, so it stays disabled across restarts until a
//! manual retry to it succeeds or its URL changes). One node at a time
//! sends (the `webhooks` role); each endpoint has its own task and HTTP
//! client, and none of it is on the mail's path, so a dead endpoint never
//! delays delivery. [`resend`] is the manual retry of one try.

mod resend;
mod sign;

use std::sync::Arc;
use std::time::Duration;

use herald_policy::SharedClock;

use herald_store::{
    DeliveryOutcome, DisabledWebhook, FeedCursor, OutboxEvent, Store, StoreError, WebhookDelivery,
};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub(crate) use resend::{ResendError, resend};
pub(crate) use sign::{Answer, Next, after_try, signature};

use crate::config::WebhookConfig;
use crate::observe::Metrics;

/// The role one node at a time holds to send webhooks.
const ROLE: &str = "webhooks";
/// How often the role is renewed; it lapses after three periods.
const LEAD_EVERY: Duration = Duration::from_secs(5);
/// How long an idle endpoint waits before reading the outbox again.
const POLL: Duration = Duration::from_millis(200);
/// Events read at once.
const BATCH: usize = 256;

/// Starts the sender: the role's keeper and one task per endpoint.
pub(crate) fn spawn(
    store: Arc<dyn Store>,
    endpoints: Vec<WebhookConfig>,
    node_id: String,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    stop: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    if endpoints.is_empty() {
        return Vec::new();
    }
    let (leading, watching) = watch::channel(false);
    let mut tasks = vec![tokio::spawn(lead(
        Arc::clone(&store),
        node_id,
        Arc::clone(&clock),
        leading,
        stop.clone(),
    ))];
    for endpoint in endpoints {
        metrics.register_webhook(&endpoint.name);
        let sender = Endpoint {
            store: Arc::clone(&store),
            agent: agent(endpoint.timeout),
            config: Arc::new(endpoint),
            metrics: Arc::clone(&metrics),
            clock: Arc::clone(&clock),
        };
        tasks.push(tokio::spawn(sender.run(watching.clone(), stop.clone())));
    }
    tasks
}

async fn lead(
    store: Arc<dyn Store>,
    node_id: String,
    clock: SharedClock,
    leading: watch::Sender<bool>,
    stop: CancellationToken,
) {
    loop {
        let holds = store
            .lead(ROLE, &node_id, LEAD_EVERY * 3, clock.now())
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(error = %error, "could not renew the webhook sender's role");
                false
            });
        if leading.send_replace(holds) != holds {
            tracing::info!(leading = holds, "webhook sender role changed");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(LEAD_EVERY) => {}
        }
    }
}

/// What became of one event at an endpoint.
enum Sent {
    /// Delivered or given up: on to the next.
    Done,
    /// The endpoint answered 410 on the try recorded under this id.
    Gone(Option<i64>),
    /// The sender was stopped.
    Stopped,
}

/// Whether `endpoint` is marked disabled in the store for its current URL
/// (a mark left by another URL under the same name does not count).
pub(crate) async fn is_disabled(
    store: &dyn Store,
    endpoint: &WebhookConfig,
) -> Result<Option<DisabledWebhook>, StoreError> {
    Ok(store
        .disabled_webhooks()
        .await?
        .into_iter()
        .find(|d| d.endpoint == endpoint.name && d.url_digest == endpoint.url_digest()))
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// One endpoint's sender.
struct Endpoint {
    store: Arc<dyn Store>,
    agent: ureq::Agent,
    config: Arc<WebhookConfig>,
    metrics: Arc<Metrics>,
    clock: SharedClock,
}

impl Endpoint {
    async fn run(self, mut leading: watch::Receiver<bool>, stop: CancellationToken) {
        let name = self.config.name.clone();
        let mut cursor: Option<FeedCursor> = None;
        let mut loaded = false;
        loop {
            if stop.is_cancelled() {
                return;
            }
            if !*leading.borrow_and_update() {
                loaded = false;
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = leading.changed() => {}
                    () = tokio::time::sleep(LEAD_EVERY) => {}
                }
                continue;
            }
            if !loaded {
                // Read again whenever the role is taken: another node may
                // have moved the cursor, or an operator re-enabled the
                // endpoint, meanwhile.
                match self.load().await {
                    Ok((at, disabled)) => {
                        cursor = at;
                        loaded = !disabled;
                        if disabled && self.wait_until_enabled(&stop).await {
                            return;
                        }
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(webhook = %name, error = %error, "reading the webhook cursor failed");
                        if pause(&stop, POLL).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let events = match self.store.read_outbox(cursor, BATCH).await {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(webhook = %name, error = %error, "reading the outbox failed");
                    Vec::new()
                }
            };
            if events.is_empty() {
                self.metrics.webhook_backlog(&name, Duration::ZERO);
                if pause(&stop, POLL).await {
                    return;
                }
                continue;
            }
            let mut skipped = None;
            for event in events {
                if !self.config.wants(event.kind) {
                    skipped = Some(event.cursor);
                    cursor = Some(event.cursor);
                    continue;
                }
                match self.deliver(&event, &stop).await {
                    Sent::Done => {
                        skipped = None;
                        cursor = Some(event.cursor);
                    }
                    Sent::Gone(delivery) => {
                        self.disable(delivery).await;
                        loaded = false;
                        skipped = None;
                        break;
                    }
                    Sent::Stopped => return,
                }
            }
            if let Some(at) = skipped
                && let Err(error) = self.store.advance_webhook(&name, at).await
            {
                tracing::warn!(webhook = %name, error = %error, "moving the webhook cursor failed");
            }
        }
    }

    /// The endpoint's cursor, and whether it is disabled.
    async fn load(&self) -> Result<(Option<FeedCursor>, bool), StoreError> {
        let cursor = self.store.webhook_cursor(&self.config.name).await?;
        let disabled = is_disabled(self.store.as_ref(), &self.config).await?;
        if let Some(disabled) = &disabled {
            tracing::warn!(
                webhook = %self.config.name,
                since = %disabled.at,
                reason = %disabled.reason,
                "webhook endpoint is disabled; retry one of its deliveries to enable it again"
            );
        }
        Ok((cursor, disabled.is_some()))
    }

    /// Marks the endpoint disabled in the store: it stays so across
    /// restarts, until a manual retry to it succeeds or its URL changes.
    async fn disable(&self, delivery: Option<i64>) {
        let name = &self.config.name;
        tracing::error!(webhook = %name, delivery, "endpoint answered 410 Gone; disabled");
        let disabled = DisabledWebhook {
            endpoint: name.clone(),
            url_digest: self.config.url_digest(),
            at: self.clock.now(),
            reason: "the endpoint answered 410 Gone".to_owned(),
            delivery,
        };
        if let Err(error) = self.store.disable_webhook(disabled).await {
            // Not kept: the next event finds the endpoint gone again.
            tracing::warn!(webhook = %name, error = %error, "recording the disabled webhook failed");
        }
    }

    /// Waits while the endpoint is disabled, reading the store now and
    /// then; true if the sender was stopped meanwhile.
    async fn wait_until_enabled(&self, stop: &CancellationToken) -> bool {
        loop {
            if pause(stop, LEAD_EVERY).await {
                return true;
            }
            match is_disabled(self.store.as_ref(), &self.config).await {
                Ok(None) => {
                    tracing::info!(webhook = %self.config.name, "webhook endpoint enabled again");
                    return false;
                }
                Ok(Some(_)) => {}
                Err(error) => {
                    tracing::warn!(webhook = %self.config.name, error = %error, "reading the webhook's state failed");
                }
            }
        }
    }

    /// Sends `event` until it is delivered or given up, the endpoint is
    /// gone, or the sender stops.
    async fn deliver(&self, event: &OutboxEvent, stop: &CancellationToken) -> Sent {
        let name = &self.config.name;
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            let started = self.clock.now();
            self.metrics
                .webhook_backlog(name, (started - event.at).try_into().unwrap_or_default());
            let clock = self.clock.instant();
            let answer = post(&self.agent, &self.config, event, started).await;
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
            let done = !matches!(next, Next::RetryAt(_));
            let advance = done.then_some(event.cursor);
            let recorded = match self.store.record_webhook_delivery(delivery, advance).await {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::warn!(webhook = %name, error = %e, "recording a webhook delivery failed");
                    None
                }
            };
            match next {
                Next::Delivered => return Sent::Done,
                Next::GiveUp => {
                    tracing::warn!(webhook = %name, event = %event.id, attempt, "webhook event given up: older than retry_max_age");
                    return Sent::Done;
                }
                Next::Disable => return Sent::Gone(recorded),
                Next::RetryAt(at) => {
                    let wait: Duration = (at - now).try_into().unwrap_or_default();
                    tracing::info!(webhook = %name, event = %event.id, attempt, retry_in = ?wait, "webhook delivery failed; will retry");
                    if pause(stop, wait).await {
                        return Sent::Stopped;
                    }
                }
            }
        }
    }
}

/// One signed POST of `event` to `config`'s URL, stamped `at`, on a
/// blocking thread. Errors never show the URL.
async fn post(
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
            .unwrap_or_else(|e| Answer::Failed(describe(&e)))
    })
    .await;
    sent.unwrap_or_else(|_| Answer::Failed("the sending thread failed".into()))
}

/// Sleeps `wait`; true if the sender was stopped meanwhile.
async fn pause(stop: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(wait) => false,
    }
}

/// A ureq error in words that cannot contain the URL.
fn describe(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(which) => format!("timed out ({which})"),
        ureq::Error::Io(io) => format!("I/O error: {}", io.kind()),
        ureq::Error::HostNotFound => "host not found".to_owned(),
        ureq::Error::ConnectionFailed => "connection failed".to_owned(),
        ureq::Error::Tls(what) => format!("TLS: {what}"),
        ureq::Error::Rustls(e) => format!("TLS: {e}"),
        _ => "request failed".to_owned(),
    }
}
