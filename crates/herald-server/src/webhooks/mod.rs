//! The webhook sender: drains the outbox to each `[[webhooks]]` endpoint,
//! in outbox order, `concurrency` POSTs at a time (one by default: then a
//! failed event is retried before the next), signing every POST (Standard
//! Webhooks), retrying a failed event with backoff (or the endpoint's
//! `Retry-After`), giving an event up at its maximum age, disabling an
//! endpoint that
//! answers 410 (in the store, so it stays disabled across restarts until a
//! manual retry to it succeeds or its URL changes). One node at a time
//! sends (the `webhooks` role); each endpoint has its own task and HTTP
//! client, and none of it is on the mail's path, so a dead endpoint never
//! delays delivery. [`resend`] is the manual retry of one try.

mod resend;
mod send;
mod sign;
mod window;

use std::sync::Arc;
use std::time::Duration;

use herald_policy::SharedClock;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use herald_store::{DisabledWebhook, FeedCursor, OutboxEvent, Store, StoreError, WebhookDelivery};
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
/// Events handed out and not yet passed by the cursor, at most: with one
/// event retried for long, the others go on only this far past it (the
/// outbox is read a batch at a time, and only while a batch fits).
const MAX_WINDOW: usize = 4 * BATCH;

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
            agent: agent(endpoint.timeout, endpoint.concurrency),
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

/// How a [`drain`](Endpoint::drain) ended.
enum Drained {
    /// The outbox is empty after this cursor: wait, then read again.
    Idle(Option<FeedCursor>),
    /// Load the cursor and the endpoint's state again (the role was lost,
    /// or the endpoint was disabled).
    Again,
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

fn agent(timeout: Duration, concurrency: usize) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        // A kept-alive connection for each POST that may be in flight.
        .max_idle_connections(concurrency.max(10))
        .max_idle_connections_per_host(concurrency.max(3))
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
                    }
                    Err(error) => {
                        tracing::warn!(webhook = %name, error = %error, "reading the webhook cursor failed");
                        if pause(&stop, POLL).await {
                            return;
                        }
                    }
                }
                continue;
            }
            match self.drain(cursor, &mut leading, &stop).await {
                Drained::Idle(at) => {
                    cursor = at;
                    self.metrics.webhook_backlog(&name, Duration::ZERO);
                    if pause(&stop, POLL).await {
                        return;
                    }
                }
                Drained::Again => loaded = false,
                Drained::Stopped => return,
            }
        }
    }

    /// Sends what the outbox holds after `cursor`, up to `concurrency` at
    /// a time, until it is empty, the role is lost, the endpoint is gone
    /// or the sender stops. While a slot is free it reads on (every
    /// `POLL`), so new events go out beside one that is being retried.
    async fn drain(
        &self,
        mut cursor: Option<FeedCursor>,
        leading: &mut watch::Receiver<bool>,
        stop: &CancellationToken,
    ) -> Drained {
        let name = &self.config.name;
        let concurrency = self.config.concurrency;
        let mut read_from = cursor;
        let mut pending = std::collections::VecDeque::<OutboxEvent>::new();
        let mut window = window::Window::default();
        let mut flying = FuturesUnordered::new();
        loop {
            // Once stopped, nothing more is handed out; the POSTs in
            // flight are waited for (within the stop's grace) and recorded,
            // so that a restart does not send them again.
            let stopping = stop.is_cancelled();
            let handing_out = *leading.borrow() && !stopping;
            let room = |window: &window::Window| window.len() + BATCH <= MAX_WINDOW;
            // Whether the outbox had nothing more to give (or failed).
            let mut read_nothing = false;
            if handing_out && pending.is_empty() && room(&window) {
                match self.store.read_outbox(read_from, BATCH).await {
                    Ok(events) => {
                        read_nothing = events.is_empty();
                        read_from = events.last().map(|e| e.cursor).or(read_from);
                        pending.extend(events);
                    }
                    Err(error) => {
                        tracing::warn!(webhook = %name, error = %error, "reading the outbox failed");
                        read_nothing = true;
                    }
                }
            }
            while handing_out && flying.len() < concurrency {
                let Some(event) = pending.pop_front() else {
                    break;
                };
                let wanted = self.config.wants(event.kind);
                window.push(event.cursor, !wanted);
                if wanted {
                    flying.push(self.deliver(event, stop));
                }
            }
            // Events the endpoint does not want, at the front.
            if let Some(at) = window.advance() {
                cursor = Some(at);
                if let Err(error) = self.store.advance_webhook(name, at).await {
                    tracing::warn!(webhook = %name, error = %error, "moving the webhook cursor failed");
                }
            }
            if flying.is_empty() {
                if stopping {
                    return Drained::Stopped;
                }
                if !*leading.borrow() {
                    return Drained::Again;
                }
                if pending.is_empty() && read_nothing {
                    return Drained::Idle(cursor);
                }
                continue;
            }
            // A free slot and nothing waiting: look at the outbox again
            // after a while, even if nothing in flight has finished.
            let read_on =
                handing_out && pending.is_empty() && flying.len() < concurrency && room(&window);
            let finished = tokio::select! {
                () = stop.cancelled(), if !stopping => continue,
                // The role lost: what is in flight is dropped (the new
                // holder sends it), rather than retried without the role.
                Ok(()) = leading.changed() => {
                    if !*leading.borrow_and_update() {
                        return Drained::Again;
                    }
                    continue;
                }
                () = tokio::time::sleep(POLL), if read_on => continue,
                finished = flying.next() => finished,
            };
            let Some((at, sent)) = finished else {
                continue;
            };
            let (delivery, met_410) = match sent {
                send::Sent::Done(delivery) => (delivery, false),
                send::Sent::Gone(delivery) => (delivery, true),
                // Stopped while waiting to retry: not finished, sent again
                // after the restart.
                send::Sent::Stopped => continue,
            };
            // A 410 finishes its event too (re-enabling the endpoint is a
            // manual retry of that very try), but no other: what is still
            // in flight is dropped, and sent again once it is enabled.
            window.finish(at);
            let advance = window.advance();
            cursor = advance.or(cursor);
            let recorded = self.record(delivery, advance).await;
            if met_410 {
                self.disable(recorded).await;
                return Drained::Again;
            }
        }
    }

    /// Records a try, moving the endpoint's cursor to `advance` with it;
    /// answers with the try's id.
    async fn record(&self, delivery: WebhookDelivery, advance: Option<FeedCursor>) -> Option<i64> {
        match self.store.record_webhook_delivery(delivery, advance).await {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(webhook = %self.config.name, error = %e, "recording a webhook delivery failed");
                None
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
}

/// Sleeps `wait`; true if the sender was stopped meanwhile.
async fn pause(stop: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(wait) => false,
    }
}
