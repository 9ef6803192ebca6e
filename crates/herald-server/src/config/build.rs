//! Raw → validated: each section is converted (infallibly, so the defaults
//! need no error path) and then checked, every error naming its field.

use std::net::SocketAddr;
use std::time::Duration;

use herald_policy::RetryPolicy;
use herald_smtp::{Timeouts, default_helo_name};

use super::raw::{RawConfig, RawDelivery, RawLimits, RawRetry, RawServer, RawStore, RawTracing};
use super::{
    ApiKey, AuthConfig, Config, ConfigError, DeliveryConfig, ENV_API_KEYS, ENV_HTTP_LISTEN,
    ENV_STORE_URL, LimitsConfig, OutboxConfig, Scopes, ServerConfig, StoreConfig, TracingConfig,
    keys, relay,
};

/// The environment as the loader sees it.
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Validates `raw`, applying the environment overrides.
pub(super) fn build(raw: RawConfig, env: Env<'_>) -> Result<Config, ConfigError> {
    let server = server(raw.server, env)?;
    let store = store(raw.store, env)?;
    let mut auth = auth(raw.auth.api_keys, raw.auth.api_keys_env, env)?;
    let mut named = keys::named_keys(raw.auth.keys, env)?;
    named.append(&mut auth.api_keys);
    auth.api_keys = named;
    let retry = retry(raw.retry)?;
    let delivery = delivery(raw.delivery)?;
    let limits = limits(raw.limits)?;
    let submission = super::submission::submission(raw.submission, &limits)?;
    let suppression = super::suppression::suppression(raw.suppression)?;
    let webhooks = super::webhooks::webhooks(raw.webhooks, env)?;
    if raw.outbox.dir.as_os_str().is_empty() {
        return Err(ConfigError::new("outbox.dir", "must not be empty"));
    }
    let relays = relay::relays(raw.relays, &delivery, env)?;
    let tracing = tracing_section(raw.tracing)?;
    let alerts = raw.alerts.build(env)?;
    // Rules may name a relay; "outbox" is the relay name of the file outbox.
    let mut relay_names: Vec<&str> = relays.iter().map(|r| r.name.as_str()).collect();
    relay_names.push("outbox");
    alerts.check_relays(&relay_names)?;
    Ok(Config {
        server,
        store,
        auth,
        retry,
        delivery,
        limits,
        outbox: OutboxConfig {
            dir: raw.outbox.dir,
        },
        relays,
        tracing,
        alerts,
        submission,
        suppression,
        webhooks,
    })
}

/// Every default, no relay, no key.
pub(super) fn defaults() -> Config {
    let raw = RawConfig::default();
    Config {
        server: server_from(raw.server),
        store: store_from(raw.store.url.clone(), &raw.store),
        auth: AuthConfig::default(),
        retry: retry_from(raw.retry),
        delivery: delivery_from(raw.delivery),
        limits: limits_from(raw.limits),
        outbox: OutboxConfig {
            dir: raw.outbox.dir,
        },
        relays: Vec::new(),
        tracing: tracing_from(raw.tracing),
        alerts: herald_alerts::AlertsConfig::default(),
        submission: None,
        suppression: herald_store::SuppressionPolicy::default(),
        webhooks: Vec::new(),
    }
}

