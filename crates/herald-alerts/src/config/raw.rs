//! `[alerts]` exactly as written: serde types that refuse unknown keys,
//! with a named default for every field. `super` checks them.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// `[alerts]` exactly as written. The section may be left out: groups are
/// still kept (for `GET /v1/errors`), and nothing is sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// Default window of rules, and of `GET /v1/errors`.
    #[serde(default = "defaults::window")]
    pub(super) window: Dur,
    /// How often the rules are evaluated.
    #[serde(default = "defaults::evaluate_every")]
    pub(super) evaluate_every: Dur,
    /// How far back window counts reach (at least every rule's window).
    #[serde(default = "defaults::history")]
    pub(super) history: Dur,
    /// Most error groups held; the one seen least recently goes first.
    #[serde(default = "defaults::max_groups")]
    pub(super) max_groups: usize,
    /// Alerts waiting per channel; beyond, new ones are dropped and counted.
    #[serde(default = "defaults::queue_capacity")]
    pub(super) queue_capacity: usize,
    /// Tries per alert and channel, the first included.
    #[serde(default = "defaults::send_attempts")]
    pub(super) send_attempts: u32,
    /// Delay before the second try; doubled for each further one.
    #[serde(default = "defaults::send_backoff")]
    pub(super) send_backoff: Dur,
    /// Timeout of one webhook request, connection included.
    #[serde(default = "defaults::send_timeout")]
    pub(super) send_timeout: Dur,
    /// `[[alerts.channels]]`.
    #[serde(default = "defaults::channels")]
    pub(super) channels: Vec<RawChannel>,
    /// `[[alerts.rules]]`.
    #[serde(default = "defaults::rules")]
    pub(super) rules: Vec<RawRule>,
}

impl Default for RawAlerts {
    fn default() -> Self {
        Self {
            window: defaults::window(),
            evaluate_every: defaults::evaluate_every(),
            history: defaults::history(),
            max_groups: defaults::max_groups(),
            queue_capacity: defaults::queue_capacity(),
            send_attempts: defaults::send_attempts(),
            send_backoff: defaults::send_backoff(),
            send_timeout: defaults::send_timeout(),
            channels: defaults::channels(),
            rules: defaults::rules(),
        }
    }
}

impl fmt::Debug for RawAlerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawAlerts")
            .field("channels", &self.channels.len())
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

/// One `[[alerts.channels]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChannel {
    /// Unique name that rules refer to.
    pub(super) name: String,
    /// `webhook`, `wecom`, `feishu` (or `lark`), `dingtalk` or `slack`.
    pub(super) kind: String,
    /// The webhook URL (secret: it carries the token).
    #[serde(default = "defaults::none")]
    pub(super) url: Option<String>,
    /// An environment variable holding the URL.
    #[serde(default = "defaults::none")]
    pub(super) url_env: Option<String>,
    /// Signing secret (webhook, feishu, dingtalk).
    #[serde(default = "defaults::none")]
    pub(super) secret: Option<String>,
    /// An environment variable holding the signing secret.
    #[serde(default = "defaults::none")]
    pub(super) secret_env: Option<String>,
}

/// One `[[alerts.rules]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    /// Unique name, shown in alerts.
    pub(super) name: String,
    /// `group` (each error group) or `relay` (all failures of a relay).
    pub(super) scope: String,
    /// Only failures through this relay.
    #[serde(default = "defaults::none")]
    pub(super) relay: Option<String>,
    /// Only `transient` or only `permanent` failures.
    #[serde(default = "defaults::none")]
    pub(super) class: Option<String>,
    /// The sliding window; `None` means `alerts.window`.
    #[serde(default = "defaults::no_duration")]
    pub(super) window: Option<Dur>,
    /// Rate tiers need at least this many attempts in the window.
    #[serde(default = "defaults::min_attempts")]
    pub(super) min_attempts: u64,
    /// How long a tier stays quiet for a key after it fired.
    #[serde(default = "defaults::cooldown")]
    pub(super) cooldown: Dur,
    /// How long below every threshold before the incident is resolved.
    #[serde(default = "defaults::resolve_after")]
    pub(super) resolve_after: Dur,
    /// Escalation steps.
    #[serde(default = "defaults::tiers")]
    pub(super) tiers: Vec<RawTier>,
}

/// One entry of a rule's `tiers`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTier {
    /// Shown in alerts; `None` means `tier-N`.
    #[serde(default = "defaults::none")]
    pub(super) name: Option<String>,
    /// Fires at this many failures in the window.
    #[serde(default = "defaults::no_count")]
    pub(super) min_count: Option<u64>,
    /// Fires at this fraction of attempts failing in the window.
    #[serde(default = "defaults::no_rate")]
    pub(super) min_rate: Option<f64>,
    /// Channels to notify.
    #[serde(default = "defaults::tier_channels")]
    pub(super) channels: Vec<String>,
}

/// Every default, named after its field.
mod defaults {
    use super::{Dur, Duration, RawChannel, RawRule, RawTier};

    pub(super) fn window() -> Dur {
        Dur(Duration::from_secs(5 * 60))
    }
    pub(super) fn evaluate_every() -> Dur {
        Dur(Duration::from_secs(10))
    }
    pub(super) fn history() -> Dur {
        Dur(Duration::from_secs(60 * 60))
    }
    pub(super) fn max_groups() -> usize {
        1000
    }
    pub(super) fn queue_capacity() -> usize {
        100
    }
    pub(super) fn send_attempts() -> u32 {
        3
    }
    pub(super) fn send_backoff() -> Dur {
        Dur(Duration::from_secs(1))
    }
    pub(super) fn send_timeout() -> Dur {
        Dur(Duration::from_secs(10))
    }
    pub(super) fn channels() -> Vec<RawChannel> {
        Vec::new()
    }
    pub(super) fn rules() -> Vec<RawRule> {
        Vec::new()
    }
    pub(super) fn none() -> Option<String> {
        None
    }
    pub(super) fn no_duration() -> Option<Dur> {
        None
    }
    pub(super) fn min_attempts() -> u64 {
        20
    }
    pub(super) fn cooldown() -> Dur {
        Dur(Duration::from_secs(30 * 60))
    }
    pub(super) fn resolve_after() -> Dur {
        Dur(Duration::from_secs(10 * 60))
    }
    pub(super) fn tiers() -> Vec<RawTier> {
        Vec::new()
    }
    pub(super) fn no_count() -> Option<u64> {
        None
    }
    pub(super) fn no_rate() -> Option<f64> {
        None
    }
    pub(super) fn tier_channels() -> Vec<String> {
        Vec::new()
    }
}

/// A duration written as a human string: `"500ms"`, `"30s"`, `"5m"`,
/// `"1h"`, `"3d"` (as everywhere in herald's configuration).
#[derive(Clone, Copy)]
pub(super) struct Dur(pub(super) Duration);

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
