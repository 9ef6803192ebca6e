//! Error groups: every failed or deferred attempt is added to the group of
//! its fingerprint, so an operator sees "550 5.1.1 user unknown, 1 200
//! times via primary" instead of 1 200 lines. In memory and bounded (the
//! groups seen least recently are forgotten first, in small batches), with
//! sliding-window counts per group and per relay for the alert rules.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::fingerprint::{FailureClass, Fingerprint, fingerprint};
use crate::window::{Resolution, WindowCounter};

/// Relays tracked at once; beyond, the one seen least recently is dropped.
/// Relays come from the configuration, so this is a guard, not a tuning.
const MAX_RELAYS: usize = 256;
/// When full, this fraction of `max_groups` is evicted at once.
const EVICTION_BATCH_DIVISOR: usize = 64;
/// Longest sample response kept, in characters.
const MAX_SAMPLE_CHARS: usize = 1000;

/// One failed or deferred attempt, as the delivery worker saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureSample {
    /// The relay's name (or `outbox`).
    pub relay: String,
    /// Transient (deferred) or permanent (failed).
    pub class: FailureClass,
    /// The SMTP reply code, if the server answered.
    pub smtp_code: Option<u16>,
    /// The enhanced status code, if any (`5.1.1`).
    pub enhanced_code: Option<String>,
    /// The reply text, or the error's description when there was no reply.
    pub response: String,
    /// The message's id, kept as the group's sample.
    pub message_id: String,
    /// When the attempt ended.
    pub at: OffsetDateTime,
}

impl FailureSample {
    /// The sample's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint(
            &self.relay,
            self.class,
            self.smtp_code,
            self.enhanced_code.as_deref(),
            &self.response,
        )
    }
}

/// Which groups [`ErrorGroups::views`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupFilter {
    /// Only groups seen within this window, counted over it; `None` means
    /// every group, with `window_count` over the default window.
    pub window: Option<Duration>,
    /// Only groups of this relay.
    pub relay: Option<String>,
}

/// One error group as `GET /v1/errors` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupView {
    /// The fingerprint: 12 hex digits.
    pub id: String,
    /// The relay's name.
    pub relay: String,
    /// `transient` or `permanent`.
    pub class: FailureClass,
    /// The SMTP reply code, if the server answered.
    pub smtp_code: Option<u16>,
    /// The enhanced status code, if any.
    pub enhanced_code: Option<String>,
    /// The normalised reply text the group is keyed on.
    pub text: String,
    /// Failures since the group was first seen (this process's lifetime).
    pub count: u64,
    /// Failures within the filter's window (or the default window).
    pub window_count: u64,
    /// The first failure.
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    /// The latest failure.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// The id of the message that failed most recently.
    pub sample_message_id: String,
    /// Its reply, as the server wrote it (may name the recipient).
    pub sample_response: String,
}

/// One group's counts and sample.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) fp: Fingerprint,
    pub(crate) count: u64,
    pub(crate) first_seen: OffsetDateTime,
    pub(crate) last_seen: OffsetDateTime,
    pub(crate) sample_message_id: String,
    pub(crate) sample_response: String,
    recent: WindowCounter,
}

/// One relay's attempts and failures, for per-relay rules and rates.
#[derive(Debug, Clone)]
struct RelayStats {
    attempts: WindowCounter,
    transient: WindowCounter,
    permanent: WindowCounter,
    last_seen: OffsetDateTime,
}

impl RelayStats {
    fn new(at: OffsetDateTime) -> Self {
        Self {
            attempts: WindowCounter::default(),
            transient: WindowCounter::default(),
            permanent: WindowCounter::default(),
            last_seen: at,
        }
    }
}

/// The error groups, in memory. Not synchronised: the owner holds it under
/// a mutex (see [`Alerting`](crate::Alerting)).
#[derive(Debug, Clone)]
pub struct ErrorGroups {
    res: Resolution,
    max_groups: usize,
    groups: HashMap<String, Group>,
    relays: HashMap<String, RelayStats>,
    evicted: u64,
}