/// An override variable's value; unset and empty are the same (so that
/// `HERALD_STORE_URL=` in a unit file means "use the file").
fn env_override(env: Env<'_>, name: &str) -> Option<String> {
    env(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn server_from(raw: RawServer) -> ServerConfig {
    let node_id = raw
        .node_id
        .unwrap_or_else(|| default_node_id(raw.http_listen));
    ServerConfig {
        http_listen: raw.http_listen,
        drain_timeout: raw.drain_timeout.0,
        header_read_timeout: raw.header_read_timeout.0,
        body_read_timeout: raw.body_read_timeout.0,
        idle_timeout: raw.idle_timeout.0,
        max_connections: raw.max_connections,
        // server() refused a umask that does not parse; the embedded
        // defaults' one does.
        umask: parse_umask(&raw.umask).unwrap_or(0o077),
        node_id,
    }
}

/// An octal umask (`"077"`, `"0o027"`), at most `0o777`.
fn parse_umask(text: &str) -> Option<u32> {
    let digits = text.trim_start_matches("0o");
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o777)
}

/// `HOSTNAME:PORT`: the host tells machines apart, the port the nodes of
/// one machine, and both survive a restart.
pub(crate) fn default_node_id(listen: SocketAddr) -> String {
    format!("{}:{}", default_helo_name(), listen.port())
}

fn server(raw: RawServer, env: Env<'_>) -> Result<ServerConfig, ConfigError> {
    for (field, value) in [
        ("header_read_timeout", raw.header_read_timeout.0),
        ("body_read_timeout", raw.body_read_timeout.0),
        ("idle_timeout", raw.idle_timeout.0),
    ] {
        positive(&format!("server.{field}"), value)?;
    }
    if raw.max_connections == 0 {
        return Err(ConfigError::new(
            "server.max_connections",
            "must be at least 1",
        ));
    }
    if parse_umask(&raw.umask).is_none() {
        return Err(ConfigError::new(
            "server.umask",
            format!(
                "{:?} is not an octal umask such as \"077\" or \"027\"",
                raw.umask
            ),
        ));
    }
    if let Some(id) = &raw.node_id
        && (id.is_empty() || id.len() > 200 || !id.chars().all(|c| c.is_ascii_graphic()))
    {
        return Err(ConfigError::new(
            "server.node_id",
            "must be 1 to 200 visible ASCII characters (no spaces)",
        ));
    }
    let explicit_id = raw.node_id.is_some();
    let mut server = server_from(raw);
    if let Some(listen) = env_override(env, ENV_HTTP_LISTEN) {
        server.http_listen = listen.parse::<SocketAddr>().map_err(|_| {
            ConfigError::new(
                ENV_HTTP_LISTEN,
                format!("{listen:?} is not an IP address and port such as 127.0.0.1:8080"),
            )
        })?;
        if !explicit_id {
            server.node_id = default_node_id(server.http_listen);
        }
    }
    Ok(server)
}

fn store_from(url: String, raw: &RawStore) -> StoreConfig {
    StoreConfig {
        url,
        pool_size: raw.pool_size,
        retention: raw.retention.0,
        event_retention: raw.event_retention.0,
        lapsed_retention: raw.lapsed_retention.0,
    }
}

fn store(raw: RawStore, env: Env<'_>) -> Result<StoreConfig, ConfigError> {
    let (url, field) = if let Some(url) = env_override(env, ENV_STORE_URL) {
        (url, ENV_STORE_URL.to_owned())
    } else if let Some(var) = &raw.url_env {
        let url = env_override(env, var).ok_or_else(|| {
            ConfigError::new("store.url_env", format!("the variable {var} is not set"))
        })?;
        (url, format!("store.url_env ({var})"))
    } else {
        (raw.url.clone(), "store.url".to_owned())
    };
    check_store_url(&url).map_err(|message| ConfigError::new(field, message))?;
    if raw.pool_size == 0 {
        return Err(ConfigError::new("store.pool_size", "must be at least 1"));
    }
    if raw.retention.0 < Duration::from_secs(60 * 60) {
        return Err(ConfigError::new(
            "store.retention",
            "must be at least 1h (finished messages are what the status API answers from)",
        ));
    }
    if raw.event_retention.0 < Duration::from_secs(60 * 60) {
        return Err(ConfigError::new(
            "store.event_retention",
            "must be at least 1h (the delivery log is what GET /v1/webhooks/deliveries answers from)",
        ));
    }
    Ok(store_from(url, &raw))
}

/// Checks the URL's shape only; whether the store is reachable is the
/// store's business. Messages never quote the URL: it may hold a password.
fn check_store_url(url: &str) -> Result<(), String> {
    const EXPECTED: &str =
        "expected sqlite://PATH, sqlite:///ABSOLUTE/PATH, sqlite::memory: or postgres://…";
    if url == "sqlite::memory:" {
        return Ok(());
    }
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == "/" {
            return Err(format!("no database file given ({EXPECTED})"));
        }
        return Ok(());
    }
    for scheme in ["postgres://", "postgresql://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            if rest.is_empty() {
                return Err(format!("no server given ({EXPECTED})"));
            }
            return Ok(());
        }
    }
    match url.split_once("://") {
        Some((scheme, _))
            if scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            Err(format!("unsupported scheme {scheme:?} ({EXPECTED})"))
        }
        _ => Err(format!("not a store URL ({EXPECTED})")),
    }
}

