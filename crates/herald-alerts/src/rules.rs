//! The alert rules engine: a pure state machine fed the error groups and a
//! time. Each rule watches keys (an error group, or a relay); a key whose
//! sliding-window count crosses a tier's threshold opens an incident, each
//! tier fires once per incident (and not again within its cooldown), and a
//! key that stays below every threshold for `resolve_after` is resolved.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::fingerprint::FailureClass;
use crate::groups::{ErrorGroups, Group};

/// What a rule counts per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleScope {
    /// Each error group on its own: "550 5.7.1 spam rejected via primary".
    Group,
    /// All failures through a relay, whatever the error.
    Relay,
}

impl RuleScope {
    /// `"group"` or `"relay"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Group => "group",
            Self::Relay => "relay",
        }
    }
}

/// When a tier is crossed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// At least this many failures within the window.
    Count(u64),
    /// At least this fraction (0 < r ≤ 1) of the relay's attempts within
    /// the window failed, and there were at least the rule's
    /// `min_attempts` attempts.
    Rate(f64),
}

impl Threshold {
    fn met(self, count: u64, attempts: u64, min_attempts: u64) -> bool {
        match self {
            Self::Count(n) => count >= n.max(1),
            Self::Rate(r) => {
                count > 0 && attempts > 0 && attempts >= min_attempts && ratio(count, attempts) >= r
            }
        }
    }
}

/// `count / attempts` as a float, for rates.
pub(crate) fn ratio(count: u64, attempts: u64) -> f64 {
    // Precision loss above 2^53 events is irrelevant to a threshold.
    #[allow(clippy::cast_precision_loss)]
    let r = count as f64 / attempts.max(1) as f64;
    r
}

/// One escalation step of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    /// Shown in alerts (`tier-1`, `page`, …); unique within the rule.
    pub name: String,
    /// When this tier fires.
    pub threshold: Threshold,
    /// The channels (by name) it notifies.
    pub channels: Vec<String>,
}

/// One alert rule, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// Unique name, shown in alerts.
    pub name: String,
    /// Per error group or per relay.
    pub scope: RuleScope,
    /// Only failures through this relay.
    pub relay: Option<String>,
    /// Only transient or only permanent failures.
    pub class: Option<FailureClass>,
    /// The sliding window counts are taken over.
    pub window: Duration,
    /// Rate tiers need at least this many attempts within the window.
    pub min_attempts: u64,
    /// Escalation steps, each firing once per incident when its own
    /// threshold is met.
    pub tiers: Vec<Tier>,
    /// A tier that fired for a key does not fire again for that key within
    /// this long, even for a new incident (flapping).
    pub cooldown: Duration,
    /// An incident is resolved once no tier's threshold has been met for
    /// this long.
    pub resolve_after: Duration,
}

impl AlertRule {
    fn has_rate(&self) -> bool {
        self.tiers
            .iter()
            .any(|t| matches!(t.threshold, Threshold::Rate(_)))
    }
}

/// Whether an event opens (or escalates) or closes an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    /// A tier's threshold was crossed.
    Fire,
    /// The key has been quiet for `resolve_after`.
    Resolve,
}

/// The error an alert is about: the group's fingerprint and latest sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertSample {
    /// The group's id.
    pub group_id: String,
    /// Transient or permanent.
    pub class: FailureClass,
    /// The SMTP reply code, if any.
    pub smtp_code: Option<u16>,
    /// The enhanced status code, if any.
    pub enhanced_code: Option<String>,
    /// The normalised reply text (no addresses: safe for a chat room).
    pub text: String,
    /// The message that failed most recently.
    pub message_id: String,
}

impl AlertSample {
    fn of(group: &Group) -> Self {
        Self {
            group_id: group.fp.id.clone(),
            class: group.fp.class,
            smtp_code: group.fp.smtp_code,
            enhanced_code: group.fp.enhanced_code.clone(),
            text: group.fp.text.clone(),
            message_id: group.sample_message_id.clone(),
        }
    }
}