impl ErrorGroups {
    /// At most `max_groups` groups (at least one); window counts reach back
    /// `history` (rounded to the bucket width, see
    /// [`bucket_width`](Self::bucket_width)).
    pub fn new(max_groups: usize, history: Duration) -> Self {
        Self {
            res: Resolution::for_history(history),
            max_groups: max_groups.max(1),
            groups: HashMap::new(),
            relays: HashMap::new(),
            evicted: 0,
        }
    }

    /// The width of the time buckets windows are counted in: one second for
    /// a history of up to six minutes, wider beyond. Window edges are exact
    /// to this width.
    pub fn bucket_width(&self) -> Duration {
        self.res.width()
    }

    /// Adds a failure to its group (creating it, and evicting the group
    /// seen least recently if there are too many), and to its relay's
    /// failure counts. Returns the group's id.
    pub fn record_failure(&mut self, sample: FailureSample) -> String {
        let fp = sample.fingerprint();
        self.record_fingerprinted(fp, sample)
    }

    /// [`record_failure`](Self::record_failure) with the fingerprint
    /// already taken (outside any lock).
    pub(crate) fn record_fingerprinted(
        &mut self,
        fp: Fingerprint,
        sample: FailureSample,
    ) -> String {
        let secs = sample.at.unix_timestamp();
        let res = self.res;
        let stats = self.relay_mut(&sample.relay, sample.at);
        match sample.class {
            FailureClass::Transient => stats.transient.add(res, secs, 1),
            FailureClass::Permanent => stats.permanent.add(res, secs, 1),
        }
        let id = fp.id.clone();
        if !self.groups.contains_key(&id) && self.groups.len() >= self.max_groups {
            self.evict_oldest();
        }
        let group = self.groups.entry(id.clone()).or_insert_with(|| Group {
            fp,
            count: 0,
            first_seen: sample.at,
            last_seen: sample.at,
            sample_message_id: String::new(),
            sample_response: String::new(),
            recent: WindowCounter::default(),
        });
        group.count = group.count.saturating_add(1);
        group.recent.add(res, secs, 1);
        group.first_seen = group.first_seen.min(sample.at);
        if sample.at >= group.last_seen || group.sample_message_id.is_empty() {
            group.last_seen = group.last_seen.max(sample.at);
            group.sample_message_id = sample.message_id;
            group.sample_response = truncate(sample.response, MAX_SAMPLE_CHARS);
        }
        id
    }

    /// Counts one delivery attempt through `relay`, failed or not (the
    /// denominator of failure rates).
    pub fn record_attempt(&mut self, relay: &str, at: OffsetDateTime) {
        self.record_attempts(relay, at, 1);
    }

    /// Counts `n` attempts through `relay` at `at` (another node's report).
    pub fn record_attempts(&mut self, relay: &str, at: OffsetDateTime, n: u64) {
        let res = self.res;
        self.relay_mut(relay, at)
            .attempts
            .add(res, at.unix_timestamp(), n);
    }

    /// The groups `filter` selects, most frequent within the window first.
    pub fn views(
        &self,
        filter: &GroupFilter,
        default_window: Duration,
        now: OffsetDateTime,
    ) -> Vec<GroupView> {
        let window = filter.window.unwrap_or(default_window);
        let secs = now.unix_timestamp();
        let mut views: Vec<GroupView> = self
            .groups
            .values()
            .filter(|g| filter.relay.as_ref().is_none_or(|r| *r == g.fp.relay))
            .filter_map(|g| {
                let window_count = g.recent.count(self.res, secs, window);
                if filter.window.is_some() && window_count == 0 {
                    return None;
                }
                Some(GroupView {
                    id: g.fp.id.clone(),
                    relay: g.fp.relay.clone(),
                    class: g.fp.class,
                    smtp_code: g.fp.smtp_code,
                    enhanced_code: g.fp.enhanced_code.clone(),
                    text: g.fp.text.clone(),
                    count: g.count,
                    window_count,
                    first_seen: g.first_seen,
                    last_seen: g.last_seen,
                    sample_message_id: g.sample_message_id.clone(),
                    sample_response: g.sample_response.clone(),
                })
            })
            .collect();
        views.sort_by(|a, b| {
            b.window_count
                .cmp(&a.window_count)
                .then(b.last_seen.cmp(&a.last_seen))
                .then(a.id.cmp(&b.id))
        });
        views
    }

