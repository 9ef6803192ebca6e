//! Live reload: SIGHUP or `POST /v1/admin/reload` reads the configuration
//! file again and, if it validates, puts its live sections in force
//! without a restart: relays (with their limits and breakers), the retry
//! and suppression policies, `[limits]`, the API keys, the alert rules
//! and the webhooks. In-flight deliveries finish on the relay handles
//! they hold; open HTTP connections stay open. A file that does not
//! validate changes nothing and is refused with `check-config`'s error.
//! Fields read only at start (listen addresses, the store, the delivery
//! workers' sizes, …) are named in a warning: they need a restart.

mod diff;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use herald_alerts::Alerting;
use herald_policy::{CircuitBreaker, SharedClock};
use herald_smtp::Pool;

pub(crate) use diff::same_relay;
pub(crate) use webhooks::WebhookSenders;

use crate::api::ApiLimits;
use crate::config::{ApiKey, Config, ConfigError, RelayConfig};
use crate::dispatch::{Dispatcher, Held, Relay};
use crate::live::Live;
use crate::observe::Metrics;

/// Where a reload reads the configuration: the file `herald serve` was
/// started with (or the defaults and the environment, without one). Its
/// error is the one `herald check-config` prints.
pub type ConfigSource = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// How often a replaced relay is looked at until its last delivery is
/// done, so that its idle connections can be closed politely.
const DRAIN_CHECK: Duration = Duration::from_millis(250);
/// How long a replaced relay's idle connections may take to say QUIT.
const QUIT_GRACE: Duration = Duration::from_secs(1);

/// The answer to a reload that was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The sections now in force that differ from before (empty when the
    /// file said what was already running).
    pub changed: Vec<String>,
    /// Fields that differ from what runs but are only read at start: they
    /// take effect at the next restart.
    pub restart_needed: Vec<String>,
}

/// Everything a reload replaces, and the configuration in force.
pub(crate) struct Reloader {
    source: ConfigSource,
    /// The configuration in force: the live sections as last applied,
    /// the start-only fields as at start. Held across a whole reload, so
    /// that two reloads never interleave.
    running: tokio::sync::Mutex<Config>,
    dispatcher: Arc<Dispatcher>,
    keys: Live<Vec<ApiKey>>,
    limits: Live<ApiLimits>,
    alerting: Arc<Alerting>,
    webhooks: Arc<WebhookSenders>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

/// The handles a [`Reloader`] swaps.
pub(crate) struct Targets {
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) keys: Live<Vec<ApiKey>>,
    pub(crate) limits: Live<ApiLimits>,
    pub(crate) alerting: Arc<Alerting>,
    pub(crate) webhooks: Arc<WebhookSenders>,
    pub(crate) metrics: Arc<Metrics>,
}

/// A relay's handle as the dispatcher uses it, new: an empty pool, a
/// closed breaker.
pub(crate) fn relay(config: &RelayConfig, clock: &SharedClock) -> Relay {
    Relay {
        name: config.name.clone(),
        pool: Pool::new(config.client_with_clock(clock), config.pool),
        breaker: std::sync::Mutex::new(CircuitBreaker::new(config.breaker.clone())),
        rate: config.rate,
        quota: config.daily_quota,
        held: Held::default(),
        max_connections: config.pool.max_connections,
    }
}

/// `[limits]` as the API applies it.
pub(crate) fn api_limits(config: &Config) -> ApiLimits {
    let mut message = herald_message::Limits::default();
    message.max_recipients = config.limits.max_recipients;
    ApiLimits {
        max_message_bytes: config.limits.max_message_bytes,
        max_batch: config.limits.max_batch,
        max_queue_depth: config.limits.max_queue_depth,
        message,
    }
}

/// What `herald serve` refuses to start without, refused by a reload
/// too: a file that locks every client out.
fn usable(config: &Config) -> Result<(), ConfigError> {
    if config.auth.api_keys.is_empty() {
        return Err(ConfigError::new(
            "auth.api_keys",
            "no API key configured (set auth.api_keys in the config file or HERALD_API_KEYS)",
        ));
    }
    Ok(())
}

impl Reloader {
    pub(crate) fn new(source: ConfigSource, running: Config, targets: Targets) -> Self {
        Self {
            source,
            running: tokio::sync::Mutex::new(running),
            dispatcher: targets.dispatcher,
            keys: targets.keys,
            limits: targets.limits,
            alerting: targets.alerting,
            webhooks: targets.webhooks,
            metrics: targets.metrics,
        }
    }

