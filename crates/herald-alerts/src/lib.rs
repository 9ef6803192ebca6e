//! Error aggregation and alerting, apart from mail delivery. Every failed or deferred attempt is
//! fingerprinted into an error group (`GET /v1/errors`); rules watch the
//! groups and relays over sliding windows and notify chat robots and
//! webhooks in tiers, once per incident, with a resolve when it clears.
//!
//! The decisions ([`fingerprint`], [`ErrorGroups`], [`RuleEngine`]) are pure
//! and take the time as an argument; [`Alerting`] is the thin shell that
//! holds them behind a mutex, evaluates on a timer and hands alerts to
//! per-channel senders through bounded queues, so that recording a failure
//! costs a brief lock and never waits for a webhook.
//!
//! It knows nothing of the service that feeds it: the service records
//! failures and attempts, serves the groups, and carries the feed between
//! nodes; the channels post with their own HTTP client.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod channels;
mod config;
mod feed;
mod fingerprint;
mod groups;
mod rules;
mod sender;
mod window;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_policy::SharedClock;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub use channels::{ChannelKind, SIGNATURE_HEADER, TIMESTAMP_HEADER, webhook_signature};
pub use config::{AlertsConfig, AlertsConfigError, ChannelConfig, RawAlerts, SendPolicy};
pub use feed::FeedItem;
pub use fingerprint::{FailureClass, Fingerprint, MAX_TEXT_CHARS, fingerprint, normalise};
pub use groups::{ErrorGroups, FailureSample, GroupFilter, GroupView};
pub use rules::{
    AlertEvent, AlertKind, AlertRule, AlertSample, RuleEngine, RuleScope, Threshold, Tier,
};
pub use sender::{ChannelStats, describe as describe_http_error};

use feed::Outgoing;
use sender::{ChannelHandle, Worker};

/// The longest evaluation period (a longer one is taken as this).
const MAX_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// The error groups, the rules and the channels of one herald process.
/// Share it in an `Arc`: the delivery workers record, the API reads, and
/// [`spawn_evaluator`](Self::spawn_evaluator) evaluates and sends.
pub struct Alerting {
    window: Duration,
    evaluate_every: Duration,
    groups: Mutex<ErrorGroups>,
    /// Locked by the evaluator only, and before `groups` when both are.
    engine: Mutex<RuleEngine>,
    channels: Vec<ChannelHandle>,
    /// The channels' workers until the evaluator starts them.
    workers: Mutex<Vec<Worker>>,
    /// What this node has seen and not yet told the others, when nodes
    /// share a store ([`shared`](Self::shared)).
    outgoing: Option<Mutex<Outgoing>>,
    /// Where the evaluator and the senders read the time.
    clock: SharedClock,
    /// Rule evaluations run by this node.
    evaluations: AtomicU64,
}

