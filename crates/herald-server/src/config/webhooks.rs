//! `[[webhooks]]`: the application endpoints herald tells about deliveries,
//! bounces and the suppression list, in the Standard Webhooks format.
//!
//! ```toml
//! [[webhooks]]
//! url = "https://app.example.com/herald-events"
//! secret_env = "HERALD_WEBHOOK_SECRET"   # "whsec_…", several separated by spaces
//! events = ["message.bounced", "message.failed"]  # default: every event
//! retry_initial_delay = "5s"
//! retry_max_age = "3d"
//! concurrency = 8          # POSTs at once; default 1 (strictly in order)
//! ```

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald_policy::{Jitter, RetryPolicy};
use herald_store::WebhookEventType;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::ConfigError;
use super::build::Env;
use super::raw::Dur;

/// One `[[webhooks]]` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    /// A stable name (the delivery log's and the outbox cursor's); default:
    /// derived from the URL.
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// Where events are POSTed (http or https).
    pub(crate) url: String,
    /// The variable holding the `whsec_` secret(s), space-separated.
    pub(crate) secret_env: String,
    /// Only these event types; absent: all.
    #[serde(default)]
    pub(crate) events: Option<Vec<String>>,
    /// The first retry's delay; later ones double, up to four hours.
    #[serde(default = "default_initial")]
    pub(crate) retry_initial_delay: Dur,
    /// How old an event may get before it is given up.
    #[serde(default = "default_max_age")]
    pub(crate) retry_max_age: Dur,
    /// How long one POST may take.
    #[serde(default = "default_timeout")]
    pub(crate) timeout: Dur,
    /// POSTs in flight at once (1: strictly in order).
    #[serde(default = "default_concurrency")]
    pub(crate) concurrency: usize,
}

fn default_concurrency() -> usize {
    1
}

/// The most POSTs in flight to one endpoint.
pub(crate) const MAX_CONCURRENCY: usize = 64;

fn default_initial() -> Dur {
    Dur(Duration::from_secs(5))
}

fn default_max_age() -> Dur {
    Dur(Duration::from_secs(3 * 86_400))
}

fn default_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

