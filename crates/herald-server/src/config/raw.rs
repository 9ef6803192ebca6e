//! The configuration file exactly as written: serde types that refuse
//! unknown keys, with a named default for every field. Nothing here checks
//! that values make sense together; `build` does that once, naming fields.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use herald_policy::Jitter;
use herald_smtp::{Mechanism, TlsMode};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// The whole file. Every section may be left out.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawConfig {
    /// `[server]`: the HTTP listener and shutdown.
    pub(crate) server: RawServer,
    /// `[store]`: where queued mail waits.
    pub(crate) store: RawStore,
    /// `[auth]`: who may call the API.
    pub(crate) auth: super::keys::RawAuth,
    /// `[retry]`: the retry schedule.
    pub(crate) retry: RawRetry,
    /// `[delivery]`: the dispatcher and SMTP timeouts.
    pub(crate) delivery: RawDelivery,
    /// `[limits]`: what the API accepts.
    pub(crate) limits: RawLimits,
    /// `[outbox]`: the file outbox used when no relay is configured.
    pub(crate) outbox: RawOutbox,
    /// `[[relays]]`: the SMTP relays mail goes through.
    pub(crate) relays: Vec<RawRelay>,
    /// `[tracing]`: export of spans over OTLP/HTTP (off by default).
    pub(crate) tracing: RawTracing,
    /// `[alerts]`: error groups, alert channels and rules.
    pub(crate) alerts: herald_alerts::RawAlerts,
    /// `[submission]`: the SMTP submission listeners (off when absent).
    pub(crate) submission: Option<super::submission::RawSubmission>,
    /// `[suppression]`: automatic entries of the suppression list.
    pub(crate) suppression: super::suppression::RawSuppression,
    /// `[[webhooks]]`: event webhooks to the application.
    pub(crate) webhooks: Vec<super::webhooks::RawWebhook>,
}

/// `[server]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    /// Address and port of the HTTP API.
    #[serde(default = "defaults::http_listen")]
    pub(crate) http_listen: SocketAddr,
    /// How long a graceful shutdown waits for in-flight deliveries.
    #[serde(default = "defaults::drain_timeout")]
    pub(crate) drain_timeout: Dur,
    /// How long a request's headers may take from their first byte.
    #[serde(default = "defaults::header_read_timeout")]
    pub(crate) header_read_timeout: Dur,
    /// How long a request's body may take.
    #[serde(default = "defaults::body_read_timeout")]
    pub(crate) body_read_timeout: Dur,
    /// How long a connection may wait for its next request.
    #[serde(default = "defaults::idle_timeout_http")]
    pub(crate) idle_timeout: Dur,
    /// Connections open at once.
    #[serde(default = "defaults::max_connections_http")]
    pub(crate) max_connections: usize,
    /// The process umask for `herald serve`, as an octal string.
    #[serde(default = "defaults::umask")]
    pub(crate) umask: String,
    /// This node's stable name; `None` derives it from the host name and
    /// the HTTP listen address.
    #[serde(default)]
    pub(crate) node_id: Option<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            http_listen: defaults::http_listen(),
            drain_timeout: defaults::drain_timeout(),
            header_read_timeout: defaults::header_read_timeout(),
            body_read_timeout: defaults::body_read_timeout(),
            idle_timeout: defaults::idle_timeout_http(),
            max_connections: defaults::max_connections_http(),
            umask: defaults::umask(),
            node_id: None,
        }
    }
}

/// `[store]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    /// `sqlite://PATH` or `postgres://…`; may hold a password.
    #[serde(default = "defaults::store_url")]
    pub(crate) url: String,
    /// The variable holding the URL instead (keeps its password out of
    /// the file).
    #[serde(default)]
    pub(crate) url_env: Option<String>,
    /// PostgreSQL connections this node keeps.
    #[serde(default = "defaults::pool_size")]
    pub(crate) pool_size: usize,
    /// How long finished messages are kept.
    #[serde(default = "defaults::retention")]
    pub(crate) retention: Dur,
    /// How long webhook events and delivery tries are kept.
    #[serde(default = "defaults::event_retention")]
    pub(crate) event_retention: Dur,
    /// How long a lapsed suppression entry is kept after it lapsed.
    #[serde(default = "defaults::lapsed_retention")]
    pub(crate) lapsed_retention: Dur,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            url: defaults::store_url(),
            url_env: None,
            pool_size: defaults::pool_size(),
            retention: defaults::retention(),
            event_retention: defaults::event_retention(),
            lapsed_retention: defaults::lapsed_retention(),
        }
    }
}