fn auth(
    file_keys: Vec<String>,
    keys_env: Option<String>,
    env: Env<'_>,
) -> Result<AuthConfig, ConfigError> {
    let mut api_keys = Vec::new();
    for (i, key) in file_keys.iter().enumerate() {
        let name = format!("auth.api_keys[{i}]");
        api_keys.push(api_key(key, || name.clone())?.with_name_and_scopes(name, Scopes::ALL));
    }
    let mut variables = Vec::new();
    if let Some(var) = keys_env {
        if var.trim().is_empty() {
            return Err(ConfigError::new(
                "auth.api_keys_env",
                "must name an environment variable",
            ));
        }
        match env(&var) {
            Some(value) => variables.push((var, value)),
            None => {
                return Err(ConfigError::new(
                    "auth.api_keys_env",
                    format!("environment variable {var} is not set"),
                ));
            }
        }
    }
    if !variables.iter().any(|(var, _)| var == ENV_API_KEYS)
        && let Some(value) = env(ENV_API_KEYS)
    {
        variables.push((ENV_API_KEYS.to_owned(), value));
    }
    for (var, value) in variables {
        let keys = value.split(',').map(str::trim).filter(|k| !k.is_empty());
        for (i, key) in keys.enumerate() {
            let name = format!("{var}[{i}]");
            api_keys.push(api_key(key, || name.clone())?.with_name_and_scopes(name, Scopes::ALL));
        }
    }
    Ok(AuthConfig { api_keys })
}

pub(super) fn api_key(key: &str, field: impl FnOnce() -> String) -> Result<ApiKey, ConfigError> {
    ApiKey::new(key).map_err(|e| ConfigError::new(field(), e.message))
}

fn retry_from(raw: RawRetry) -> RetryPolicy {
    RetryPolicy {
        initial_delay: raw.initial_delay.0,
        multiplier: raw.multiplier,
        max_delay: raw.max_delay.0,
        // Unset, the floor follows a short `initial_delay` instead of
        // contradicting it.
        min_delay: match raw.min_delay {
            Some(set) => set.0,
            None => RetryPolicy::default().min_delay.min(raw.initial_delay.0),
        },
        max_attempts: raw.max_attempts,
        max_age: raw.max_age.0,
        jitter: raw.jitter.0,
    }
}

fn retry(raw: RawRetry) -> Result<RetryPolicy, ConfigError> {
    let policy = retry_from(raw);
    policy
        .validate()
        .map_err(|e| ConfigError::new(format!("retry.{}", e.field()), e.reason()))?;
    Ok(policy)
}

fn delivery_from(raw: RawDelivery) -> DeliveryConfig {
    DeliveryConfig {
        concurrency: raw.concurrency,
        lease: raw.lease.0,
        max_lost_leases: raw.max_lost_leases,
        poll_interval: raw.poll_interval.0,
        timeouts: Timeouts::default().with_settings(
            Some(raw.connect_timeout.0),
            Some(raw.command_timeout.0),
            Some(raw.data_timeout.0),
        ),
        helo_name: raw.helo_name.unwrap_or_else(default_helo_name),
    }
}

fn delivery(raw: RawDelivery) -> Result<DeliveryConfig, ConfigError> {
    if raw.concurrency == 0 {
        return Err(ConfigError::new(
            "delivery.concurrency",
            "must be at least 1",
        ));
    }
    for (field, value) in [
        ("connect_timeout", raw.connect_timeout.0),
        ("command_timeout", raw.command_timeout.0),
        ("data_timeout", raw.data_timeout.0),
        ("lease", raw.lease.0),
        ("poll_interval", raw.poll_interval.0),
    ] {
        positive(&format!("delivery.{field}"), value)?;
    }
    // Heartbeats renew leases every third of the lease, so the lease
    // only has to span a few of them, not the DATA phase.
    if raw.lease.0 < MIN_LEASE {
        return Err(ConfigError::new(
            "delivery.lease",
            format!(
                "must be at least {} (the node renews its leases every third of it)",
                humantime::format_duration(MIN_LEASE)
            ),
        ));
    }
    if raw.max_lost_leases == 0 {
        return Err(ConfigError::new(
            "delivery.max_lost_leases",
            "must be at least 1",
        ));
    }
    if let Some(name) = &raw.helo_name {
        check_helo_name(name).map_err(|m| ConfigError::new("delivery.helo_name", m))?;
    }
    Ok(delivery_from(raw))
}

