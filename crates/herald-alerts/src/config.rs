//! `[alerts]`: the channels alerts go to and the rules that raise them.
//! Raw serde types (unknown keys refused, a named default on every field,
//! durations written `"5m"`) are checked once into [`AlertsConfig`], every
//! error naming its field (`alerts.rules[0].tiers[1].channels[0]`). Secrets
//! (webhook URLs carry tokens; signing secrets) never appear in errors or
//! `Debug`.

mod raw;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

pub use self::raw::RawAlerts;
use self::raw::{RawChannel, RawRule};
use crate::channels::ChannelKind;
use crate::fingerprint::FailureClass;
use crate::rules::{AlertRule, RuleScope, Threshold, Tier};

/// What is wrong with the `[alerts]` section, and where: `field` is a
/// path into the file (`alerts.rules[0].tiers[1].channels[0]`). Neither
/// part ever contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct AlertsConfigError {
    /// Where: a path into the file.
    pub field: String,
    /// What is wrong, in words.
    pub message: String,
}

impl AlertsConfigError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The validated `[alerts]` section.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// Default window of rules and of `GET /v1/errors` (default 5 min).
    pub window: Duration,
    /// How often the evaluator runs (default 10 s).
    pub evaluate_every: Duration,
    /// How far back window counts reach: the larger of `history` (default
    /// 1 h) and every window.
    pub history: Duration,
    /// Most error groups held (default 1000).
    pub max_groups: usize,
    /// Alerts waiting per channel before new ones are dropped (default 100).
    pub queue_capacity: usize,
    /// How each alert is sent and retried.
    pub send: SendPolicy,
    /// The channels, in file order.
    pub channels: Vec<ChannelConfig>,
    /// The rules, in file order.
    pub rules: Vec<AlertRule>,
}

impl Default for AlertsConfig {
    /// Every default, no channel, no rule: groups are kept, nothing is sent.
    fn default() -> Self {
        let raw = RawAlerts::default();
        Self {
            window: raw.window.0,
            evaluate_every: raw.evaluate_every.0,
            history: raw.history.0.max(raw.window.0),
            max_groups: raw.max_groups,
            queue_capacity: raw.queue_capacity,
            send: SendPolicy {
                attempts: raw.send_attempts,
                backoff: raw.send_backoff.0,
                timeout: raw.send_timeout.0,
            },
            channels: Vec::new(),
            rules: Vec::new(),
        }
    }
}

impl AlertsConfig {
    /// Reads the `[alerts]` section of a whole configuration file, ignoring
    /// the other sections (for tests and tools; the service reads it as part
    /// of its `Config`). `env` stands for the environment.
    pub fn from_toml_str(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, AlertsConfigError> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            alerts: RawAlerts,
        }
        let file: File = toml::from_str(text)
            .map_err(|e| AlertsConfigError::new("alerts", e.message().trim().replace('\n', " ")))?;
        file.alerts.build(env)
    }

    /// Checks that every rule's `relay` names one of `relays`.
    pub fn check_relays(&self, relays: &[&str]) -> Result<(), AlertsConfigError> {
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(relay) = &rule.relay
                && !relays.contains(&relay.as_str())
            {
                return Err(AlertsConfigError::new(
                    format!("alerts.rules[{i}].relay"),
                    format!("no relay is named {relay:?}"),
                ));
            }
        }
        Ok(())
    }
}

/// How alerts are delivered to a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendPolicy {
    /// Tries per alert, the first included (default 3).
    pub attempts: u32,
    /// Delay before the second try, doubled for each further one
    /// (default 1 s: 1 s, 2 s, 4 s, …).
    pub backoff: Duration,
    /// Timeout of one request, connection included (default 10 s).
    pub timeout: Duration,
}

impl SendPolicy {
    /// The longest delay between two tries.
    pub const MAX_DELAY: Duration = Duration::from_secs(60 * 60);

    /// The delay after failed try `attempt` (1-based): `backoff ·
    /// 2^(attempt-1)`, at most [`MAX_DELAY`](Self::MAX_DELAY).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(Self::MAX_DELAY)
    }
}

/// One channel, validated. `Debug` shows the URL redacted (its tokens
/// starred) and not the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Unique name that rules refer to.
    pub name: String,
    /// The message format.
    pub kind: ChannelKind,
    /// The webhook URL (secret).
    pub url: String,
    /// The signing secret, if any.
    pub secret: Option<String>,
}

