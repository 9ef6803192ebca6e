//! The rules engine over fake time: exact event tables.

use super::*;
use crate::groups::FailureSample;

const MIN: Duration = Duration::from_secs(60);

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000 + secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn fail(groups: &mut ErrorGroups, relay: &str, code: u16, secs: i64) {
    groups.record_failure(FailureSample {
        relay: relay.to_owned(),
        class: if code >= 500 {
            FailureClass::Permanent
        } else {
            FailureClass::Transient
        },
        smtp_code: Some(code),
        enhanced_code: None,
        response: format!("error for message {secs}"),
        message_id: format!("m{secs}"),
        at: at(secs),
    });
}

fn tier(name: &str, threshold: Threshold, channels: &[&str]) -> Tier {
    Tier {
        name: name.to_owned(),
        threshold,
        channels: channels.iter().map(|c| (*c).to_owned()).collect(),
    }
}

/// 10 in 5 min → chat; 30 in 5 min → page; cooldown 30 min; resolve after
/// 10 quiet minutes.
fn relay_rule() -> AlertRule {
    AlertRule {
        name: "relay-failing".to_owned(),
        scope: RuleScope::Relay,
        relay: None,
        class: None,
        window: 5 * MIN,
        min_attempts: 20,
        tiers: vec![
            tier("chat", Threshold::Count(10), &["ops-chat"]),
            tier("page", Threshold::Count(30), &["oncall", "ops-chat"]),
        ],
        cooldown: 30 * MIN,
        resolve_after: 10 * MIN,
    }
}

/// `(kind, tier, key, count)` of each event.
fn summary(events: &[AlertEvent]) -> Vec<(AlertKind, String, String, u64)> {
    events
        .iter()
        .map(|e| (e.kind, e.tier.clone(), e.key.clone(), e.count))
        .collect()
}

fn fire(tier: &str, key: &str, count: u64) -> (AlertKind, String, String, u64) {
    (AlertKind::Fire, tier.to_owned(), key.to_owned(), count)
}

fn resolve(tier: &str, key: &str, count: u64) -> (AlertKind, String, String, u64) {
    (AlertKind::Resolve, tier.to_owned(), key.to_owned(), count)
}

#[test]
fn each_tier_fires_once_per_incident_then_one_resolve() {
    let mut groups = ErrorGroups::new(100, 5 * MIN);
    let mut engine = RuleEngine::new(vec![relay_rule()]);
    for t in 0..9 {
        fail(&mut groups, "primary", 451, t);
    }
    assert_eq!(summary(&engine.evaluate(&groups, at(9))), []);
    fail(&mut groups, "primary", 451, 10);
    let events = engine.evaluate(&groups, at(10));
    assert_eq!(summary(&events), [fire("chat", "primary", 10)]);
    let e = &events[0];
    assert_eq!(e.channels, ["ops-chat"]);
    assert_eq!((e.started_at, e.at, e.window), (at(10), at(10), 5 * MIN));
    assert_eq!(e.relay, "primary");
    assert_eq!(e.attempts, None);
    let sample = e
        .sample
        .as_ref()
        .map(|s| (s.smtp_code, s.text.as_str(), s.message_id.as_str()));
    assert_eq!(sample, Some((Some(451), "error for message <n>", "m10")));
    assert_eq!(engine.open_incidents(), 1);

    // Still over the first threshold: nothing more.
    for t in 11..30 {
        fail(&mut groups, "primary", 451, t);
        assert_eq!(summary(&engine.evaluate(&groups, at(t))), [], "t={t}");
    }
    // The 30th failure crosses the second tier: it fires, once.
    fail(&mut groups, "primary", 451, 100);
    assert_eq!(
        summary(&engine.evaluate(&groups, at(100))),
        [fire("page", "primary", 30)]
    );
    for t in [101, 200, 300] {
        assert_eq!(summary(&engine.evaluate(&groups, at(t))), [], "t={t}");
    }
    // Everything leaves the window after t=400; quiet from the first
    // evaluation that sees it, resolved 10 minutes later, once.
    assert_eq!(summary(&engine.evaluate(&groups, at(401))), []);
    assert_eq!(summary(&engine.evaluate(&groups, at(1000))), []);
    let events = engine.evaluate(&groups, at(1001));
    assert_eq!(summary(&events), [resolve("page", "primary", 0)]);
    assert_eq!(events[0].channels, ["ops-chat", "oncall"]);
    assert_eq!(events[0].started_at, at(10));
    assert_eq!(engine.open_incidents(), 0);
    assert_eq!(summary(&engine.evaluate(&groups, at(1002))), []);
}

