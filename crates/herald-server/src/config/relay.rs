//! `[[relays]]` → [`RelayConfig`]: names, ports, credentials (read from the
//! environment now, so a missing secret stops start-up instead of the first
//! delivery), trust anchors, pool and breaker settings.

use std::collections::HashMap;
use std::sync::Arc;

use herald_policy::{
    BreakerConfig, DailyQuota, QuotaReset, Rate, RateLimit, SharedClock, SystemClock,
};
use herald_smtp::{ClientConfig, Credentials, Mechanism, PoolConfig, TlsMode, system_tls_config};

use super::build::{Env, check_helo_name, positive};
use super::preset;
use super::raw::{RawOAuth2, RawRelay, defaults};
use super::{ConfigError, DeliveryConfig, RelayConfig};
use crate::oauth2::OAuth2Config;

impl RelayConfig {
    /// The client settings with XOAUTH2 tokens aged by `clock` (the
    /// service's): a relay with `[relays.oauth2]` gets a token source of
    /// its own; any other relay's settings are returned as they are.
    pub fn client_with_clock(&self, clock: &SharedClock) -> ClientConfig {
        let mut client = self.client.clone();
        if let (Some(oauth2), Some(credentials)) = (&self.oauth2, client.credentials.as_mut()) {
            credentials.secret = herald_smtp::Secret::OAuth2Source(crate::oauth2::source(
                &self.name,
                oauth2,
                clock.clone(),
            ));
        }
        client
    }
}

/// Validates every relay, in file order.
pub(super) fn relays(
    raw: Vec<RawRelay>,
    delivery: &DeliveryConfig,
    env: Env<'_>,
) -> Result<Vec<RelayConfig>, ConfigError> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    // Loading the system's roots is not free; relays without a ca_file
    // share one copy.
    let mut system_roots: Option<Arc<rustls::ClientConfig>> = None;
    let mut out = Vec::with_capacity(raw.len());
    for (i, relay) in raw.into_iter().enumerate() {
        let field = |name: &str| format!("relays[{i}].{name}");
        check_name(&relay.name).map_err(|m| ConfigError::new(field("name"), m))?;
        if let Some(first) = seen.insert(relay.name.clone(), i) {
            return Err(ConfigError::new(
                field("name"),
                format!(
                    "duplicate relay name {:?} (also relays[{first}])",
                    relay.name
                ),
            ));
        }
        out.push(one(relay, i, delivery, env, &mut system_roots)?);
    }
    Ok(out)
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters".to_owned());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(format!("{name:?} may contain only a-z, 0-9, '_' and '-'"));
    }
    Ok(())
}