    /// How many groups are held.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether no failure has been recorded (or all were evicted).
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// How many groups were forgotten to stay within the bound.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Forgets window counts older than the history (group totals stay).
    pub(crate) fn prune(&mut self, now: OffsetDateTime) {
        let secs = now.unix_timestamp();
        for g in self.groups.values_mut() {
            g.recent.prune(self.res, secs);
        }
        for r in self.relays.values_mut() {
            r.attempts.prune(self.res, secs);
            r.transient.prune(self.res, secs);
            r.permanent.prune(self.res, secs);
        }
        self.relays.retain(|_, r| {
            !(r.attempts.is_empty() && r.transient.is_empty() && r.permanent.is_empty())
        });
    }

    /// Every group.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// The relays with counts.
    pub(crate) fn relay_names(&self) -> impl Iterator<Item = &str> {
        self.relays.keys().map(String::as_str)
    }

    /// A group's failures within `window` before `now`.
    pub(crate) fn group_count(&self, group: &Group, window: Duration, now: OffsetDateTime) -> u64 {
        group.recent.count(self.res, now.unix_timestamp(), window)
    }

    /// A relay's failures (of `class`, or all) within `window`.
    pub(crate) fn relay_failures(
        &self,
        relay: &str,
        class: Option<FailureClass>,
        window: Duration,
        now: OffsetDateTime,
    ) -> u64 {
        let Some(r) = self.relays.get(relay) else {
            return 0;
        };
        let secs = now.unix_timestamp();
        let transient = || r.transient.count(self.res, secs, window);
        let permanent = || r.permanent.count(self.res, secs, window);
        match class {
            Some(FailureClass::Transient) => transient(),
            Some(FailureClass::Permanent) => permanent(),
            None => transient().saturating_add(permanent()),
        }
    }

    /// A relay's attempts within `window`.
    pub(crate) fn relay_attempts(&self, relay: &str, window: Duration, now: OffsetDateTime) -> u64 {
        self.relays.get(relay).map_or(0, |r| {
            r.attempts.count(self.res, now.unix_timestamp(), window)
        })
    }

    fn relay_mut(&mut self, relay: &str, at: OffsetDateTime) -> &mut RelayStats {
        if !self.relays.contains_key(relay) && self.relays.len() >= MAX_RELAYS {
            let oldest = self
                .relays
                .iter()
                .min_by(|a, b| a.1.last_seen.cmp(&b.1.last_seen).then(a.0.cmp(b.0)))
                .map(|(name, _)| name.clone());
            if let Some(name) = oldest {
                self.relays.remove(&name);
            }
        }
        let stats = self
            .relays
            .entry(relay.to_owned())
            .or_insert_with(|| RelayStats::new(at));
        stats.last_seen = stats.last_seen.max(at);
        stats
    }

    /// Forgets the groups seen least recently: one in 64 of the bound at a
    /// time (at least one), so that a storm of new errors costs one scan
    /// per batch rather than per failure, under the lock.
    fn evict_oldest(&mut self) {
        let batch = (self.max_groups / EVICTION_BATCH_DIVISOR).max(1);
        let mut ages: Vec<(OffsetDateTime, &String)> = self
            .groups
            .iter()
            .map(|(id, g)| (g.last_seen, id))
            .collect();
        if ages.len() > batch {
            ages.select_nth_unstable(batch - 1);
            ages.truncate(batch);
        }
        let doomed: Vec<String> = ages.into_iter().map(|(_, id)| id.clone()).collect();
        for id in doomed {
            self.groups.remove(&id);
            self.evicted = self.evicted.saturating_add(1);
        }
    }
}