impl fmt::Debug for Alerting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alerting")
            .field("window", &self.window)
            .field(
                "channels",
                &self
                    .channels
                    .iter()
                    .map(ChannelHandle::name)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Alerting {
    /// Groups and rules as configured, reading the time from `clock`;
    /// nothing runs until [`spawn_evaluator`](Self::spawn_evaluator).
    pub fn new(config: AlertsConfig, clock: SharedClock) -> Self {
        let mut channels = Vec::with_capacity(config.channels.len());
        let mut workers = Vec::with_capacity(config.channels.len());
        for channel in config.channels {
            let (handle, worker) = sender::channel(
                channel,
                config.queue_capacity,
                config.send,
                Arc::clone(&clock),
            );
            channels.push(handle);
            workers.push(worker);
        }
        Self {
            window: config.window,
            evaluate_every: config.evaluate_every,
            groups: Mutex::new(ErrorGroups::new(config.max_groups, config.history)),
            engine: Mutex::new(RuleEngine::new(config.rules)),
            channels,
            workers: Mutex::new(workers),
            outgoing: None,
            clock,
            evaluations: AtomicU64::new(0),
        }
    }

    /// Keeps what this node records for the other nodes too
    /// ([`take_outgoing`](Self::take_outgoing)), for a store that several
    /// nodes share.
    pub fn shared(mut self) -> Self {
        self.outgoing = Some(Mutex::new(Outgoing::default()));
        self
    }

    /// What this node recorded since the last call, for the other nodes;
    /// empty unless [`shared`](Self::shared).
    pub fn take_outgoing(&self, now: OffsetDateTime) -> Vec<FeedItem> {
        self.outgoing
            .as_ref()
            .map(|out| lock(out).take(now))
            .unwrap_or_default()
    }

    /// Adds what another node recorded to this node's groups and counts.
    pub fn ingest(&self, item: FeedItem) {
        match item {
            FeedItem::Failure {
                relay,
                class,
                smtp_code,
                enhanced_code,
                response,
                message_id,
                at,
            } => {
                let sample = FailureSample {
                    relay,
                    class,
                    smtp_code,
                    enhanced_code,
                    response,
                    message_id,
                    at,
                };
                let fp = sample.fingerprint();
                lock(&self.groups).record_fingerprinted(fp, sample);
            }
            FeedItem::Attempts { relay, count, at } => {
                lock(&self.groups).record_attempts(&relay, at, count);
            }
        }
    }

    /// Adds a failed or deferred attempt to its error group. Cheap: a
    /// fingerprint and a brief lock; never waits for a webhook.
    pub fn record_failure(&self, sample: FailureSample) {
        // Normalising and hashing happen before the lock.
        let fp = sample.fingerprint();
        if let Some(out) = &self.outgoing {
            lock(out).failure(&sample);
        }
        lock(&self.groups).record_fingerprinted(fp, sample);
    }

    /// Counts one delivery attempt through `relay`, whatever its outcome
    /// (the denominator of failure rates).
    pub fn record_attempt(&self, relay: &str, at: OffsetDateTime) {
        if let Some(out) = &self.outgoing {
            lock(out).attempt(relay);
        }
        lock(&self.groups).record_attempt(relay, at);
    }

    /// The error groups for `GET /v1/errors`, most frequent within the
    /// window first (the default window when the filter has none).
    pub fn groups(&self, filter: &GroupFilter, now: OffsetDateTime) -> Vec<GroupView> {
        lock(&self.groups).views(filter, self.window, now)
    }

    /// `alerts.window`: the default window of `GET /v1/errors`.
    pub fn default_window(&self) -> Duration {
        self.window
    }

    /// `alerts.evaluate_every`: the period to give
    /// [`spawn_evaluator`](Self::spawn_evaluator).
    pub fn evaluate_every(&self) -> Duration {
        self.evaluate_every
    }

    /// Evaluates the rules at `now`, logs each alert and queues it for its
    /// channels (dropping it where a queue is full). Returns the alerts.
    /// The evaluator calls this on its timer; tests call it with a fake time.
    pub fn tick(&self, now: OffsetDateTime) -> Vec<AlertEvent> {
        let events = {
            let mut engine = lock(&self.engine);
            // The groups' lock (which recording takes) only while counting.
            let readings = {
                let mut groups = lock(&self.groups);
                let readings = engine.measure(&groups, now);
                groups.prune(now);
                readings
            };
            engine.decide(readings, now)
        };
        // Drops are counted per channel and logged once per evaluation, so
        // that a storm does not become a storm of log lines too.
        let mut dropped = vec![0u64; self.channels.len()];
        for event in &events {
            log(event);
            let shared = Arc::new(event.clone());
            for name in &event.channels {
                match self.channels.iter().position(|c| c.name() == name.as_str()) {
                    Some(i) => {
                        let queued = self
                            .channels
                            .get(i)
                            .is_some_and(|c| c.offer(Arc::clone(&shared)));
                        if !queued && let Some(d) = dropped.get_mut(i) {
                            *d += 1;
                        }
                    }
                    None => {
                        tracing::warn!(channel = %name, rule = %event.rule, "alert for an unknown channel");
                    }
                }
            }
        }
        // Counted once the alerts are queued: a reader that sees this
        // evaluation sees them pending (or done) too.
        self.evaluations.fetch_add(1, Ordering::SeqCst);
        for (channel, dropped) in self.channels.iter().zip(dropped) {
            if dropped > 0 {
                tracing::warn!(
                    channel = channel.name(),
                    dropped,
                    "alert queue full; alerts dropped"
                );
            }
        }
        events
    }

    /// The rules now.
    pub fn rules(&self) -> Vec<AlertRule> {
        lock(&self.engine).rules().to_vec()
    }

    /// Replaces the rules for the next evaluations (a configuration
    /// reload; see [`RuleEngine::replace_rules`]). The channels, windows
    /// and queues stay as they were built. Returns how many open
    /// incidents of changed or removed rules were dropped.
    pub fn set_rules(&self, rules: Vec<AlertRule>) -> usize {
        lock(&self.engine).replace_rules(rules)
    }

    /// Counts per channel (sent, failed, dropped, retried, pending).
    pub fn channel_stats(&self) -> Vec<ChannelStats> {
        self.channels.iter().map(ChannelHandle::stats).collect()
    }

    /// How many times this node has evaluated the rules ([`tick`](Self::tick)):
    /// it stays put on a node that does not lead the evaluation.
    pub fn evaluations(&self) -> u64 {
        self.evaluations.load(Ordering::SeqCst)
    }

    /// Starts the channels' senders and evaluates every `every` (the first
    /// time one period from now, by tokio's timer) at the clock's time,
    /// until `stop`. With
    /// `leading`, only while it says `true` (the node holds the alert
    /// evaluator's role among nodes sharing a store), so that N nodes never
    /// send N copies of one alert. The handle ends once the evaluator and
    /// the senders have stopped; alerts still queued then are not sent.
    /// Call once: a second call evaluates but starts no sender.
    pub fn spawn_evaluator(
        self: Arc<Self>,
        every: Duration,
        stop: CancellationToken,
        leading: Option<watch::Receiver<bool>>,
    ) -> JoinHandle<()> {
        let workers = std::mem::take(&mut *lock(&self.workers));
        tokio::spawn(async move {
            let mut senders = JoinSet::new();
            for worker in workers {
                senders.spawn(worker.run(stop.clone()));
            }
            let every = every.clamp(Duration::from_millis(10), MAX_PERIOD);
            let mut timer = tokio::time::interval_at(Instant::now() + every, every);
            timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = timer.tick() => {
                        let now = self.clock.now();
                        if leading.as_ref().is_none_or(|leading| *leading.borrow()) {
                            self.tick(now);
                        } else {
                            // Another node evaluates; this one only keeps
                            // its groups (for GET /v1/errors) bounded.
                            lock(&self.groups).prune(now);
                        }
                    }
                }
            }
            while senders.join_next().await.is_some() {}
        })
    }
}

/// One log line per alert: the alert's own record.
fn log(event: &AlertEvent) {
    let group = event.sample.as_ref().map(|s| s.group_id.as_str());
    match event.kind {
        AlertKind::Fire => tracing::warn!(
            rule = %event.rule,
            tier = %event.tier,
            scope = event.scope.as_str(),
            key = %event.key,
            relay = %event.relay,
            count = event.count,
            attempts = event.attempts,
            window = ?event.window,
            group,
            "alert firing"
        ),
        AlertKind::Resolve => tracing::info!(
            rule = %event.rule,
            tier = %event.tier,
            scope = event.scope.as_str(),
            key = %event.key,
            relay = %event.relay,
            group,
            "alert resolved"
        ),
    }
}

/// The mutex's guard, even if a panic elsewhere poisoned it: for state
/// that every step leaves whole (counts, maps updated in one call).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