impl ChannelConfig {
    /// The URL's scheme and host, the rest starred, for `Debug`: where the
    /// alerts go, never a token (which may be in the path, the query or the
    /// user information). The service shows more of it by its own rule.
    fn shown_url(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return "***".to_owned();
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        format!("{scheme}://{host}/***")
    }
}

impl fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.shown_url())
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish()
    }
}

impl RawAlerts {
    /// Validates the section; `env` stands for the environment (asked for
    /// the variables named by `url_env` and `secret_env`).
    pub fn build(
        self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AlertsConfig, AlertsConfigError> {
        let field = |name: &str| format!("alerts.{name}");
        for (name, d) in [
            ("window", self.window.0),
            ("evaluate_every", self.evaluate_every.0),
            ("history", self.history.0),
            ("send_timeout", self.send_timeout.0),
        ] {
            if d < Duration::from_secs(1) {
                return Err(AlertsConfigError::new(field(name), "must be at least 1s"));
            }
        }
        for (name, n) in [
            ("max_groups", self.max_groups),
            ("queue_capacity", self.queue_capacity),
        ] {
            if n == 0 {
                return Err(AlertsConfigError::new(field(name), "must be at least 1"));
            }
        }
        if !(1..=10).contains(&self.send_attempts) {
            return Err(AlertsConfigError::new(
                field("send_attempts"),
                "must be between 1 and 10",
            ));
        }
        let mut channels: Vec<ChannelConfig> = Vec::new();
        for (i, raw) in self.channels.into_iter().enumerate() {
            let channel = channel(raw, i, env)?;
            if channels.iter().any(|c| c.name == channel.name) {
                return Err(AlertsConfigError::new(
                    format!("alerts.channels[{i}].name"),
                    format!("{:?} is used twice", channel.name),
                ));
            }
            channels.push(channel);
        }
        let mut rules: Vec<AlertRule> = Vec::new();
        for (i, raw) in self.rules.into_iter().enumerate() {
            let rule = rule(raw, i, self.window.0, &channels)?;
            if rules.iter().any(|r| r.name == rule.name) {
                return Err(AlertsConfigError::new(
                    format!("alerts.rules[{i}].name"),
                    format!("{:?} is used twice", rule.name),
                ));
            }
            rules.push(rule);
        }
        let history = rules
            .iter()
            .map(|r| r.window)
            .fold(self.history.0.max(self.window.0), Duration::max);
        Ok(AlertsConfig {
            window: self.window.0,
            evaluate_every: self.evaluate_every.0,
            history,
            max_groups: self.max_groups,
            queue_capacity: self.queue_capacity,
            send: SendPolicy {
                attempts: self.send_attempts,
                backoff: self.send_backoff.0,
                timeout: self.send_timeout.0,
            },
            channels,
            rules,
        })
    }
}

/// `[A-Za-z0-9_.-]+`: names appear in logs, metrics labels and alerts.
fn check_name(field: &str, name: &str) -> Result<(), AlertsConfigError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(AlertsConfigError::new(
            field,
            format!("{name:?} is not a name (letters, digits, '_', '.', '-')"),
        ));
    }
    Ok(())
}

fn channel(
    raw: RawChannel,
    i: usize,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ChannelConfig, AlertsConfigError> {
    let field = |name: &str| format!("alerts.channels[{i}].{name}");
    check_name(&field("name"), &raw.name)?;
    let kind: ChannelKind = raw
        .kind
        .parse()
        .map_err(|e: String| AlertsConfigError::new(field("kind"), e))?;
    let url = from_file_or_env(raw.url, raw.url_env, "url", &field, env)?
        .ok_or_else(|| AlertsConfigError::new(field("url"), "required (or url_env)"))?;
    // The URL is a secret: say what is wrong, never what it is.
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host_ok = rest.is_some_and(|r| !r.is_empty() && !r.starts_with(['/', '?', '#']));
    if !host_ok || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AlertsConfigError::new(
            field("url"),
            "not an http:// or https:// URL (value not shown)",
        ));
    }
    let secret = from_file_or_env(raw.secret, raw.secret_env, "secret", &field, env)?;
    if secret.is_some() && !kind.signs() {
        return Err(AlertsConfigError::new(
            field("secret"),
            format!(
                "{} webhooks are not signed (the token is in the URL); remove it",
                kind.as_str()
            ),
        ));
    }
    Ok(ChannelConfig {
        name: raw.name,
        kind,
        url,
        secret,
    })
}