/// The shortest lease accepted: a heartbeat every 1 s at most.
const MIN_LEASE: Duration = Duration::from_secs(3);

/// A zero duration would turn a timeout or an interval into a busy loop.
pub(super) fn positive(field: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::new(field, "must be more than zero"));
    }
    Ok(())
}

/// A domain name or address literal, as EHLO wants it.
pub(super) fn check_helo_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c))
    {
        return Err(format!(
            "{name:?} is not a host name (letters, digits, '-' and '.') or an address literal"
        ));
    }
    Ok(())
}

fn limits_from(raw: RawLimits) -> LimitsConfig {
    LimitsConfig {
        max_message_bytes: raw.max_message_bytes,
        max_batch: raw.max_batch,
        max_queue_depth: raw.max_queue_depth,
        max_recipients: raw.max_recipients,
    }
}

fn limits(raw: RawLimits) -> Result<LimitsConfig, ConfigError> {
    for (field, value) in [
        ("max_message_bytes", raw.max_message_bytes as u64),
        ("max_batch", raw.max_batch as u64),
        ("max_queue_depth", raw.max_queue_depth),
        ("max_recipients", raw.max_recipients as u64),
    ] {
        if value == 0 {
            return Err(ConfigError::new(
                format!("limits.{field}"),
                "must be at least 1",
            ));
        }
    }
    if raw.max_recipients > herald_message::MAX_ITEMS {
        return Err(ConfigError::new(
            "limits.max_recipients",
            format!(
                "at most {} (no list of a request is read past that)",
                herald_message::MAX_ITEMS
            ),
        ));
    }
    Ok(limits_from(raw))
}

fn tracing_from(raw: RawTracing) -> TracingConfig {
    TracingConfig {
        otlp_endpoint: raw.otlp_endpoint,
        service_name: raw.service_name,
        sample_ratio: raw.sample_ratio,
    }
}

/// `[tracing]`: an absent or empty endpoint means no export; a present one
/// must be an `http(s)://host…` base URL (the path `/v1/traces` is added).
fn tracing_section(mut raw: RawTracing) -> Result<TracingConfig, ConfigError> {
    raw.otlp_endpoint = raw
        .otlp_endpoint
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty());
    if let Some(endpoint) = &raw.otlp_endpoint {
        check_otlp_endpoint(endpoint).map_err(|m| ConfigError::new("tracing.otlp_endpoint", m))?;
    }
    if raw.service_name.trim().is_empty() {
        return Err(ConfigError::new(
            "tracing.service_name",
            "must not be empty",
        ));
    }
    if !(0.0..=1.0).contains(&raw.sample_ratio) {
        return Err(ConfigError::new(
            "tracing.sample_ratio",
            format!("{} is not between 0.0 and 1.0", raw.sample_ratio),
        ));
    }
    Ok(tracing_from(raw))
}

/// The shape of an OTLP/HTTP base URL: scheme, a host, no query.
fn check_otlp_endpoint(endpoint: &str) -> Result<(), String> {
    // Errors quote the endpoint as the redaction rule shows it: it may hold
    // a password.
    let shown = crate::redact::url(endpoint);
    let Some(rest) = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
    else {
        return Err(format!(
            "{shown:?} is not an http:// or https:// URL (the OTLP/HTTP base, e.g. \
             \"http://127.0.0.1:4318\")"
        ));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains(char::is_whitespace) {
        return Err(format!("{shown:?} names no host"));
    }
    if rest.contains(['?', '#']) {
        return Err(format!(
            "{shown:?} has a query or fragment; give the base URL only"
        ));
    }
    Ok(())
}