    /// Reads the configuration again and puts its live sections in force;
    /// `Err` with `check-config`'s error text when it does not validate
    /// (nothing changes then). `trigger` says who asked, for the log.
    pub(crate) async fn reload(&self, trigger: &str) -> Result<Applied, String> {
        let mut running = self.running.lock().await;
        let source = Arc::clone(&self.source);
        // Reading the file and building the TLS roots block: off the
        // runtime's threads.
        let loaded = tokio::task::spawn_blocking(move || source())
            .await
            .unwrap_or_else(|_| Err(ConfigError::new("config", "reading it failed")));
        let new = match loaded.and_then(|config| usable(&config).map(|()| config)) {
            Ok(config) => config,
            Err(error) => {
                self.metrics.config_reload(false);
                tracing::error!(
                    trigger,
                    error = %error,
                    "configuration reload refused; the running configuration stays in force"
                );
                return Err(error.to_string());
            }
        };
        let changes = diff::diff(&running, &new);
        if changes.relays {
            self.replace_relays(&running.relays, &new.relays);
        }
        if changes.retry || changes.suppression {
            self.dispatcher.settings().policy.set(new.retry.clone());
            self.dispatcher
                .settings()
                .suppression
                .set(new.suppression.clone());
        }
        if changes.limits {
            self.limits.set(api_limits(&new));
        }
        if changes.auth {
            self.keys.set(new.auth.api_keys.clone());
        }
        if changes.alert_rules {
            let dropped = self.alerting.set_rules(new.alerts.rules.clone());
            if dropped > 0 {
                tracing::warn!(
                    dropped,
                    "open alert incidents of changed or removed rules were dropped without a resolve"
                );
            }
        }
        if changes.webhooks {
            self.webhooks.replace(new.webhooks.clone()).await;
        }
        changes.carry_over(&mut running, new);
        let applied = Applied {
            changed: changes.live_sections(),
            restart_needed: changes.restart_needed.clone(),
        };
        self.metrics.config_reload(true);
        tracing::info!(
            trigger,
            changed = ?applied.changed,
            "configuration reloaded"
        );
        if !applied.restart_needed.is_empty() {
            tracing::warn!(
                fields = ?applied.restart_needed,
                "configuration reloaded, but these fields are read at start only: restart herald to apply them"
            );
        }
        Ok(applied)
    }

    /// Gives the dispatcher the relays of `new`: an unchanged relay keeps
    /// its handle (pool, breaker state), a changed or new one gets a new
    /// handle, and a replaced or removed handle drains: its in-flight
    /// deliveries finish on it, then its idle connections are closed.
    fn replace_relays(&self, old: &[RelayConfig], new: &[RelayConfig]) {
        let handles = self.dispatcher.relays();
        let mut kept = Vec::with_capacity(new.len());
        for config in new {
            let same = old
                .iter()
                .zip(handles.iter())
                .find(|(was, _)| same_relay(was, config));
            kept.push(match same {
                Some((_, handle)) => Arc::clone(handle),
                None => Arc::new(relay(config, &self.dispatcher.settings().clock)),
            });
        }
        let retired: Vec<Arc<Relay>> = handles
            .iter()
            .filter(|handle| !kept.iter().any(|k| Arc::ptr_eq(k, handle)))
            .cloned()
            .collect();
        self.dispatcher.set_relays(kept);
        drop(handles);
        for handle in retired {
            tokio::spawn(drain(Arc::clone(&self.dispatcher), handle));
        }
    }
}

/// Waits until no delivery holds `relay` any more, then gives back the
/// quota units it holds (its successor takes blocks of its own) and
/// closes its idle connections (QUIT, within a grace).
async fn drain(dispatcher: Arc<Dispatcher>, relay: Arc<Relay>) {
    while Arc::strong_count(&relay) > 1 {
        tokio::time::sleep(DRAIN_CHECK).await;
    }
    dispatcher.give_back(&relay).await;
    if tokio::time::timeout(QUIT_GRACE, relay.pool.close_idle())
        .await
        .is_err()
    {
        tracing::debug!(relay = %relay.name, "a replaced relay did not answer QUIT in time");
    }
    tracing::info!(relay = %relay.name, "replaced relay drained");
}