/// `[retry]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    /// Delay after the first failed attempt.
    #[serde(default = "defaults::initial_delay")]
    pub(crate) initial_delay: Dur,
    /// Growth factor per further attempt.
    #[serde(default = "defaults::multiplier")]
    pub(crate) multiplier: f64,
    /// Cap on a single delay.
    #[serde(default = "defaults::max_delay")]
    pub(crate) max_delay: Dur,
    /// Floor on a single delay; unset, the default or `initial_delay`,
    /// whichever is shorter (so that a short `initial_delay` alone is
    /// valid).
    #[serde(default)]
    pub(crate) min_delay: Option<Dur>,
    /// Attempts in all, the first included.
    #[serde(default = "defaults::max_attempts")]
    pub(crate) max_attempts: u32,
    /// How long after the first attempt retries may still happen.
    #[serde(default = "defaults::max_age")]
    pub(crate) max_age: Dur,
    /// How delays are randomised.
    #[serde(default = "defaults::jitter")]
    pub(crate) jitter: Named<Jitter>,
}

impl Default for RawRetry {
    fn default() -> Self {
        Self {
            initial_delay: defaults::initial_delay(),
            multiplier: defaults::multiplier(),
            max_delay: defaults::max_delay(),
            min_delay: None,
            max_attempts: defaults::max_attempts(),
            max_age: defaults::max_age(),
            jitter: defaults::jitter(),
        }
    }
}

/// `[delivery]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDelivery {
    /// Deliveries in flight at once on this node.
    #[serde(default = "defaults::concurrency")]
    pub(crate) concurrency: usize,
    /// TCP connect and TLS handshake timeout.
    #[serde(default = "defaults::connect_timeout")]
    pub(crate) connect_timeout: Dur,
    /// Timeout of each SMTP command.
    #[serde(default = "defaults::command_timeout")]
    pub(crate) command_timeout: Dur,
    /// Timeout for the body and the reply to the final dot.
    #[serde(default = "defaults::data_timeout")]
    pub(crate) data_timeout: Dur,
    /// How long a claimed message stays ours without a heartbeat.
    #[serde(default = "defaults::lease")]
    pub(crate) lease: Dur,
    /// Leases lost in a row after which a message is failed as poison.
    #[serde(default = "defaults::max_lost_leases")]
    pub(crate) max_lost_leases: u32,
    /// How often an idle dispatcher looks for due messages.
    #[serde(default = "defaults::poll_interval")]
    pub(crate) poll_interval: Dur,
    /// The EHLO name; `None` means this machine's host name.
    #[serde(default = "defaults::helo_name")]
    pub(crate) helo_name: Option<String>,
}

impl Default for RawDelivery {
    fn default() -> Self {
        Self {
            concurrency: defaults::concurrency(),
            connect_timeout: defaults::connect_timeout(),
            command_timeout: defaults::command_timeout(),
            data_timeout: defaults::data_timeout(),
            lease: defaults::lease(),
            max_lost_leases: defaults::max_lost_leases(),
            poll_interval: defaults::poll_interval(),
            helo_name: defaults::helo_name(),
        }
    }
}

/// `[limits]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    /// Largest rendered message, in bytes.
    #[serde(default = "defaults::max_message_bytes")]
    pub(crate) max_message_bytes: usize,
    /// Most messages in one batch request.
    #[serde(default = "defaults::max_batch")]
    pub(crate) max_batch: usize,
    /// Most unfinished messages before new ones are refused.
    #[serde(default = "defaults::max_queue_depth")]
    pub(crate) max_queue_depth: u64,
    /// Most recipients (to + cc + bcc) of one message.
    #[serde(default = "defaults::max_recipients")]
    pub(crate) max_recipients: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: defaults::max_message_bytes(),
            max_batch: defaults::max_batch(),
            max_queue_depth: defaults::max_queue_depth(),
            max_recipients: defaults::max_recipients(),
        }
    }
}

/// `[outbox]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutbox {
    /// Directory the file outbox writes to.
    #[serde(default = "defaults::outbox_dir")]
    pub(crate) dir: PathBuf,
}

impl Default for RawOutbox {
    fn default() -> Self {
        Self {
            dir: defaults::outbox_dir(),
        }
    }
}