/// A notification to send.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    /// Fire or resolve.
    pub kind: AlertKind,
    /// The rule's name.
    pub rule: String,
    /// What the rule counts per key.
    pub scope: RuleScope,
    /// The error group's id or the relay's name.
    pub key: String,
    /// The relay concerned.
    pub relay: String,
    /// The tier that fired; for a resolve, the highest tier that fired
    /// during the incident.
    pub tier: String,
    /// That tier's position in the rule, from 0.
    pub tier_index: usize,
    /// That tier's threshold.
    pub threshold: Threshold,
    /// The channels to notify: the tier's, or for a resolve every channel
    /// notified during the incident.
    pub channels: Vec<String>,
    /// Failures within the window at `at`.
    pub count: u64,
    /// The relay's attempts within the window, for rules with rate tiers.
    pub attempts: Option<u64>,
    /// The rule's window.
    pub window: Duration,
    /// When the incident opened.
    pub started_at: OffsetDateTime,
    /// When this was decided.
    pub at: OffsetDateTime,
    /// The error, when known (the group, or the relay's most frequent group).
    pub sample: Option<AlertSample>,
}

/// What every rule measured, per key, in rule order.
#[derive(Debug)]
pub(crate) struct Readings(Vec<BTreeMap<String, Reading>>);

/// One key's measurement at one evaluation.
#[derive(Debug)]
struct Reading {
    relay: String,
    count: u64,
    attempts: Option<u64>,
    sample: Option<AlertSample>,
}

/// An open incident of one key.
#[derive(Debug, Clone)]
struct Incident {
    started_at: OffsetDateTime,
    /// Tiers notified during this incident.
    fired: Vec<bool>,
    /// Since when no tier has been met.
    quiet_since: Option<OffsetDateTime>,
    relay: String,
    sample: Option<AlertSample>,
}

/// What is remembered per (rule, key).
#[derive(Debug, Clone)]
struct KeyState {
    incident: Option<Incident>,
    /// When each tier last fired, for the cooldown.
    last_fired: Vec<Option<OffsetDateTime>>,
}

/// The rules and their incidents.
#[derive(Debug, Clone)]
pub struct RuleEngine {
    rules: Vec<AlertRule>,
    states: HashMap<(usize, String), KeyState>,
}

impl RuleEngine {
    /// An engine with no open incident.
    pub fn new(rules: Vec<AlertRule>) -> Self {
        Self {
            rules,
            states: HashMap::new(),
        }
    }

    /// The rules.
    pub fn rules(&self) -> &[AlertRule] {
        &self.rules
    }

    /// Replaces the rules (a configuration reload). A rule that is still
    /// there, unchanged, keeps its open incidents and cooldowns wherever
    /// it moved in the list; the incidents of a changed or removed rule
    /// are dropped without a resolve (what resolves them is gone with the
    /// old definition). Returns how many open incidents were dropped.
    pub fn replace_rules(&mut self, rules: Vec<AlertRule>) -> usize {
        let moved: Vec<Option<usize>> = self
            .rules
            .iter()
            .map(|old| rules.iter().position(|new| new == old))
            .collect();
        let mut dropped = 0;
        for ((index, key), state) in std::mem::take(&mut self.states) {
            match moved.get(index).copied().flatten() {
                Some(new) => {
                    self.states.insert((new, key), state);
                }
                None if state.incident.is_some() => dropped += 1,
                None => {}
            }
        }
        self.rules = rules;
        dropped
    }

    /// How many incidents are open.
    pub fn open_incidents(&self) -> usize {
        self.states
            .values()
            .filter(|s| s.incident.is_some())
            .count()
    }

    /// Measures every key of every rule at `now` and returns what to send,
    /// rule by rule, keys in order.
    pub fn evaluate(&mut self, groups: &ErrorGroups, now: OffsetDateTime) -> Vec<AlertEvent> {
        let readings = self.measure(groups, now);
        self.decide(readings, now)
    }

