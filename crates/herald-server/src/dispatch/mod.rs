//! The dispatcher and its delivery workers: claim due messages under a
//! lease, deliver each through the relays (in order, skipping those whose
//! circuit is open) or the file outbox, and record the attempt, the
//! recipients' states and the next step in one store transaction.

mod attempt;
mod limits;
mod outbox;
mod relays;
mod report;
mod suppress;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_message::{EmailAddress, Envelope};
use herald_policy::BounceClass;
use herald_policy::{
    BreakerOutcome, BreakerState, CircuitBreaker, DailyQuota, RateLimit, RetryPolicy, SharedClock,
};
use herald_smtp::{Ctx, ErrorKind, Pool, PoolStats, SendOptions};
use herald_store::{
    AttemptRecord, Claimed, NextStep, RecipientResult, RecipientStatus, Store, StoreError,
    SuppressionPolicy,
};
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub(crate) use limits::Held;
pub(crate) use outbox::Outbox;

use crate::live::Live;
use crate::observe::Metrics;
use crate::observe::metrics::{AttemptOutcome, RELAY_NONE, RELAY_OUTBOX};
use crate::trace::export::{EXPORT_TARGET, continue_message};
use herald_alerts::Alerting;
use limits::Quota;
use report::{Tried, Via};
use suppress::Listed;

/// How long the goodbye to the relays (QUIT on idle connections) may take
/// once deliveries are drained.
const QUIT_GRACE: Duration = Duration::from_secs(1);

/// One relay with its pool, circuit breaker and limits. Shared: a
/// delivery holds its relay's `Arc` for the whole attempt, so a reload
/// that replaces or removes the relay lets that attempt finish on it.
pub(crate) struct Relay {
    pub(crate) name: String,
    pub(crate) pool: Pool,
    pub(crate) breaker: Mutex<CircuitBreaker>,
    /// How fast messages may go, across every node.
    pub(crate) rate: Option<RateLimit>,
    /// How many a day, counted in the store.
    pub(crate) quota: Option<DailyQuota>,
    /// This node's blocks of the quota and the rate.
    pub(crate) held: Held,
    /// The pool's bound, for `GET /v1/relays`.
    pub(crate) max_connections: usize,
}

/// How the dispatcher runs.
#[derive(Debug, Clone)]
pub(crate) struct DispatchSettings {
    pub(crate) owner: String,
    pub(crate) concurrency: usize,
    pub(crate) lease: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) drain_timeout: Duration,
    /// The retry schedule; a reload replaces it.
    pub(crate) policy: Live<RetryPolicy>,
    /// Which failures put their address on the suppression list; a reload
    /// replaces it.
    pub(crate) suppression: Live<SuppressionPolicy>,
    /// Where due times, attempt times and breaker times come from.
    pub(crate) clock: SharedClock,
}

/// Claims due messages and delivers them, at most `concurrency` at once.
pub(crate) struct Dispatcher {
    store: Arc<dyn Store>,
    /// The relays in order; a reload replaces the list (see [`Relay`]).
    relays: Live<Vec<Arc<Relay>>>,
    outbox: Outbox,
    settings: DispatchSettings,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    alerting: Arc<Alerting>,
    /// The settings' clock.
    clock: SharedClock,
    /// The retry schedule's jitter.
    rng: Mutex<StdRng>,
}

/// One relay as `/metrics` and `GET /v1/relays` sample it.
#[derive(Debug, Clone)]
pub(crate) struct RelaySample {
    pub(crate) name: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) pool: PoolStats,
    pub(crate) max_connections: usize,
    pub(crate) circuit: BreakerState,
    pub(crate) rate: Option<RateLimit>,
    pub(crate) quota: Option<DailyQuota>,
}

