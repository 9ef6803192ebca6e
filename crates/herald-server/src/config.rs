//! The service's configuration: the TOML file (plus a few environment
//! overrides) read once at start-up into a validated [`Config`], so that
//! every mistake is reported before anything runs, naming the field, and
//! the rest of the service works with typed values only.
//!
//! The file format is documented in `docs/configuration.md`; its tests
//! parse every example there, so the two cannot drift apart.

mod api_key;
mod build;
mod error;
mod keys;
mod preset;
mod raw;

mod relay;
mod submission;
mod suppression;
#[cfg(test)]
mod tests;
mod webhooks;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_policy::{BreakerConfig, DailyQuota, RateLimit, RetryPolicy};
use herald_smtp::{ClientConfig, PoolConfig, Timeouts};

pub use api_key::{ApiKey, Scope, Scopes};
pub use error::ConfigError;
pub use submission::SubmissionConfig;
pub use webhooks::{WebhookConfig, WebhookSecret};

/// The environment variable whose comma-separated keys are added to
/// `auth.api_keys`.
pub const ENV_API_KEYS: &str = "HERALD_API_KEYS";
/// The environment variable that replaces `store.url`.
pub const ENV_STORE_URL: &str = "HERALD_STORE_URL";
/// The environment variable that replaces `server.http_listen`.
pub const ENV_HTTP_LISTEN: &str = "HERALD_HTTP_LISTEN";

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`: the HTTP listener and shutdown.
    pub server: ServerConfig,
    /// `[store]`: where queued mail waits.
    pub store: StoreConfig,
    /// `[auth]`: the API keys.
    pub auth: AuthConfig,
    /// `[retry]`: the retry schedule, validated.
    pub retry: RetryPolicy,
    /// `[delivery]`: the dispatcher and SMTP timeouts.
    pub delivery: DeliveryConfig,
    /// `[limits]`: what the API accepts.
    pub limits: LimitsConfig,
    /// `[outbox]`: the file outbox, used when `relays` is empty.
    pub outbox: OutboxConfig,
    /// `[[relays]]`, in file order; empty means "write to the outbox".
    pub relays: Vec<RelayConfig>,
    /// `[tracing]`: export of spans over OTLP/HTTP, off by default.
    pub tracing: TracingConfig,
    /// `[alerts]`: error groups, alert channels and rules.
    pub alerts: herald_alerts::AlertsConfig,
    /// `[submission]`: the SMTP submission listeners; `None` (the default)
    /// means herald does not accept mail over SMTP.
    pub submission: Option<SubmissionConfig>,
    /// `[suppression]`: which failures suppress their address by
    /// themselves (default: `invalid_recipient`, for good).
    pub suppression: herald_store::SuppressionPolicy,
    /// `[[webhooks]]`: the endpoints told about events (none by default).
    pub webhooks: Vec<WebhookConfig>,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address and port of the HTTP API (default `127.0.0.1:8080`).
    pub http_listen: SocketAddr,
    /// How long a graceful shutdown waits for in-flight deliveries before
    /// releasing their leases, and for open HTTP connections before
    /// closing them (default 30 s).
    pub drain_timeout: Duration,
    /// How long a request's headers may take, from their first byte
    /// (default 10 s).
    pub header_read_timeout: Duration,
    /// How long a request's body may take, from the end of its headers
    /// (default 60 s).
    pub body_read_timeout: Duration,
    /// How long a connection may wait for its next request (default 60 s).
    pub idle_timeout: Duration,
    /// HTTP connections open at once; more wait to be accepted (default
    /// 1024).
    pub max_connections: usize,
    /// The umask `herald serve` sets before it creates any file (default
    /// `0o077`: files 0600, directories 0700).
    pub umask: u32,
    /// This node's stable name: the owner of its leases, and how a
    /// restarted node recognises the leases it held (default
    /// `HOSTNAME:PORT`, from the host name and the HTTP listen port, so
    /// that nodes on one host differ and a restart keeps the name).
    pub node_id: String,
}

/// `[store]`.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `sqlite://relative/path`, `sqlite:///absolute/path`,
    /// `sqlite::memory:` or `postgres://…` (default `sqlite://herald.db`).
    /// May contain a password: log [`redacted_url`](Self::redacted_url).
    /// Read from the variable `url_env` names when that is set.
    pub url: String,
    /// PostgreSQL connections this node keeps (default 16).
    pub pool_size: usize,
    /// How long finished messages (bodies, recipients, events) are kept
    /// before retention deletes them (default 30 days).
    pub retention: Duration,
    /// How long webhook events every endpoint has passed, and webhook
    /// delivery tries, are kept (default 7 days).
    pub event_retention: Duration,
    /// How long a suppression entry is kept after it lapsed (default 30
    /// days).
    pub lapsed_retention: Duration,
}