/// `[tracing]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTracing {
    /// OTLP/HTTP base URL; spans go to `<endpoint>/v1/traces`. `None`
    /// turns export off.
    #[serde(default = "defaults::otlp_endpoint")]
    pub(crate) otlp_endpoint: Option<String>,
    /// The `service.name` of the exported spans.
    #[serde(default = "defaults::service_name")]
    pub(crate) service_name: String,
    /// The fraction of traces exported, 0.0 to 1.0.
    #[serde(default = "defaults::sample_ratio")]
    pub(crate) sample_ratio: f64,
}

impl Default for RawTracing {
    fn default() -> Self {
        Self {
            otlp_endpoint: defaults::otlp_endpoint(),
            service_name: defaults::service_name(),
            sample_ratio: defaults::sample_ratio(),
        }
    }
}

/// One `[[relays]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRelay {
    /// Unique name: `[a-z0-9_-]+`.
    pub(crate) name: String,
    /// A provider preset (`gmail`, `outlook`, `qq`, `163`, `ses`) that
    /// fills host, port, TLS mode and limits not set here.
    #[serde(default = "defaults::provider")]
    pub(crate) provider: Option<String>,
    /// The AWS region, with `provider = "ses"`.
    #[serde(default = "defaults::region")]
    pub(crate) region: Option<String>,
    /// Host name or IP address; required unless `provider` gives it.
    #[serde(default = "defaults::host")]
    pub(crate) host: Option<String>,
    /// TCP port; `None` means the preset's, or the usual port for `tls`.
    #[serde(default = "defaults::port")]
    pub(crate) port: Option<u16>,
    /// How the connection is encrypted; `None` means the preset's, or
    /// STARTTLS.
    #[serde(default = "defaults::relay_tls")]
    pub(crate) tls: Option<Named<TlsMode>>,
    /// User name for AUTH.
    #[serde(default = "defaults::username")]
    pub(crate) username: Option<String>,
    /// Password written in the file (secret).
    #[serde(default = "defaults::password")]
    pub(crate) password: Option<String>,
    /// Environment variable holding the password.
    #[serde(default = "defaults::password_env")]
    pub(crate) password_env: Option<String>,
    /// Environment variable holding an OAuth 2.0 access token.
    #[serde(default = "defaults::oauth2_token_env")]
    pub(crate) oauth2_token_env: Option<String>,
    /// `[relays.oauth2]`: access tokens refreshed from a token endpoint.
    #[serde(default)]
    pub(crate) oauth2: Option<RawOAuth2>,
    /// Force one AUTH mechanism.
    #[serde(default = "defaults::auth_mechanism")]
    pub(crate) auth_mechanism: Option<Named<Mechanism>>,
    /// An extra CA certificate file (PEM) to trust.
    #[serde(default = "defaults::ca_file")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Allow AUTH without encryption.
    #[serde(default = "defaults::allow_insecure_auth")]
    pub(crate) allow_insecure_auth: bool,
    /// EHLO name for this relay only; `None` means `delivery.helo_name`.
    #[serde(default = "defaults::relay_helo_name")]
    pub(crate) helo_name: Option<String>,
    /// Sessions open at once.
    #[serde(default = "defaults::max_connections")]
    pub(crate) max_connections: usize,
    /// Messages per session before it is closed.
    #[serde(default = "defaults::max_messages_per_connection")]
    pub(crate) max_messages_per_connection: usize,
    /// How long a session may sit idle.
    #[serde(default = "defaults::idle_timeout")]
    pub(crate) idle_timeout: Dur,
    /// Rate limit, `"20/s"`, `"300/min"`, `"5000/h"`; `None`: unlimited.
    #[serde(default = "defaults::rate")]
    pub(crate) rate: Option<String>,
    /// Messages the rate lets go back to back.
    #[serde(default = "defaults::burst")]
    pub(crate) burst: u32,
    /// Messages per day; `None`: no quota.
    #[serde(default = "defaults::daily_quota")]
    pub(crate) daily_quota: Option<u64>,
    /// When the daily quota starts again: `"HH:MM [offset]"`; `None`
    /// means the preset's, or midnight UTC.
    #[serde(default = "defaults::quota_reset")]
    pub(crate) quota_reset: Option<String>,
    /// `[relays.breaker]`: when to stop talking to this relay for a while.
    #[serde(default)]
    pub(crate) breaker: RawBreaker,
}