    /// The counts every rule sees at `now`: the only part that reads the
    /// groups, so that their lock is not held while deciding.
    pub(crate) fn measure(&self, groups: &ErrorGroups, now: OffsetDateTime) -> Readings {
        Readings(
            self.rules
                .iter()
                .map(|rule| measure(rule, groups, now))
                .collect(),
        )
    }

    /// Turns the counts into alerts and advances the incidents.
    pub(crate) fn decide(&mut self, readings: Readings, now: OffsetDateTime) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        for (index, mut readings) in readings.0.into_iter().enumerate() {
            let Some(rule) = self.rules.get(index) else {
                continue;
            };
            // Keys with an open incident that nothing measured any more (an
            // evicted group, a forgotten relay) read zero, so they resolve.
            for ((i, key), state) in &self.states {
                if *i == index
                    && !readings.contains_key(key)
                    && let Some(incident) = &state.incident
                {
                    readings.insert(
                        key.clone(),
                        Reading {
                            relay: incident.relay.clone(),
                            count: 0,
                            attempts: rule.has_rate().then_some(0),
                            sample: None,
                        },
                    );
                }
            }
            for (key, reading) in readings {
                if let Some(event) = self.step(index, key, reading, now, &mut events) {
                    events.push(event);
                }
            }
        }
        // Forget keys with nothing open and no cooldown running.
        let rules = &self.rules;
        self.states.retain(|(i, _), state| {
            let cooldown = rules.get(*i).map_or(Duration::ZERO, |r| r.cooldown);
            state.incident.is_some()
                || state
                    .last_fired
                    .iter()
                    .flatten()
                    .any(|&t| elapsed(t, now) < cooldown)
        });
        events
    }

    /// One key of one rule: pushes its fires; returns its resolve.
    fn step(
        &mut self,
        index: usize,
        key: String,
        reading: Reading,
        now: OffsetDateTime,
        events: &mut Vec<AlertEvent>,
    ) -> Option<AlertEvent> {
        let rule = self.rules.get(index)?;
        let attempts = reading.attempts.unwrap_or(0);
        let met: Vec<bool> = rule
            .tiers
            .iter()
            .map(|t| t.threshold.met(reading.count, attempts, rule.min_attempts))
            .collect();
        let any_met = met.iter().any(|&m| m);
        let state_key = (index, key);
        if !any_met && !self.states.contains_key(&state_key) {
            return None;
        }
        let state = self
            .states
            .entry(state_key.clone())
            .or_insert_with(|| KeyState {
                incident: None,
                last_fired: vec![None; rule.tiers.len()],
            });
        if state.incident.is_none() {
            if !any_met {
                return None;
            }
            state.incident = Some(Incident {
                started_at: now,
                fired: vec![false; rule.tiers.len()],
                quiet_since: None,
                relay: reading.relay.clone(),
                sample: None,
            });
        }
        let incident = state.incident.as_mut()?;
        if reading.sample.is_some() {
            incident.sample.clone_from(&reading.sample);
        }
        let event = |kind, tier_index: usize, tier: &Tier, channels: Vec<String>| AlertEvent {
            kind,
            rule: rule.name.clone(),
            scope: rule.scope,
            key: state_key.1.clone(),
            relay: reading.relay.clone(),
            tier: tier.name.clone(),
            tier_index,
            threshold: tier.threshold,
            channels,
            count: reading.count,
            attempts: reading.attempts,
            window: rule.window,
            started_at: incident.started_at,
            at: now,
            sample: incident.sample.clone(),
        };
        if any_met {
            incident.quiet_since = None;
            let mut fired_now = Vec::new();
            for (t, tier) in rule.tiers.iter().enumerate() {
                let already = incident.fired.get(t).copied().unwrap_or(true);
                if !met.get(t).copied().unwrap_or(false) || already {
                    continue;
                }
                let last = state.last_fired.get(t).copied().flatten();
                if last.is_some_and(|last| elapsed(last, now) < rule.cooldown) {
                    // Suppressed; fires once the cooldown is over if the
                    // incident is still on.
                    continue;
                }
                fired_now.push(event(AlertKind::Fire, t, tier, tier.channels.clone()));
                if let Some(f) = incident.fired.get_mut(t) {
                    *f = true;
                }
                if let Some(l) = state.last_fired.get_mut(t) {
                    *l = Some(now);
                }
            }
            events.extend(fired_now);
            return None;
        }
        let quiet_since = *incident.quiet_since.get_or_insert(now);
        if elapsed(quiet_since, now) < rule.resolve_after {
            return None;
        }
        // Quiet long enough: close, telling whoever was told it opened.
        let highest = incident.fired.iter().rposition(|&f| f);
        let resolve = highest.and_then(|top| {
            let mut channels: Vec<String> = Vec::new();
            for (tier, _) in rule
                .tiers
                .iter()
                .zip(&incident.fired)
                .filter(|(_, fired)| **fired)
            {
                for c in &tier.channels {
                    if !channels.contains(c) {
                        channels.push(c.clone());
                    }
                }
            }
            rule.tiers
                .get(top)
                .map(|tier| event(AlertKind::Resolve, top, tier, channels))
        });
        state.incident = None;
        resolve
    }
}