impl Dispatcher {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        relays: Vec<Arc<Relay>>,
        outbox: Outbox,
        settings: DispatchSettings,
        wake: Arc<Notify>,
        metrics: Arc<Metrics>,
        alerting: Arc<Alerting>,
    ) -> Self {
        if relays.is_empty() {
            metrics.register_relay(RELAY_OUTBOX);
        }
        for relay in &relays {
            metrics.register_relay(&relay.name);
        }
        let clock = settings.clock.clone();
        Self {
            store,
            relays: Live::new(relays),
            outbox,
            settings,
            wake,
            metrics,
            alerting,
            clock,
            rng: Mutex::new(StdRng::from_os_rng()),
        }
    }

    /// Each relay's pool and circuit, as of now.
    pub(crate) fn relay_samples(&self) -> Vec<RelaySample> {
        self.relays
            .get()
            .iter()
            .map(|relay| RelaySample {
                name: relay.name.clone(),
                host: relay.pool.client_config().host.clone(),
                port: relay.pool.client_config().port,
                pool: relay.pool.stats(),
                max_connections: relay.max_connections,
                rate: relay.rate,
                quota: relay.quota,
                circuit: relay
                    .breaker
                    .lock()
                    .map(|b| b.state())
                    .unwrap_or(BreakerState::Closed),
            })
            .collect()
    }

    /// How it runs (the retry and suppression policies are live).
    pub(crate) fn settings(&self) -> &DispatchSettings {
        &self.settings
    }

    /// The relays now, in order.
    pub(crate) fn relays(&self) -> Arc<Vec<Arc<Relay>>> {
        self.relays.get()
    }

    /// Replaces the relays for every delivery that starts from now on;
    /// deliveries in flight finish on the relays they hold.
    pub(crate) fn set_relays(&self, relays: Vec<Arc<Relay>>) {
        if relays.is_empty() {
            self.metrics.register_relay(RELAY_OUTBOX);
        }
        for relay in &relays {
            self.metrics.register_relay(&relay.name);
        }
        self.relays.set(relays);
    }

    /// Runs until `stop` is cancelled; then stops claiming, lets in-flight
    /// deliveries finish within the drain timeout, and gives back (releases)
    /// whatever is still unfinished, so nothing stays `sending`.
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken) {
        if self.relays.get().is_empty() {
            tracing::warn!(
                dir = %self.outbox.dir().display(),
                "no relay configured: messages are written to the file outbox, not sent"
            );
        }
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        // Cancelled when the drain deadline passes: in-flight SMTP stops.
        let abort = CancellationToken::new();
        let mut tasks = JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            if stop.is_cancelled() {
                break;
            }
            let free = permits.available_permits();
            let claimed = if free == 0 {
                Vec::new()
            } else {
                match self
                    .store
                    .claim(
                        &self.settings.owner,
                        free,
                        self.settings.lease,
                        self.clock.now(),
                    )
                    .await
                {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        tracing::error!(error = %error, "claiming messages failed");
                        Vec::new()
                    }
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(self.settings.poll_interval) => {}
                    Ok(_permit) = permits.clone().acquire_owned(), if free == 0 => {}
                }
                continue;
            }
            // One suppression look-up for the whole claim.
            let listed = self.listed(&claimed).await;
            for message in claimed {
                let listed = listed.clone();
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let this = self.clone();
                let abort = abort.clone();
                let running = self.metrics.in_flight();
                // Every log line about this delivery carries the message and
                // trace ids.
                let span = tracing::info_span!(
                    "delivery",
                    id = %message.id,
                    trace_id = message.trace_id.as_deref().unwrap_or(""),
                );
                // When spans are exported, the attempt continues the
                // message's trace (the caller's, or the one made up at
                // acceptance).
                continue_message(&span, message.trace_id.as_deref());
                tasks.spawn(
                    async move {
                        this.deliver(message, listed, &abort).await;
                        drop(running);
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
        }

        let in_flight = tasks.len();
        if in_flight > 0 {
            tracing::info!(in_flight, "draining in-flight deliveries");
        }
        let drained = tokio::time::timeout(self.settings.drain_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = tasks.len(),
                "drain timeout reached; releasing unfinished messages"
            );
            abort.cancel();
            while tasks.join_next().await.is_some() {}
        }
        self.give_back_held().await;
        // QUIT is a courtesy: a relay that does not answer it must not hold
        // the exit up for its full QUIT timeout. Dropping the pending QUITs
        // at the grace closes those connections.
        let quit = async {
            for relay in self.relays.get().iter() {
                relay.pool.close_idle().await;
            }
        };
        if tokio::time::timeout(QUIT_GRACE, quit).await.is_err() {
            tracing::warn!("relays did not answer QUIT in time; closing their connections");
        }
    }

    /// The time since `started`, by the dispatcher's clock.
    fn elapsed(&self, started: Instant) -> Duration {
        self.clock.instant().saturating_duration_since(started)
    }

    /// One attempt for one claimed message.
    async fn deliver(&self, mut message: Claimed, listed: Listed, abort: &CancellationToken) {
        let started_at = self.clock.now();
        let started = self.clock.instant();
        let suppressed = suppress::take_off(&mut message, listed.as_deref().map(Vec::as_slice));
        let mut tried = if message.recipients.is_empty() {
            // Nobody left to send to: nothing is tried, nothing reported.
            Tried {
                relay: RELAY_NONE.to_owned(),
                outcome: herald_store::AttemptOutcome::Permanent,
                results: Vec::new(),
                duration: Duration::ZERO,
                retry_at: None,
            }
        } else {
            match envelope_of(&message) {
                Err(reason) => {
                    let results = fail_all(&message.recipients, &reason);
                    let tried = Tried::new(RELAY_NONE, results, self.elapsed(started));
                    self.report(&message, &tried, Via::Nowhere);
                    tried
                }
                Ok(envelope) if self.relays.get().is_empty() => {
                    let span = tracing::info_span!(target: EXPORT_TARGET, "outbox");
                    let results = self.to_outbox(&message, &envelope).instrument(span).await;
                    let tried = Tried::new(RELAY_OUTBOX, results, self.elapsed(started));
                    self.report(&message, &tried, Via::Outbox);
                    tried
                }
                Ok(envelope) => match self.via_relays(&message, &envelope, abort).await {
                    Some(tried) => tried,
                    None => {
                        // Cancelled by shutdown: give the message back untried.
                        if let Err(error) =
                            self.store.release(&message.id, &self.settings.owner).await
                        {
                            tracing::warn!(id = %message.id, error = %error, "release failed");
                        }
                        return;
                    }
                },
            }
        };
        if let Some(until) = tried.retry_at
            && suppressed.is_empty()
        {
            // Every relay's quota is spent: put off to the reset, which
            // spends no attempt. (With suppressed recipients to record,
            // it is recorded as an attempt instead, deferred to the same
            // reset; that happens once, as they are final afterwards.)
            self.postpone(&message, &tried, until).await;
            return;
        }
        tried.results.extend(suppressed);
        let next = match attempt::next_step(
            &tried.results,
            message.attempts + 1,
            &self.settings.policy.get(),
            message.created_at,
            self.clock.now(),
            &mut *crate::lock(&self.rng),
        ) {
            // Put off by quotas (with suppressed recipients recorded):
            // tried again when the first one resets.
            NextStep::RetryAt(at) => NextStep::RetryAt(tried.retry_at.unwrap_or(at)),
            give_up => give_up,
        };
        let (smtp_code, enhanced_code, detail) = attempt::headline(&tried.results);
        let statuses: Vec<(RecipientStatus, Option<BounceClass>)> =
            tried.results.iter().map(|r| (r.status, r.class)).collect();
        let relay = tried.relay;
        let record = AttemptRecord {
            started_at,
            duration: self.elapsed(started),
            relay: relay.clone(),
            outcome: tried.outcome,
            smtp_code,
            enhanced_code,
            detail,
            class: attempt::headline_class(&tried.results),
            recipients: tried.results,
            next,
            suppression: SuppressionPolicy::clone(&self.settings.suppression.get()),
        };
        match self
            .store
            .record_attempt_counted(&message.id, &self.settings.owner, record)
            .await
        {
            Ok(recorded) => {
                tracing::debug!(id = %message.id, status = %recorded.status, "attempt recorded");
                self.count_recorded(&message, &relay, &statuses, next, recorded);
            }
            Err(StoreError::LeaseLost) => {
                tracing::warn!(id = %message.id, "lease lost (cancelled or expired); attempt not recorded")
            }
            Err(error) => {
                tracing::error!(id = %message.id, error = %error, "recording the attempt failed")
            }
        }
    }

    /// Puts `message` off to `until` without an attempt: its attempt
    /// count stays, and its history says which quota and when it resets.
    async fn postpone(&self, message: &Claimed, tried: &Tried, until: time::OffsetDateTime) {
        let detail = tried
            .results
            .first()
            .and_then(|r| r.response.clone())
            .unwrap_or_else(|| "not tried: daily quota spent".to_owned());
        tracing::info!(
            id = %message.id,
            relay = %tried.relay,
            attempt = message.attempts,
            %until,
            "delivery postponed: daily quota spent"
        );
        let postponed = herald_store::Postponed {
            until,
            at: self.clock.now(),
            relay: tried.relay.clone(),
            detail,
        };
        match self
            .store
            .postpone(&message.id, &self.settings.owner, postponed)
            .await
        {
            Ok(()) => {}
            Err(StoreError::LeaseLost) => {
                tracing::warn!(id = %message.id, "lease lost (cancelled or expired); postponement not recorded")
            }
            Err(error) => {
                tracing::error!(id = %message.id, error = %error, "postponing the message failed")
            }
        }
    }

    async fn to_outbox(&self, message: &Claimed, envelope: &Envelope) -> Vec<RecipientResult> {
        match self
            .outbox
            .write(&message.id, message.rendered.clone())
            .await
        {
            Ok(path) => envelope
                .recipients()
                .iter()
                .map(|r| RecipientResult {
                    address: r.address().to_owned(),
                    status: RecipientStatus::Delivered,
                    smtp_code: None,
                    enhanced_code: None,
                    // The file's name only: answers never show server paths.
                    response: Some(format!(
                        "written to the file outbox as {}",
                        path.file_name().unwrap_or_default().to_string_lossy()
                    )),
                    class: None,
                })
                .collect(),
            Err(error) => {
                tracing::error!(error = %error, "writing to the outbox failed");
                defer_all(&message.recipients, &format!("outbox: {error}"))
            }
        }
    }
}