fn one(
    raw: RawRelay,
    i: usize,
    delivery: &DeliveryConfig,
    env: Env<'_>,
    system_roots: &mut Option<Arc<rustls::ClientConfig>>,
) -> Result<RelayConfig, ConfigError> {
    let field = |name: &str| format!("relays[{i}].{name}");
    let preset = match &raw.provider {
        Some(provider) => Some(
            preset::preset(provider, raw.region.as_deref())
                .map_err(|(name, reason)| ConfigError::new(field(name), reason))?,
        ),
        None if raw.region.is_some() => {
            return Err(ConfigError::new(
                field("region"),
                "is only used with provider = \"ses\"",
            ));
        }
        None => None,
    };
    let host = match (&raw.host, &preset) {
        (Some(host), _) => host.trim().to_owned(),
        (None, Some(preset)) => preset.host.clone(),
        (None, None) => {
            return Err(ConfigError::new(field("host"), "required"));
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::new(
            field("host"),
            "must be a host name or IP address",
        ));
    }
    let tls = match (&raw.tls, &preset) {
        (Some(tls), _) => tls.0,
        (None, Some(preset)) => preset.tls,
        (None, None) => defaults::tls().0,
    };
    // The preset's port goes with its TLS mode; a TLS mode set here picks
    // its usual port instead.
    let port = raw.port.unwrap_or_else(|| match &preset {
        Some(preset) if raw.tls.is_none() => preset.port,
        _ => defaults::port_for(tls),
    });
    if port == 0 {
        return Err(ConfigError::new(
            field("port"),
            "must be between 1 and 65535",
        ));
    }
    let (credentials, oauth2) = credentials(&raw, i, env)?;
    if credentials.is_some()
        && matches!(tls, TlsMode::None | TlsMode::Opportunistic)
        && !raw.allow_insecure_auth
    {
        return Err(ConfigError::new(
            field("tls"),
            format!(
                "tls = \"{}\" could send the password in clear text; use starttls or \
                 implicit, or set allow_insecure_auth = true",
                tls.as_str()
            ),
        ));
    }
    let tls_config = match (&raw.ca_file, system_roots.as_ref()) {
        (Some(path), _) => system_tls_config(Some(path))
            .map_err(|e| ConfigError::new(field("ca_file"), e.to_string()))?,
        (None, Some(shared)) => Arc::clone(shared),
        (None, None) => {
            let config = system_tls_config(None)
                .map_err(|e| ConfigError::new(field("tls"), e.to_string()))?;
            *system_roots = Some(Arc::clone(&config));
            config
        }
    };
    let helo_name = match raw.helo_name {
        Some(name) => {
            check_helo_name(&name).map_err(|m| ConfigError::new(field("helo_name"), m))?;
            name
        }
        None => delivery.helo_name.clone(),
    };

    for (name, value) in [
        ("max_connections", raw.max_connections),
        (
            "max_messages_per_connection",
            raw.max_messages_per_connection,
        ),
    ] {
        if value == 0 {
            return Err(ConfigError::new(field(name), "must be at least 1"));
        }
    }
    positive(&field("idle_timeout"), raw.idle_timeout.0)?;
    let breaker = BreakerConfig {
        failure_threshold: raw.breaker.failure_threshold,
        failure_rate: raw.breaker.failure_rate,
        slow_call: raw.breaker.slow_call.0,
        slow_rate: raw.breaker.slow_rate,
        min_calls: raw.breaker.min_calls,
        window: raw.breaker.window.0,
        open_for: raw.breaker.open_for.0,
        max_open_for: raw.breaker.max_open_for.0,
        half_open_calls: raw.breaker.half_open_calls,
    };
    breaker
        .validate()
        .map_err(|e| ConfigError::new(field(&format!("breaker.{}", e.field())), e.reason()))?;

    let policy_error =
        |e: herald_policy::InvalidPolicy| ConfigError::new(field(e.field()), e.reason());
    let rate_text = raw
        .rate
        .clone()
        .or_else(|| preset.as_ref().map(|p| p.rate.to_owned()));
    let rate = match &rate_text {
        None => None,
        Some(text) => {
            let rate: Rate = text.parse().map_err(policy_error)?;
            let limit = RateLimit {
                rate,
                burst: raw.burst,
            };
            limit.validate().map_err(policy_error)?;
            Some(limit)
        }
    };
    let reset: QuotaReset = match (&raw.quota_reset, &preset) {
        (Some(text), _) => text.parse().map_err(policy_error)?,
        (None, Some(preset)) => preset.quota_reset.parse().map_err(policy_error)?,
        (None, None) => QuotaReset::default(),
    };
    let daily_quota = match raw.daily_quota.or(preset.as_ref().map(|p| p.daily_quota)) {
        None => None,
        Some(limit) => {
            let quota = DailyQuota { limit, reset };
            quota.validate().map_err(policy_error)?;
            Some(quota)
        }
    };

    Ok(RelayConfig {
        name: raw.name,
        provider: raw.provider.as_ref().map(|name| match &raw.region {
            Some(region) => format!("{name} ({region})"),
            None => name.clone(),
        }),
        client: ClientConfig {
            host,
            port,
            tls,
            tls_config,
            credentials,
            allow_insecure_auth: raw.allow_insecure_auth,
            helo_name,
            timeouts: delivery.timeouts,
        },
        pool: PoolConfig {
            max_connections: raw.max_connections,
            max_messages_per_connection: raw.max_messages_per_connection,
            idle_timeout: raw.idle_timeout.0,
        },
        breaker,
        rate,
        daily_quota,
        ca_file: raw.ca_file,
        oauth2,
    })
}