impl StoreConfig {
    /// The URL as [`crate::redact::url`] shows it, for logs and output.
    pub fn redacted_url(&self) -> String {
        crate::redact::url(&self.url)
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.redacted_url())
            .field("pool_size", &self.pool_size)
            .field("retention", &self.retention)
            .field("event_retention", &self.event_retention)
            .field("lapsed_retention", &self.lapsed_retention)
            .finish()
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// Every accepted key: `[[auth.keys]]` (named, with their scopes),
    /// then `api_keys`, then those from `api_keys_env`, then those from
    /// `HERALD_API_KEYS` (every scope). Empty when none is configured;
    /// whether that is acceptable is the caller's decision.
    pub api_keys: Vec<ApiKey>,
}

/// `[delivery]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Deliveries in flight at once on this node (default 16).
    pub concurrency: usize,
    /// How long a claimed message stays ours without a heartbeat before
    /// another node may take it (default 60 s). The node renews its
    /// leases every third of this while it works, so a DATA phase may
    /// last longer than the lease.
    pub lease: Duration,
    /// A message whose lease ends this many times in a row without an
    /// attempt being recorded (its worker's node died each time) is
    /// failed as a poison message (default 3).
    pub max_lost_leases: u32,
    /// How often an idle dispatcher looks for due messages (default 1 s).
    pub poll_interval: Duration,
    /// SMTP timeouts: `connect_timeout` → connect and TLS;
    /// `command_timeout` → banner, commands, MAIL, RCPT, DATA;
    /// `data_timeout` → the body and the reply to the final dot.
    pub timeouts: Timeouts,
    /// The name given in EHLO (default: this machine's host name).
    pub helo_name: String,
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Largest rendered message in bytes; larger is `413` (default 25 MiB).
    pub max_message_bytes: usize,
    /// Most messages in one batch request (default 1000).
    pub max_batch: usize,
    /// Most unfinished messages before new ones get `429` (default 1 000 000).
    pub max_queue_depth: u64,
    /// Most recipients (to + cc + bcc) of one message (default 100).
    pub max_recipients: usize,
}

/// `[outbox]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Directory that receives one `.eml` file per message when no relay is
    /// configured (default `outbox`, relative to the working directory).
    pub dir: PathBuf,
}

/// One `[[relays]]` entry.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Unique name, `[a-z0-9_-]+`; used in logs, metrics and events.
    pub name: String,
    /// How to reach and talk to the relay (secrets included, masked in
    /// `Debug`).
    pub client: ClientConfig,
    /// Connection pool sizes.
    pub pool: PoolConfig,
    /// When to stop talking to the relay for a while.
    pub breaker: BreakerConfig,
    /// `rate` and `burst`: how fast messages may go to the relay, across
    /// every node; `None`: as fast as the pool allows.
    pub rate: Option<RateLimit>,
    /// `daily_quota` and `quota_reset`: how many messages the relay takes
    /// a day, counted in the store; `None`: no quota.
    pub daily_quota: Option<DailyQuota>,
    /// The `provider` preset the entry started from (with SES's region),
    /// e.g. `gmail` or `ses (eu-west-1)`; `None` without one.
    pub provider: Option<String>,
}

/// `[tracing]`: where spans go (the `accept` of a message, each delivery
/// attempt and its SMTP phases), in the message's trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// The OTLP/HTTP base URL (`http://…` or `https://…`, e.g.
    /// `http://127.0.0.1:4318`); `None` (the default) means no export.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute (default `herald`).
    pub service_name: String,
    /// The fraction of traces exported, decided from the trace id, 0.0 to
    /// 1.0 (default 1.0).
    pub sample_ratio: f64,
}

impl TracingConfig {
    /// Where spans are posted, as [`crate::redact::url`] shows it.
    pub fn redacted_traces_url(&self) -> Option<String> {
        self.traces_url().map(|url| crate::redact::url(&url))
    }

    /// Where spans are posted: `<otlp_endpoint>/v1/traces`; `None` when
    /// export is off. May hold a password: show
    /// [`redacted_traces_url`](Self::redacted_traces_url).
    pub fn traces_url(&self) -> Option<String> {
        self.otlp_endpoint
            .as_deref()
            .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
    }
}

impl Config {
    /// Reads and validates the file at `path`; the environment is the
    /// process's (see [`from_toml_str`](Self::from_toml_str)).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("config", format!("cannot read {}: {e}", path.display()))
        })?;
        Self::from_toml_str(&text, &|name| std::env::var(name).ok())
    }

    /// Parses and validates a configuration, with `env` standing for the
    /// environment: it is asked for `HERALD_API_KEYS`, `HERALD_STORE_URL`,
    /// `HERALD_HTTP_LISTEN`, and for the variables the file names
    /// (`auth.api_keys_env`, `relays[].password_env`,
    /// `relays[].oauth2_token_env`).
    pub fn from_toml_str(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| error::from_toml(text, &e))?;
        build::build(raw, env)
    }

    /// The configuration used when there is no file: every default, no
    /// relay (so mail goes to the outbox), and no API key — the caller
    /// decides whether to refuse, generate one, or read the environment.
    /// The environment is not consulted.
    pub fn default_embedded() -> Self {
        build::defaults()
    }
}
