//! The dispatcher and its delivery workers: claim due messages under a
//! lease, deliver each through the relays (in order, skipping those whose
//! circuit is open) or the file outbox, and record the attempt, the
//! recipients' states and the next step in one store transaction.

mod attempt;
mod limits;
mod outbox;
mod report;

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

pub(crate) use outbox::Outbox;

use crate::observe::Metrics;
use crate::observe::metrics::{AttemptOutcome, RELAY_NONE, RELAY_OUTBOX};
use crate::trace::export::{EXPORT_TARGET, continue_message};
use herald_alerts::Alerting;
use limits::Quota;
use report::{Tried, Via};

/// How long the goodbye to the relays (QUIT on idle connections) may take
/// once deliveries are drained.
const QUIT_GRACE: Duration = Duration::from_secs(1);

/// One relay with its pool, circuit breaker and limits.
pub(crate) struct Relay {
    pub(crate) name: String,
    pub(crate) pool: Pool,
    pub(crate) breaker: Mutex<CircuitBreaker>,
    /// How fast messages may go, across every node.
    pub(crate) rate: Option<RateLimit>,
    /// How many a day, counted in the store.
    pub(crate) quota: Option<DailyQuota>,
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
    pub(crate) policy: RetryPolicy,
    /// Which failures put their address on the suppression list.
    pub(crate) suppression: SuppressionPolicy,
    /// Where due times, attempt times and breaker times come from.
    pub(crate) clock: SharedClock,
}

/// Claims due messages and delivers them, at most `concurrency` at once.
pub(crate) struct Dispatcher {
    store: Arc<dyn Store>,
    relays: Vec<Relay>,
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
        relays: Vec<Relay>,
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
            relays,
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