/// `[relays.oauth2]`: where XOAUTH2 access tokens come from. The secrets
/// are named by environment variable only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOAuth2 {
    /// The token endpoint (`https://oauth2.googleapis.com/token`).
    pub(crate) token_url: String,
    /// The OAuth client's id.
    pub(crate) client_id: String,
    /// Environment variable holding the client secret; `None` for a
    /// public client.
    #[serde(default)]
    pub(crate) client_secret_env: Option<String>,
    /// Environment variable holding the refresh token.
    pub(crate) refresh_token_env: String,
    /// The scope to ask for; `None` asks for none (the grant's).
    #[serde(default)]
    pub(crate) scope: Option<String>,
    /// How long one token request may take.
    #[serde(default = "defaults::oauth2_timeout")]
    pub(crate) timeout: Dur,
    /// How long before its expiry a token is refreshed.
    #[serde(default = "defaults::oauth2_refresh_margin")]
    pub(crate) refresh_margin: Dur,
}

/// `[relays.breaker]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBreaker {
    /// Consecutive failures that open the breaker.
    #[serde(default = "defaults::failure_threshold")]
    pub(crate) failure_threshold: u32,
    /// Share of failed calls in the window that opens the breaker.
    #[serde(default = "defaults::failure_rate")]
    pub(crate) failure_rate: f64,
    /// A call at least this long is slow.
    #[serde(default = "defaults::slow_call")]
    pub(crate) slow_call: Dur,
    /// Share of slow calls in the window that opens the breaker.
    #[serde(default = "defaults::slow_rate")]
    pub(crate) slow_rate: f64,
    /// Calls in the window before its rates are judged.
    #[serde(default = "defaults::min_calls")]
    pub(crate) min_calls: u32,
    /// How far back the rates look.
    #[serde(default = "defaults::breaker_window")]
    pub(crate) window: Dur,
    /// How long the first opening lasts.
    #[serde(default = "defaults::open_for")]
    pub(crate) open_for: Dur,
    /// Cap on the doubled open period.
    #[serde(default = "defaults::max_open_for")]
    pub(crate) max_open_for: Dur,
    /// Probes let through while half-open (`half_open_probes` is its
    /// older name).
    #[serde(default = "defaults::half_open_calls", alias = "half_open_probes")]
    pub(crate) half_open_calls: u32,
}

impl Default for RawBreaker {
    fn default() -> Self {
        Self {
            failure_threshold: defaults::failure_threshold(),
            failure_rate: defaults::failure_rate(),
            slow_call: defaults::slow_call(),
            slow_rate: defaults::slow_rate(),
            min_calls: defaults::min_calls(),
            window: defaults::breaker_window(),
            open_for: defaults::open_for(),
            max_open_for: defaults::max_open_for(),
            half_open_calls: defaults::half_open_calls(),
        }
    }
}

pub(crate) mod defaults;

/// A duration written as a human string: `"500ms"`, `"30s"`, `"5m"`,
/// `"1h"`, `"3d"`.
#[derive(Clone, Copy)]
pub(crate) struct Dur(pub(crate) Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration string such as \"500ms\", \"30s\", \"5m\", \"1h\" or \"3d\"",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
                    E::custom(format!(
                        "{s:?} is not a duration ({e}); write e.g. \"500ms\", \"30s\", \"5m\", \"1h\", \"3d\""
                    ))
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// A value written as one of a fixed set of lower-case names.
pub(crate) struct Named<T>(pub(crate) T);

/// Parsing of the names [`Named`] accepts; the error lists the choices.
pub(crate) trait ByName: Sized {
    /// What the value is, for error messages.
    const WHAT: &'static str;
    /// Parses a name.
    fn by_name(s: &str) -> Result<Self, String>;
}

impl ByName for TlsMode {
    const WHAT: &'static str = "a TLS mode (none, starttls, opportunistic, implicit)";
    fn by_name(s: &str) -> Result<Self, String> {
        s.parse()
    }
}

impl ByName for Jitter {
    const WHAT: &'static str = "a jitter kind (none, full, equal)";
    fn by_name(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "full" => Ok(Self::Full),
            "equal" => Ok(Self::Equal),
            other => Err(format!("unknown jitter {other:?} (none, full, equal)")),
        }
    }
}

impl ByName for Mechanism {
    const WHAT: &'static str = "an AUTH mechanism (plain, login, xoauth2)";
    fn by_name(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "plain" => Ok(Self::Plain),
            "login" => Ok(Self::Login),
            "xoauth2" => Ok(Self::Xoauth2),
            _ => Err(format!(
                "unknown AUTH mechanism {s:?} (plain, login, xoauth2)"
            )),
        }
    }
}

impl<'de, T: ByName> Deserialize<'de> for Named<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T: ByName> Visitor<'_> for V<T> {
            type Value = Named<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(T::WHAT)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Named<T>, E> {
                T::by_name(s).map(Named).map_err(E::custom)
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}