fn truncate(mut s: String, max_chars: usize) -> String {
    if let Some((cut, _)) = s.char_indices().nth(max_chars) {
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + secs)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn sample(relay: &str, code: u16, response: &str, id: &str, secs: i64) -> FailureSample {
        FailureSample {
            relay: relay.to_owned(),
            class: if code >= 500 {
                FailureClass::Permanent
            } else {
                FailureClass::Transient
            },
            smtp_code: Some(code),
            enhanced_code: Some(format!("{}.1.1", code / 100)),
            response: response.to_owned(),
            message_id: id.to_owned(),
            at: at(secs),
        }
    }

    #[test]
    fn identical_failures_for_different_recipients_are_one_group() {
        let mut g = ErrorGroups::new(100, 5 * MIN);
        let a = g.record_failure(sample(
            "primary",
            550,
            "<ann@example.com>: user unknown",
            "m1",
            0,
        ));
        let b = g.record_failure(sample(
            "primary",
            550,
            "<bob@example.org>: User unknown",
            "m2",
            10,
        ));
        let c = g.record_failure(sample(
            "primary",
            550,
            "<cy@example.net>: user  unknown",
            "m3",
            5,
        ));
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(g.len(), 1);
        let views = g.views(&GroupFilter::default(), 5 * MIN, at(20));
        assert_eq!(views.len(), 1);
        let v = &views[0];
        assert_eq!(v.id, a);
        assert_eq!(v.text, "<addr>: user unknown");
        assert_eq!((v.count, v.window_count), (3, 3));
        assert_eq!((v.first_seen, v.last_seen), (at(0), at(10)));
        // The sample is the latest failure, not the last one recorded.
        assert_eq!(v.sample_message_id, "m2");
        assert_eq!(v.sample_response, "<bob@example.org>: User unknown");
        assert_eq!(v.class, FailureClass::Permanent);
        assert_eq!(v.enhanced_code.as_deref(), Some("5.1.1"));
    }

    #[test]
    fn different_codes_or_relays_are_different_groups() {
        let mut g = ErrorGroups::new(100, 5 * MIN);
        g.record_failure(sample("primary", 550, "user unknown", "m1", 0));
        g.record_failure(sample("primary", 450, "user unknown", "m2", 0));
        g.record_failure(sample("backup", 550, "user unknown", "m3", 0));
        assert_eq!(g.len(), 3);
        let only_backup = GroupFilter {
            relay: Some("backup".to_owned()),
            ..GroupFilter::default()
        };
        let views = g.views(&only_backup, 5 * MIN, at(1));
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].relay, "backup");
    }

    #[test]
    fn window_filter_and_order() {
        let mut g = ErrorGroups::new(100, 60 * MIN);
        for i in 0..3 {
            g.record_failure(sample("primary", 451, "greylisted", "a", i));
        }
        for i in 0..5 {
            g.record_failure(sample("primary", 421, "too busy", "b", 600 + i));
        }
        g.record_failure(sample("primary", 550, "rejected", "c", 1000));
        let now = at(1000);
        let all = g.views(&GroupFilter::default(), 5 * MIN, now);
        let texts: Vec<_> = all
            .iter()
            .map(|v| (v.text.as_str(), v.count, v.window_count))
            .collect();
        // Default window 5 min: only "rejected" is recent; then by last seen.
        assert_eq!(
            texts,
            [("rejected", 1, 1), ("too busy", 5, 0), ("greylisted", 3, 0)]
        );
        let last_30m = GroupFilter {
            window: Some(30 * MIN),
            relay: None,
        };
        let recent: Vec<_> = g
            .views(&last_30m, 5 * MIN, now)
            .into_iter()
            .map(|v| (v.text, v.window_count))
            .collect();
        // Within 30 min all three count, most frequent first.
        assert_eq!(
            recent,
            [
                ("too busy".to_owned(), 5),
                ("greylisted".to_owned(), 3),
                ("rejected".to_owned(), 1)
            ]
        );
        let last_10m = GroupFilter {
            window: Some(10 * MIN),
            relay: None,
        };
        let recent: Vec<_> = g
            .views(&last_10m, 5 * MIN, now)
            .into_iter()
            .map(|v| (v.text, v.window_count))
            .collect();
        assert_eq!(
            recent,
            [("too busy".to_owned(), 5), ("rejected".to_owned(), 1)]
        );
    }

    #[test]
    fn the_group_seen_least_recently_is_evicted() {
        let mut g = ErrorGroups::new(3, 5 * MIN);
        g.record_failure(sample("r", 550, "one", "m", 10));
        g.record_failure(sample("r", 550, "two", "m", 0));
        g.record_failure(sample("r", 550, "three", "m", 20));
        g.record_failure(sample("r", 550, "two", "m", 30)); // "two" is fresh again
        g.record_failure(sample("r", 550, "four", "m", 40));
        assert_eq!(g.len(), 3);
        assert_eq!(g.evicted(), 1);
        let mut texts: Vec<_> = g.iter().map(|x| x.fp.text.clone()).collect();
        texts.sort();
        assert_eq!(texts, ["four", "three", "two"]);
    }

    #[test]
    fn a_full_table_evicts_a_batch_of_the_oldest() {
        let mut g = ErrorGroups::new(128, 5 * MIN);
        let word = |i: i64| {
            char::from(b'a' + u8::try_from(i % 26).unwrap_or(0)).to_string()
                + &char::from(b'a' + u8::try_from(i / 26).unwrap_or(0)).to_string()
        };
        for i in 0..128 {
            g.record_failure(sample("r", 550, &word(i), "m", i));
        }
        assert_eq!((g.len(), g.evicted()), (128, 0));
        g.record_failure(sample("r", 550, "new", "m", 200));
        // 128 / 64 = 2 evicted: the two oldest.
        assert_eq!((g.len(), g.evicted()), (127, 2));
        let mut texts: Vec<_> = g.iter().map(|x| x.fp.text.clone()).collect();
        texts.sort();
        assert!(!texts.contains(&word(0)) && !texts.contains(&word(1)));
        assert!(texts.contains(&word(2)) && texts.contains(&"new".to_owned()));
    }

    #[test]
    fn relay_counts_by_class_and_attempts() {
        let mut g = ErrorGroups::new(100, 5 * MIN);
        for i in 0..10 {
            g.record_attempt("primary", at(i));
        }
        g.record_failure(sample("primary", 451, "later", "m", 1));
        g.record_failure(sample("primary", 451, "later", "m", 2));
        g.record_failure(sample("primary", 550, "never", "m", 3));
        let now = at(9);
        assert_eq!(g.relay_attempts("primary", 5 * MIN, now), 10);
        assert_eq!(g.relay_failures("primary", None, 5 * MIN, now), 3);
        assert_eq!(
            g.relay_failures("primary", Some(FailureClass::Transient), 5 * MIN, now),
            2
        );
        assert_eq!(
            g.relay_failures("primary", Some(FailureClass::Permanent), 5 * MIN, now),
            1
        );
        assert_eq!(
            g.relay_failures("primary", None, Duration::from_secs(7), now),
            1
        );
        assert_eq!(g.relay_failures("backup", None, 5 * MIN, now), 0);
        g.prune(at(1000));
        assert_eq!(g.relay_names().count(), 0);
        // Totals survive pruning.
        let views = g.views(&GroupFilter::default(), 5 * MIN, at(1000));
        let counts: Vec<_> = views.iter().map(|v| (v.text.as_str(), v.count)).collect();
        assert_eq!(counts, [("never", 1), ("later", 2)]);
    }

    #[test]
    fn long_samples_are_cut() {
        let mut g = ErrorGroups::new(10, MIN);
        let long = "é".repeat(5000);
        g.record_failure(sample("r", 550, &long, "m", 0));
        let v = &g.views(&GroupFilter::default(), MIN, at(0))[0];
        assert_eq!(v.sample_response.chars().count(), MAX_SAMPLE_CHARS);
    }
}