/// Username plus exactly one of password, password_env, oauth2_token_env
/// and `[relays.oauth2]`; the mechanism, if forced, must fit the secret
/// (XOAUTH2 for a token, and implied by one).
fn credentials(
    raw: &RawRelay,
    i: usize,
    env: Env<'_>,
) -> Result<(Option<Credentials>, Option<OAuth2Config>), ConfigError> {
    let field = |name: &str| format!("relays[{i}].{name}");
    let given: Vec<&str> = [
        ("password", raw.password.is_some()),
        ("password_env", raw.password_env.is_some()),
        ("oauth2_token_env", raw.oauth2_token_env.is_some()),
        ("oauth2", raw.oauth2.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if let [first, second, ..] = given[..] {
        return Err(ConfigError::new(
            field(second),
            format!(
                "give only one of password, password_env, oauth2_token_env and [relays.oauth2] (also {first})"
            ),
        ));
    }
    let Some(username) = &raw.username else {
        if let Some(first) = given.first() {
            return Err(ConfigError::new(field(first), "needs username"));
        }
        if raw.auth_mechanism.is_some() {
            return Err(ConfigError::new(field("auth_mechanism"), "needs username"));
        }
        return Ok((None, None));
    };
    if username.is_empty() {
        return Err(ConfigError::new(field("username"), "must not be empty"));
    }
    let secret_from_env = |name: &str, var: &str| -> Result<String, ConfigError> {
        match env(var) {
            None => Err(ConfigError::new(
                field(name),
                format!("environment variable {var} is not set"),
            )),
            Some(value) if value.is_empty() => Err(ConfigError::new(
                field(name),
                format!("environment variable {var} is empty"),
            )),
            Some(value) => Ok(value),
        }
    };
    let mut oauth2_config = None;
    let mut credentials = if let Some(password) = &raw.password {
        Credentials::password(username.clone(), password.clone())
    } else if let Some(var) = &raw.password_env {
        Credentials::password(username.clone(), secret_from_env("password_env", var)?)
    } else if let Some(var) = &raw.oauth2_token_env {
        Credentials::oauth2(username.clone(), secret_from_env("oauth2_token_env", var)?)
    } else if let Some(oauth2) = &raw.oauth2 {
        let config = oauth2_settings(oauth2, i, &secret_from_env)?;
        let source = crate::oauth2::source(&raw.name, &config, SystemClock::shared());
        oauth2_config = Some(config);
        Credentials::oauth2_source(username.clone(), source)
    } else {
        return Err(ConfigError::new(
            field("username"),
            "needs password, password_env, oauth2_token_env or [relays.oauth2]",
        ));
    };
    if let Some(mechanism) = &raw.auth_mechanism {
        let mechanism = mechanism.0;
        let token = raw.oauth2_token_env.is_some() || raw.oauth2.is_some();
        if token != (mechanism == Mechanism::Xoauth2) {
            return Err(ConfigError::new(
                field("auth_mechanism"),
                if token {
                    "an OAuth 2.0 token needs xoauth2"
                } else {
                    "xoauth2 needs oauth2_token_env or [relays.oauth2], not a password"
                },
            ));
        }
        credentials.mechanism = Some(mechanism);
    }
    Ok((Some(credentials), oauth2_config))
}

/// `[relays.oauth2]` checked, its secrets read through `secret`
/// (`(field, variable)` → the value).
fn oauth2_settings(
    raw: &RawOAuth2,
    i: usize,
    secret: &dyn Fn(&str, &str) -> Result<String, ConfigError>,
) -> Result<OAuth2Config, ConfigError> {
    let field = |name: &str| format!("relays[{i}].oauth2.{name}");
    crate::oauth2::check_token_url(&raw.token_url)
        .map_err(|reason| ConfigError::new(field("token_url"), reason))?;
    if raw.client_id.trim().is_empty() {
        return Err(ConfigError::new(field("client_id"), "must not be empty"));
    }
    if raw.scope.as_ref().is_some_and(|s| s.trim().is_empty()) {
        return Err(ConfigError::new(
            field("scope"),
            "must not be empty (leave it out to ask for none)",
        ));
    }
    let client_secret = raw
        .client_secret_env
        .as_deref()
        .map(|var| secret("oauth2.client_secret_env", var))
        .transpose()?;
    let refresh_token = secret("oauth2.refresh_token_env", &raw.refresh_token_env)?;
    for (name, value) in [
        ("timeout", raw.timeout.0),
        ("refresh_margin", raw.refresh_margin.0),
    ] {
        if value.is_zero() {
            return Err(ConfigError::new(field(name), "must be more than zero"));
        }
    }
    Ok(OAuth2Config {
        token_url: raw.token_url.trim().to_owned(),
        client_id: raw.client_id.trim().to_owned(),
        client_secret,
        refresh_token,
        scope: raw.scope.as_ref().map(|s| s.trim().to_owned()),
        timeout: raw.timeout.0,
        refresh_margin: raw.refresh_margin.0,
    })
}