/// A value given in the file or through an environment variable, not both.
fn from_file_or_env(
    inline: Option<String>,
    env_name: Option<String>,
    name: &str,
    field: &dyn Fn(&str) -> String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, AlertsConfigError> {
    match (inline, env_name) {
        (Some(_), Some(_)) => Err(AlertsConfigError::new(
            field(name),
            format!("give {name} or {name}_env, not both"),
        )),
        (Some(v), None) => {
            let v = v.trim().to_owned();
            if v.is_empty() {
                return Err(AlertsConfigError::new(field(name), "must not be empty"));
            }
            Ok(Some(v))
        }
        (None, Some(var)) => {
            let v = env(&var).map(|v| v.trim().to_owned()).unwrap_or_default();
            if v.is_empty() {
                return Err(AlertsConfigError::new(
                    field(&format!("{name}_env")),
                    format!("environment variable {var} is not set or empty"),
                ));
            }
            Ok(Some(v))
        }
        (None, None) => Ok(None),
    }
}

fn rule(
    raw: RawRule,
    i: usize,
    default_window: Duration,
    channels: &[ChannelConfig],
) -> Result<AlertRule, AlertsConfigError> {
    let field = |name: &str| format!("alerts.rules[{i}].{name}");
    check_name(&field("name"), &raw.name)?;
    let scope = match raw.scope.as_str() {
        "group" => RuleScope::Group,
        "relay" => RuleScope::Relay,
        other => {
            return Err(AlertsConfigError::new(
                field("scope"),
                format!("unknown scope {other:?} (group, relay)"),
            ));
        }
    };
    let class = raw
        .class
        .map(|c| c.parse::<FailureClass>())
        .transpose()
        .map_err(|e| AlertsConfigError::new(field("class"), e))?;
    let window = raw.window.map_or(default_window, |d| d.0);
    if window < Duration::from_secs(1) {
        return Err(AlertsConfigError::new(
            field("window"),
            "must be at least 1s",
        ));
    }
    if raw.min_attempts == 0 {
        return Err(AlertsConfigError::new(
            field("min_attempts"),
            "must be at least 1",
        ));
    }
    if raw.tiers.is_empty() {
        return Err(AlertsConfigError::new(
            field("tiers"),
            "at least one tier is required",
        ));
    }
    let mut tiers: Vec<Tier> = Vec::new();
    for (t, raw_tier) in raw.tiers.into_iter().enumerate() {
        let tier_field = |name: &str| field(&format!("tiers[{t}].{name}"));
        let name = raw_tier.name.unwrap_or_else(|| format!("tier-{}", t + 1));
        check_name(&tier_field("name"), &name)?;
        if tiers.iter().any(|x| x.name == name) {
            return Err(AlertsConfigError::new(
                tier_field("name"),
                format!("{name:?} is used twice in this rule"),
            ));
        }
        let threshold = match (raw_tier.min_count, raw_tier.min_rate) {
            (Some(n), None) if n >= 1 => Threshold::Count(n),
            (Some(_), None) => {
                return Err(AlertsConfigError::new(
                    tier_field("min_count"),
                    "must be at least 1",
                ));
            }
            (None, Some(r)) if r > 0.0 && r <= 1.0 => Threshold::Rate(r),
            (None, Some(_)) => {
                return Err(AlertsConfigError::new(
                    tier_field("min_rate"),
                    "must be a fraction above 0 and at most 1 (0.2 = 20 %)",
                ));
            }
            _ => {
                return Err(AlertsConfigError::new(
                    field(&format!("tiers[{t}]")),
                    "give exactly one of min_count and min_rate",
                ));
            }
        };
        if raw_tier.channels.is_empty() {
            return Err(AlertsConfigError::new(
                tier_field("channels"),
                "at least one channel is required",
            ));
        }
        for (c, name) in raw_tier.channels.iter().enumerate() {
            if !channels.iter().any(|ch| ch.name == *name) {
                return Err(AlertsConfigError::new(
                    tier_field(&format!("channels[{c}]")),
                    format!("no channel is named {name:?}"),
                ));
            }
        }
        tiers.push(Tier {
            name,
            threshold,
            channels: raw_tier.channels,
        });
    }
    Ok(AlertRule {
        name: raw.name,
        scope,
        relay: raw.relay,
        class,
        window,
        min_attempts: raw.min_attempts,
        tiers,
        cooldown: raw.cooldown.0,
        resolve_after: raw.resolve_after.0,
    })
}