    /// Runs until `stop` is cancelled; then stops claiming, lets in-flight
    /// deliveries finish within the drain timeout, and gives back (releases)
    /// whatever is still unfinished, so nothing stays `sending`.
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken) {
        if self.relays.is_empty() {
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
            for message in claimed {
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
                        this.deliver(message, &abort).await;
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
        // QUIT is a courtesy: a relay that does not answer it must not hold
        // the exit up for its full QUIT timeout. Dropping the pending QUITs
        // at the grace closes those connections.
        let quit = async {
            for relay in &self.relays {
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

    /// Takes the suppressed recipients off `message` (they are not sent
    /// to) and returns their results. A store that cannot answer
    /// suppresses nobody: a lost look-up must not lose mail.
    async fn suppress(&self, message: &mut Claimed) -> Vec<RecipientResult> {
        let found = match self
            .store
            .suppressions_among(&message.recipients, self.clock.now())
            .await
        {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(error = %error, "suppression look-up failed; sending to everyone");
                return Vec::new();
            }
        };
        if found.is_empty() {
            return Vec::new();
        }
        let mut suppressed = Vec::new();
        message.recipients.retain(|address| {
            let key = herald_store::suppression::address_key(address);
            match found.iter().find(|entry| entry.address == key) {
                Some(entry) => {
                    tracing::info!(reason = %entry.reason, "recipient suppressed; not sent");
                    suppressed.push(attempt::suppressed_result(address, entry));
                    false
                }
                None => true,
            }
        });
        suppressed
    }

    /// One attempt for one claimed message.
    async fn deliver(&self, mut message: Claimed, abort: &CancellationToken) {
        let started_at = self.clock.now();
        let started = self.clock.instant();
        let suppressed = self.suppress(&mut message).await;
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
                Ok(envelope) if self.relays.is_empty() => {
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
        tried.results.extend(suppressed);
        let next = match attempt::next_step(
            &tried.results,
            message.attempts + 1,
            &self.settings.policy,
            message.created_at,
            self.clock.now(),
            &mut *crate::lock(&self.rng),
        ) {
            // Deferred by quotas: tried again when the first one resets.
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
            suppression: self.settings.suppression.clone(),
        };
        match self
            .store
            .record_attempt(&message.id, &self.settings.owner, record)
            .await
        {
            Ok(status) => {
                tracing::debug!(id = %message.id, status = %status, "attempt recorded");
                self.count_recorded(&message, &relay, &statuses, next, status);
            }
            Err(StoreError::LeaseLost) => {
                tracing::warn!(id = %message.id, "lease lost (cancelled or expired); attempt not recorded")
            }
            Err(error) => {
                tracing::error!(id = %message.id, error = %error, "recording the attempt failed")
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

    /// Tries the relays in order, skipping those whose circuit is open;
    /// the first that takes the transaction decides the outcome. Every
    /// relay tried is reported on its own. `None` when cancelled by
    /// shutdown.
    async fn via_relays(
        &self,
        message: &Claimed,
        envelope: &Envelope,
        abort: &CancellationToken,
    ) -> Option<Tried> {
        let ctx = Ctx {
            deadline: None,
            cancel: abort.clone(),
        };
        let options = SendOptions {
            smtputf8: message.smtputf8,
        };
        let mut last: Option<Tried> = None;
        let mut skipped: Option<&Relay> = None;
        // The first relay skipped for its quota, and when the first of
        // those quotas resets.
        let mut spent: Option<(&Relay, time::OffsetDateTime)> = None;
        for relay in &self.relays {
            let quota = self.take_quota(relay).await;
            if let Quota::Spent(reset) = quota {
                tracing::debug!(relay = %relay.name, %reset, "daily quota spent; skipping relay");
                spent = Some(match spent {
                    Some((first, at)) => (first, at.min(reset)),
                    None => (relay, reset),
                });
                continue;
            }
            let allowed = relay
                .breaker
                .lock()
                .map(|mut b| b.allow(self.clock.instant()))
                .unwrap_or(true);
            if !allowed {
                tracing::debug!(relay = %relay.name, "circuit open; skipping relay");
                self.return_quota(relay, quota).await;
                skipped = skipped.or(Some(relay));
                continue;
            }
            // Over the rate, the message waits here for a slot, under its
            // lease; shutdown's abort gives it back untried.
            if !self.wait_for_slot(relay, abort).await {
                self.return_quota(relay, quota).await;
                return None;
            }
            let started = self.clock.instant();
            // Exported only: the relay's SMTP session for this message,
            // with an event per reply (the phases) and per recipient.
            let span = tracing::info_span!(
                target: EXPORT_TARGET,
                "smtp",
                otel.kind = "client",
                relay = %relay.name,
                server.address = %relay.pool.client_config().host,
                otel.status_code = tracing::field::Empty,
                otel.status_description = tracing::field::Empty,
            );
            let sent = relay
                .pool
                .send(envelope, &message.rendered, options, &ctx)
                .instrument(span.clone())
                .await;
            match sent {
                Ok(outcomes) => {
                    record_breaker(
                        relay,
                        BreakerOutcome::Success,
                        started,
                        self.clock.instant(),
                    );
                    let results: Vec<_> = outcomes.iter().map(attempt::recipient_result).collect();
                    for (index, result) in results.iter().enumerate() {
                        tracing::info!(
                            target: EXPORT_TARGET,
                            parent: &span,
                            recipient = index,
                            status = result.status.as_str(),
                            code = result.smtp_code,
                            "recipient"
                        );
                    }
                    let tried = Tried::new(&relay.name, results, self.elapsed(started));
                    self.report(message, &tried, Via::Relay);
                    return Some(tried);
                }
                Err(error) if error.kind() == ErrorKind::Cancelled && !error.is_ambiguous() => {
                    self.return_quota(relay, quota).await;
                    return None;
                }
                Err(error) => {
                    if !error.is_ambiguous() {
                        // Refused before it could count at the relay.
                        self.return_quota(relay, quota).await;
                    }
                    span.record("otel.status_code", "error");
                    span.record("otel.status_description", error.to_string());
                    record_breaker(
                        relay,
                        breaker_outcome(&error),
                        started,
                        self.clock.instant(),
                    );
                    let results = message
                        .recipients
                        .iter()
                        .map(|r| attempt::failed_result(r, &error))
                        .collect();
                    let tried = Tried {
                        relay: relay.name.clone(),
                        outcome: AttemptOutcome::Error,
                        results,
                        duration: self.elapsed(started),
                        retry_at: None,
                    };
                    self.report(message, &tried, Via::Relay);
                    if error.is_ambiguous() {
                        // The relay may have taken it: another relay now
                        // could deliver it twice. Later, as a retry.
                        return Some(tried);
                    }
                    last = Some(tried);
                }
            }
        }
        if let Some(tried) = last {
            return Some(tried);
        }
        if let (None, Some((relay, reset))) = (skipped, spent) {
            // Every relay's quota is spent: retried at the first reset.
            let limit = relay.quota.map_or(0, |q| q.limit);
            let reason = format!(
                "not tried: the daily quota of relay {} ({limit}) is spent; quota resets at {}",
                relay.name,
                reset
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_else(|_| reset.to_string()),
            );
            let mut tried = Tried::new(
                &relay.name,
                defer_all(&message.recipients, &reason),
                Duration::ZERO,
            );
            tried.retry_at = Some(reset);
            self.report(message, &tried, Via::Nowhere);
            return Some(tried);
        }
        // Nothing was tried: every circuit is open. The deferral is the
        // first skipped relay's, so that its panels show it.
        let relay = skipped.map_or(RELAY_NONE, |r| r.name.as_str());
        let reason = format!("not tried: the circuit of relay {relay} is open");
        let tried = Tried::new(
            relay,
            defer_all(&message.recipients, &reason),
            Duration::ZERO,
        );
        self.report(message, &tried, Via::Nowhere);
        Some(tried)
    }
}

/// Feeds the breaker a call that ran from `started` to `now`.
fn record_breaker(relay: &Relay, outcome: BreakerOutcome, started: Instant, now: Instant) {
    if let Ok(mut breaker) = relay.breaker.lock() {
        breaker.record_call(outcome, now.saturating_duration_since(started), now);
    }
}

/// What a failed send says about the relay's health: a timeout, a `421`,
/// or any other fault of the connection (refused, TLS, AUTH, a dropped
/// session) counts against it; a refusal of this message or of its
/// recipients (size, content, "user unknown") is no fault of the relay's.
fn breaker_outcome(error: &herald_smtp::Error) -> BreakerOutcome {
    if error.is_timeout() {
        BreakerOutcome::Timeout
    } else if error.smtp_code() == Some(421) {
        BreakerOutcome::Throttled
    } else if error.scope() == herald_smtp::Scope::Connection {
        BreakerOutcome::ConnectionFailure
    } else {
        BreakerOutcome::RecipientRejected
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