/// Every key the rule sees, with its counts, in key order.
fn measure(
    rule: &AlertRule,
    groups: &ErrorGroups,
    now: OffsetDateTime,
) -> BTreeMap<String, Reading> {
    let mut readings = BTreeMap::new();
    let relay_ok = |relay: &str| rule.relay.as_deref().is_none_or(|r| r == relay);
    let attempts = |relay: &str| {
        rule.has_rate()
            .then(|| groups.relay_attempts(relay, rule.window, now))
    };
    match rule.scope {
        RuleScope::Group => {
            for group in groups.iter() {
                if !relay_ok(&group.fp.relay) || rule.class.is_some_and(|c| c != group.fp.class) {
                    continue;
                }
                let count = groups.group_count(group, rule.window, now);
                if count == 0 {
                    continue;
                }
                readings.insert(
                    group.fp.id.clone(),
                    Reading {
                        relay: group.fp.relay.clone(),
                        count,
                        attempts: attempts(&group.fp.relay),
                        sample: Some(AlertSample::of(group)),
                    },
                );
            }
        }
        RuleScope::Relay => {
            for relay in groups.relay_names() {
                if !relay_ok(relay) {
                    continue;
                }
                let count = groups.relay_failures(relay, rule.class, rule.window, now);
                if count == 0 {
                    continue;
                }
                readings.insert(
                    relay.to_owned(),
                    Reading {
                        relay: relay.to_owned(),
                        count,
                        attempts: attempts(relay),
                        sample: top_group(rule, groups, relay, now).map(AlertSample::of),
                    },
                );
            }
        }
    }
    readings
}

/// The relay's group with the most failures in the window (ties: the one
/// seen last, then the smaller id).
fn top_group<'a>(
    rule: &AlertRule,
    groups: &'a ErrorGroups,
    relay: &str,
    now: OffsetDateTime,
) -> Option<&'a Group> {
    groups
        .iter()
        .filter(|g| g.fp.relay == relay && rule.class.is_none_or(|c| c == g.fp.class))
        .map(|g| (groups.group_count(g, rule.window, now), g))
        .filter(|(count, _)| *count > 0)
        .max_by(|(ca, a), (cb, b)| {
            ca.cmp(cb)
                .then(a.last_seen.cmp(&b.last_seen))
                .then(b.fp.id.cmp(&a.fp.id))
        })
        .map(|(_, g)| g)
}

/// `to - from`, zero if negative.
fn elapsed(from: OffsetDateTime, to: OffsetDateTime) -> Duration {
    Duration::try_from(to - from).unwrap_or(Duration::ZERO)
}