fn envelope_of(message: &Claimed) -> Result<Envelope, String> {
    let sender = message
        .sender
        .as_deref()
        .map(EmailAddress::parse_addr_spec)
        .transpose()
        .map_err(|e| format!("stored sender is invalid: {e}"))?;
    let recipients = message
        .recipients
        .iter()
        .map(|r| EmailAddress::parse_addr_spec(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("stored recipient is invalid: {e}"))?;
    Envelope::new(sender, recipients).map_err(|e| e.to_string())
}

fn fail_all(recipients: &[String], reason: &str) -> Vec<RecipientResult> {
    with_status(recipients, RecipientStatus::Failed, reason)
}

fn defer_all(recipients: &[String], reason: &str) -> Vec<RecipientResult> {
    with_status(recipients, RecipientStatus::Deferred, reason)
}

fn with_status(
    recipients: &[String],
    status: RecipientStatus,
    reason: &str,
) -> Vec<RecipientResult> {
    recipients
        .iter()
        .map(|address| RecipientResult {
            address: address.clone(),
            status,
            smtp_code: None,
            enhanced_code: None,
            response: Some(reason.to_owned()),
            class: Some(match status {
                RecipientStatus::Deferred => BounceClass::Network,
                _ => BounceClass::Other,
            }),
        })
        .collect()
}