/// A signing key, decoded from its `whsec_` form. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let encoded = text
            .strip_prefix("whsec_")
            .ok_or("must start with whsec_ (the secret is not shown)")?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| "whsec_ must be followed by base64 (the secret is not shown)")?;
        if key.len() < 16 {
            return Err("must hold at least 16 bytes of key (the secret is not shown)".into());
        }
        Ok(Self(key))
    }

    /// The key bytes.
    pub fn key(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

/// One endpoint, validated.
#[derive(Clone, PartialEq)]
pub struct WebhookConfig {
    /// Its stable name.
    pub name: String,
    /// Where events go.
    pub url: String,
    /// The keys each POST is signed with (the first is the current one;
    /// every one signs, so receivers can rotate).
    pub secrets: Vec<WebhookSecret>,
    /// The event types sent; `None`: all.
    pub events: Option<Vec<WebhookEventType>>,
    /// Retry delays and the maximum age of an event.
    pub retry: RetryPolicy,
    /// How long one POST may take.
    pub timeout: Duration,
    /// POSTs in flight at once; with 1, each event is delivered (or given
    /// up) before the next is sent.
    pub concurrency: usize,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a token: only its name is shown.
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("secrets", &self.secrets.len())
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl WebhookConfig {
    /// A digest of the URL (SHA-256, hex): what the store keeps of it
    /// (the URL may hold a token), so that a mark left for one URL does
    /// not hold for another under the same name.
    pub fn url_digest(&self) -> String {
        const_hex::encode(Sha256::digest(self.url.as_bytes()))
    }

    /// Whether events of `kind` go to this endpoint.
    pub fn wants(&self, kind: WebhookEventType) -> bool {
        self.events
            .as_ref()
            .is_none_or(|events| events.contains(&kind))
    }
}

/// Validates every `[[webhooks]]` entry.
pub(crate) fn webhooks(
    raw: Vec<RawWebhook>,
    env: Env<'_>,
) -> Result<Vec<WebhookConfig>, ConfigError> {
    let mut built: Vec<WebhookConfig> = Vec::with_capacity(raw.len());
    for (i, raw) in raw.into_iter().enumerate() {
        let field = |name: &str| format!("webhooks[{i}].{name}");
        if !(raw.url.starts_with("http://") || raw.url.starts_with("https://")) {
            return Err(ConfigError::new(
                field("url"),
                "must be an http:// or https:// URL",
            ));
        }
        let value = env(&raw.secret_env)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    field("secret_env"),
                    format!("environment variable {} is not set", raw.secret_env),
                )
            })?;
        let secrets = value
            .split_whitespace()
            .map(WebhookSecret::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::new(field("secret_env"), e))?;
        let events = raw
            .events
            .map(|names| {
                names
                    .iter()
                    .map(|n| n.parse::<WebhookEventType>())
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(|e| ConfigError::new(field("events"), e))?;
        let retry = RetryPolicy {
            initial_delay: raw.retry_initial_delay.0,
            multiplier: 2.0,
            max_delay: Duration::from_secs(4 * 3600).max(raw.retry_initial_delay.0),
            min_delay: raw.retry_initial_delay.0.min(Duration::from_secs(1)),
            max_attempts: u32::MAX,
            max_age: raw.retry_max_age.0,
            jitter: Jitter::Equal,
        };
        retry
            .validate()
            .map_err(|e| ConfigError::new(field(e.field()), e.reason()))?;
        if !(1..=MAX_CONCURRENCY).contains(&raw.concurrency) {
            return Err(ConfigError::new(
                field("concurrency"),
                format!("must be from 1 to {MAX_CONCURRENCY}"),
            ));
        }
        let name = raw.name.unwrap_or_else(|| {
            let digest = Sha256::digest(raw.url.as_bytes());
            format!("webhook-{}", &const_hex::encode(digest)[..12])
        });
        if built.iter().any(|w| w.name == name) {
            return Err(ConfigError::new(
                field("name"),
                "two webhooks share this name",
            ));
        }
        built.push(WebhookConfig {
            name,
            url: raw.url,
            secrets,
            events,
            retry,
            timeout: raw.timeout.0,
            concurrency: raw.concurrency,
        });
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn build(text: &str, var: Option<&str>) -> Result<Vec<WebhookConfig>, ConfigError> {
        #[derive(Deserialize)]
        struct File {
            webhooks: Vec<RawWebhook>,
        }
        let file: File = toml::from_str(text).unwrap();
        let value = var.map(str::to_owned);
        webhooks(file.webhooks, &move |_| value.clone())
    }

    #[test]
    fn an_entry_is_read_with_its_defaults() {
        let built = build(
            "[[webhooks]]\nurl = \"http://127.0.0.1:9/x\"\nsecret_env = \"S\"\n",
            Some(&format!("{SECRET} {SECRET}")),
        )
        .unwrap();
        assert_eq!(built[0].secrets.len(), 2);
        assert!(built[0].name.starts_with("webhook-"));
        assert_eq!(built[0].retry.initial_delay, Duration::from_secs(5));
        assert_eq!(built[0].retry.max_age, Duration::from_secs(3 * 86_400));
        assert!(built[0].wants(WebhookEventType::MessageBounced));
        assert!(!format!("{:?}", built[0]).contains("MfKQ"));
        assert_eq!(built[0].concurrency, 1, "strictly in order by default");
    }

    #[test]
    fn concurrency_is_from_1_to_64() {
        let text = |n: usize| {
            format!("[[webhooks]]\nurl = \"http://x/\"\nsecret_env = \"S\"\nconcurrency = {n}\n")
        };
        assert_eq!(build(&text(8), Some(SECRET)).unwrap()[0].concurrency, 8);
        for bad in [0, 65] {
            let error = build(&text(bad), Some(SECRET)).unwrap_err();
            assert_eq!(error.field, "webhooks[0].concurrency", "{bad}");
            assert!(error.message.contains("1 to 64"), "{}", error.message);
        }
    }

    #[test]
    fn bad_entries_name_their_field_and_never_the_secret() {
        let text = "[[webhooks]]\nurl = \"http://x/\"\nsecret_env = \"S\"\n";
        assert_eq!(
            build(text, None).unwrap_err().field,
            "webhooks[0].secret_env"
        );
        let wrong = build(text, Some("sk_live_123")).unwrap_err();
        assert_eq!(wrong.field, "webhooks[0].secret_env");
        assert!(!wrong.message.contains("sk_live"));
        let events = "[[webhooks]]\nurl = \"http://x/\"\nsecret_env = \"S\"\nevents = [\"nope\"]\n";
        assert_eq!(
            build(events, Some(SECRET)).unwrap_err().field,
            "webhooks[0].events"
        );
        let ftp = "[[webhooks]]\nurl = \"ftp://x/\"\nsecret_env = \"S\"\n";
        assert_eq!(
            build(ftp, Some(SECRET)).unwrap_err().field,
            "webhooks[0].url"
        );
    }
}