#[test]
fn cooldown_suppresses_a_new_incident_and_fires_when_it_ends() {
    let mut groups = ErrorGroups::new(100, 5 * MIN);
    let mut rule = relay_rule();
    rule.resolve_after = Duration::ZERO;
    let mut engine = RuleEngine::new(vec![rule]);
    for t in 0..10 {
        fail(&mut groups, "primary", 451, t);
    }
    assert_eq!(
        summary(&engine.evaluate(&groups, at(9))),
        [fire("chat", "primary", 10)]
    );
    // Quiet: resolved at once (resolve_after = 0).
    assert_eq!(
        summary(&engine.evaluate(&groups, at(400))),
        [resolve("chat", "primary", 0)]
    );
    // Failing again 10 minutes after the alert: within the cooldown, silent.
    for t in 600..610 {
        fail(&mut groups, "primary", 451, t);
    }
    assert_eq!(summary(&engine.evaluate(&groups, at(610))), []);
    assert_eq!(engine.open_incidents(), 1);
    // A quiet spell ends the suppressed incident without a resolve.
    assert_eq!(summary(&engine.evaluate(&groups, at(1000))), []);
    assert_eq!(engine.open_incidents(), 0);
    // Failing again still within the cooldown (it ends at 9 + 1800).
    for t in 1700..1710 {
        fail(&mut groups, "primary", 451, t);
    }
    assert_eq!(summary(&engine.evaluate(&groups, at(1800))), []);
    // The cooldown is over and the incident is still on: it fires.
    assert_eq!(
        summary(&engine.evaluate(&groups, at(1809))),
        [fire("chat", "primary", 10)]
    );
    assert_eq!(summary(&engine.evaluate(&groups, at(1810))), []);
}

#[test]
fn a_jump_fires_every_tier_it_crosses_in_order() {
    let mut groups = ErrorGroups::new(100, 5 * MIN);
    let mut engine = RuleEngine::new(vec![relay_rule()]);
    for t in 0..40 {
        fail(&mut groups, "primary", 421, t);
    }
    let events = engine.evaluate(&groups, at(40));
    assert_eq!(
        summary(&events),
        [fire("chat", "primary", 40), fire("page", "primary", 40)]
    );
    assert_eq!(events[1].channels, ["oncall", "ops-chat"]);
    assert_eq!(events[1].tier_index, 1);
}

#[test]
fn dipping_below_and_back_is_one_incident() {
    let mut groups = ErrorGroups::new(100, 5 * MIN);
    let mut engine = RuleEngine::new(vec![relay_rule()]);
    for t in 0..10 {
        fail(&mut groups, "primary", 451, t);
    }
    assert_eq!(
        summary(&engine.evaluate(&groups, at(10))),
        [fire("chat", "primary", 10)]
    );
    // Below the threshold for five minutes: not yet resolved.
    for t in 301..305 {
        fail(&mut groups, "primary", 451, t);
    }
    assert_eq!(summary(&engine.evaluate(&groups, at(305))), []);
    assert_eq!(summary(&engine.evaluate(&groups, at(600))), []);
    // Back over it: the same incident, no new alert.
    for t in 600..610 {
        fail(&mut groups, "primary", 451, t);
    }
    assert_eq!(summary(&engine.evaluate(&groups, at(610))), []);
    // The quiet spell restarts from the next dip.
    assert_eq!(summary(&engine.evaluate(&groups, at(1000))), []);
    assert_eq!(summary(&engine.evaluate(&groups, at(1599))), []);
    assert_eq!(
        summary(&engine.evaluate(&groups, at(1600))),
        [resolve("chat", "primary", 0)]
    );
}

#[test]
fn rate_tiers_need_enough_attempts() {
    let mut groups = ErrorGroups::new(100, 5 * MIN);
    let mut rule = relay_rule();
    rule.min_attempts = 4;
    rule.tiers = vec![tier("half", Threshold::Rate(0.5), &["ops-chat"])];
    let mut engine = RuleEngine::new(vec![rule]);
    // 3 of 3 failed: 100 %, but too few attempts.
    for t in 0..3 {
        groups.record_attempt("primary", at(t));
        fail(&mut groups, "primary", 451, t);
    }
    assert_eq!(summary(&engine.evaluate(&groups, at(3))), []);
    // 3 of 7 failed: 43 %.
    for t in 3..7 {
        groups.record_attempt("primary", at(t));
    }
    assert_eq!(summary(&engine.evaluate(&groups, at(7))), []);
    // 4 of 8: 50 %.
    groups.record_attempt("primary", at(8));
    fail(&mut groups, "primary", 451, 8);
    let events = engine.evaluate(&groups, at(8));
    assert_eq!(summary(&events), [fire("half", "primary", 4)]);
    assert_eq!(events[0].attempts, Some(8));
    assert_eq!(events[0].threshold, Threshold::Rate(0.5));
}

#[test]
fn group_scope_keys_each_group_and_filters_by_relay_and_class() {
    let mut groups = ErrorGroups::new(100, 5 * MIN);
    let rule = AlertRule {
        name: "bounces".to_owned(),
        scope: RuleScope::Group,
        relay: Some("primary".to_owned()),
        class: Some(FailureClass::Permanent),
        window: 5 * MIN,
        min_attempts: 1,
        tiers: vec![tier("chat", Threshold::Count(3), &["ops-chat"])],
        cooldown: 30 * MIN,
        resolve_after: MIN,
    };
    let mut engine = RuleEngine::new(vec![rule]);
    for t in 0..3 {
        fail(&mut groups, "primary", 550, t); // counted
        fail(&mut groups, "primary", 554, t); // counted, another group
        fail(&mut groups, "primary", 451, t); // transient: not counted
        fail(&mut groups, "backup", 550, t); // another relay: not counted
    }
    let events = engine.evaluate(&groups, at(3));
    let mut codes: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.sample.as_ref().and_then(|s| s.smtp_code), e.count))
        .collect();
    codes.sort_by_key(|c| c.1);
    assert_eq!(
        codes,
        [
            (AlertKind::Fire, Some(550), 3),
            (AlertKind::Fire, Some(554), 3)
        ]
    );
    for e in &events {
        assert_eq!(e.scope, RuleScope::Group);
        assert_eq!(
            Some(e.key.as_str()),
            e.sample.as_ref().map(|s| s.group_id.as_str())
        );
        assert_eq!(e.relay, "primary");
    }
    // Keys come in order.
    assert!(events[0].key < events[1].key);
}

#[test]
fn an_evicted_group_resolves() {
    let mut groups = ErrorGroups::new(1, 5 * MIN);
    let mut rule = relay_rule();
    rule.scope = RuleScope::Group;
    rule.resolve_after = Duration::ZERO;
    rule.tiers = vec![tier("chat", Threshold::Count(2), &["ops-chat"])];
    let mut engine = RuleEngine::new(vec![rule]);
    fail(&mut groups, "primary", 550, 0);
    fail(&mut groups, "primary", 550, 1);
    let fired = engine.evaluate(&groups, at(1));
    assert_eq!(fired.len(), 1);
    // Another error pushes the group out of the bounded table.
    fail(&mut groups, "primary", 421, 2);
    let events = engine.evaluate(&groups, at(2));
    assert_eq!(summary(&events), [resolve("chat", &fired[0].key, 0)]);
    // The last known sample is kept.
    assert_eq!(events[0].sample, fired[0].sample);
}

#[test]
fn relay_scope_samples_the_relays_most_frequent_group() {
    let mut groups = ErrorGroups::new(100, 5 * MIN);
    let mut rule = relay_rule();
    rule.tiers = vec![tier("chat", Threshold::Count(5), &["ops-chat"])];
    let mut engine = RuleEngine::new(vec![rule]);
    for t in 0..2 {
        fail(&mut groups, "primary", 550, t);
    }
    for t in 0..3 {
        fail(&mut groups, "primary", 421, t);
    }
    let events = engine.evaluate(&groups, at(3));
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].sample.as_ref().and_then(|s| s.smtp_code),
        Some(421)
    );
}

#[test]
fn state_is_forgotten_after_the_cooldown() {
    let mut groups = ErrorGroups::new(100, 5 * MIN);
    let mut rule = relay_rule();
    rule.resolve_after = Duration::ZERO;
    let mut engine = RuleEngine::new(vec![rule]);
    for t in 0..10 {
        fail(&mut groups, "primary", 451, t);
    }
    assert_eq!(engine.evaluate(&groups, at(10)).len(), 1);
    assert_eq!(engine.evaluate(&groups, at(400)).len(), 1);
    assert_eq!(engine.states.len(), 1);
    engine.evaluate(&groups, at(10 + 30 * 60));
    assert!(engine.states.is_empty());
}

#[test]
fn replacing_rules_keeps_the_incidents_of_unchanged_rules_only() {
    let mut groups = ErrorGroups::new(100, 5 * MIN);
    let mut other = relay_rule();
    other.name = "other".to_owned();
    let mut engine = RuleEngine::new(vec![other.clone(), relay_rule()]);
    for t in 0..10 {
        fail(&mut groups, "primary", 451, t);
    }
    // Both rules open an incident for the relay.
    assert_eq!(engine.evaluate(&groups, at(10)).len(), 2);
    assert_eq!(engine.open_incidents(), 2);
    // `relay-failing` moves to the front unchanged; `other` gets a new
    // threshold: its incident is dropped, the unchanged one's kept.
    let mut changed = other;
    changed.tiers = vec![tier("chat", Threshold::Count(5), &["ops-chat"])];
    assert_eq!(engine.replace_rules(vec![relay_rule(), changed]), 1);
    assert_eq!(engine.open_incidents(), 1);
    // The kept incident does not fire its tier again (it already did);
    // the changed rule fires anew.
    fail(&mut groups, "primary", 451, 11);
    let events = engine.evaluate(&groups, at(11));
    assert_eq!(
        events.iter().map(|e| e.rule.as_str()).collect::<Vec<_>>(),
        ["other"]
    );
    assert_eq!(engine.rules().len(), 2);
}
