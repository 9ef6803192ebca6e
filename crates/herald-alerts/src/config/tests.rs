//! `[alerts]` parsing and validation: the documented example, every
//! default, and errors that name the field without quoting secrets.

use super::*;

const MIN: Duration = Duration::from_secs(60);

fn env(name: &str) -> Option<String> {
    match name {
        "WECOM_URL" => {
            Some("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wecom-token".to_owned())
        }
        "DINGTALK_SECRET" => Some("SECdingtalk".to_owned()),
        "EMPTY" => Some("  ".to_owned()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<AlertsConfig, AlertsConfigError> {
    AlertsConfig::from_toml_str(text, &env)
}

fn error(text: &str) -> (String, String) {
    match parse(text) {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(e) => (e.field, e.message),
    }
}

const EXAMPLE: &str = r#"
[server]
http_listen = "127.0.0.1:8080"

[alerts]
window = "5m"

[[alerts.channels]]
name = "ops-chat"
kind = "wecom"
url_env = "WECOM_URL"

[[alerts.channels]]
name = "oncall"
kind = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=dt-token"
secret_env = "DINGTALK_SECRET"

[[alerts.rules]]
name = "relay-failing"
scope = "relay"
window = "5m"
cooldown = "30m"
resolve_after = "10m"
tiers = [
  { min_count = 10, channels = ["ops-chat"] },
  { name = "page", min_count = 30, channels = ["oncall", "ops-chat"] },
]

[[alerts.rules]]
name = "bounce-rate"
scope = "relay"
relay = "primary"
class = "permanent"
window = "15m"
min_attempts = 50
tiers = [{ min_rate = 0.2, channels = ["ops-chat"] }]
"#;

#[test]
fn the_documented_example() {
    let config = parse(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.window, 5 * MIN);
    // The history covers the longest window and the default hour.
    assert_eq!(config.history, 60 * MIN);
    assert_eq!(config.channels.len(), 2);
    let wecom = &config.channels[0];
    assert_eq!(
        (wecom.name.as_str(), wecom.kind),
        ("ops-chat", ChannelKind::WeCom)
    );
    assert!(wecom.url.ends_with("key=wecom-token"));
    assert_eq!(wecom.secret, None);
    let ding = &config.channels[1];
    assert_eq!(ding.kind, ChannelKind::DingTalk);
    assert_eq!(ding.secret.as_deref(), Some("SECdingtalk"));

    let rule = &config.rules[0];
    assert_eq!(rule.name, "relay-failing");
    assert_eq!(rule.scope, RuleScope::Relay);
    assert_eq!(
        (rule.window, rule.cooldown, rule.resolve_after),
        (5 * MIN, 30 * MIN, 10 * MIN)
    );
    assert_eq!(rule.min_attempts, 20);
    let tiers: Vec<_> = rule
        .tiers
        .iter()
        .map(|t| (t.name.as_str(), t.threshold, t.channels.join(",")))
        .collect();
    assert_eq!(
        tiers,
        [
            ("tier-1", Threshold::Count(10), "ops-chat".to_owned()),
            ("page", Threshold::Count(30), "oncall,ops-chat".to_owned()),
        ]
    );
    let rate = &config.rules[1];
    assert_eq!(rate.relay.as_deref(), Some("primary"));
    assert_eq!(rate.class, Some(FailureClass::Permanent));
    assert_eq!(rate.min_attempts, 50);
    assert_eq!(rate.tiers[0].threshold, Threshold::Rate(0.2));
    assert!(config.check_relays(&["primary", "backup"]).is_ok());
    let e = config.check_relays(&["backup"]).err();
    assert_eq!(e.map(|e| e.field), Some("alerts.rules[1].relay".to_owned()));
}

#[test]
fn defaults_without_a_section() {
    let config = parse("").unwrap_or_else(|e| panic!("{e}"));
    let default = AlertsConfig::default();
    for c in [&config, &default] {
        assert_eq!(c.window, 5 * MIN);
        assert_eq!(c.evaluate_every, Duration::from_secs(10));
        assert_eq!(c.history, 60 * MIN);
        assert_eq!(c.max_groups, 1000);
        assert_eq!(c.queue_capacity, 100);
        assert_eq!(
            c.send,
            SendPolicy {
                attempts: 3,
                backoff: Duration::from_secs(1),
                timeout: Duration::from_secs(10),
            }
        );
        assert!(c.channels.is_empty() && c.rules.is_empty());
    }
}

#[test]
fn long_windows_extend_the_history() {
    let config = parse(
        r#"
[alerts]
history = "10m"
[[alerts.channels]]
name = "c"
kind = "slack"
url = "https://hooks.slack.com/services/T/B/X"
[[alerts.rules]]
name = "slow-burn"
scope = "group"
window = "2h"
tiers = [{ min_count = 100, channels = ["c"] }]
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.history, 120 * MIN);
}

#[test]
fn backoff_doubles() {
    let policy = SendPolicy {
        attempts: 3,
        backoff: Duration::from_secs(1),
        timeout: Duration::from_secs(10),
    };
    let delays: Vec<_> = (1..=4).map(|a| policy.delay(a).as_secs()).collect();
    assert_eq!(delays, [1, 2, 4, 8]);
    assert_eq!(policy.delay(0), Duration::from_secs(1));
    assert_eq!(policy.delay(13), SendPolicy::MAX_DELAY);
    assert_eq!(policy.delay(200), SendPolicy::MAX_DELAY);
}

#[test]
fn errors_name_the_field() {
    let channel = "[[alerts.channels]]\nname = \"c\"\nkind = \"slack\"\nurl = \"https://hooks.slack.com/x\"\n";
    let rule = |tiers: &str| {
        format!("{channel}[[alerts.rules]]\nname = \"r\"\nscope = \"relay\"\ntiers = [{tiers}]\n")
    };
    let cases: Vec<(String, &str, &str)> = vec![
        ("[alerts]\nwindow = \"0s\"".into(), "alerts.window", "at least 1s"),
        ("[alerts]\nmax_groups = 0".into(), "alerts.max_groups", "at least 1"),
        ("[alerts]\nsend_attempts = 0".into(), "alerts.send_attempts", "between 1 and 10"),
        ("[alerts]\nbogus = 1".into(), "alerts", "unknown field `bogus`"),
        (
            "[[alerts.channels]]\nname = \"c\"\nkind = \"teams\"\nurl = \"https://x\"".into(),
            "alerts.channels[0].kind",
            "unknown channel kind \"teams\"",
        ),
        (
            "[[alerts.channels]]\nname = \"c\"\nkind = \"slack\"".into(),
            "alerts.channels[0].url",
            "required (or url_env)",
        ),
        (
            "[[alerts.channels]]\nname = \"c\"\nkind = \"slack\"\nurl_env = \"MISSING\"".into(),
            "alerts.channels[0].url_env",
            "environment variable MISSING is not set or empty",
        ),
        (
            "[[alerts.channels]]\nname = \"c\"\nkind = \"slack\"\nurl_env = \"EMPTY\"".into(),
            "alerts.channels[0].url_env",
            "not set or empty",
        ),
        (
            "[[alerts.channels]]\nname = \"c\"\nkind = \"webhook\"\nurl = \"x\"\nurl_env = \"WECOM_URL\"".into(),
            "alerts.channels[0].url",
            "give url or url_env, not both",
        ),
        (
            "[[alerts.channels]]\nname = \"c\"\nkind = \"webhook\"\nurl = \"ftp://secret-token@host\"".into(),
            "alerts.channels[0].url",
            "not an http:// or https:// URL (value not shown)",
        ),
        (
            "[[alerts.channels]]\nname = \"c\"\nkind = \"wecom\"\nurl = \"https://x\"\nsecret = \"s\"".into(),
            "alerts.channels[0].secret",
            "wecom webhooks are not signed",
        ),
        (
            format!("{channel}{channel}"),
            "alerts.channels[1].name",
            "\"c\" is used twice",
        ),
        (
            "[[alerts.channels]]\nname = \"ops chat\"\nkind = \"slack\"\nurl = \"https://x\"".into(),
            "alerts.channels[0].name",
            "is not a name",
        ),
        (
            format!("{channel}[[alerts.rules]]\nname = \"r\"\nscope = \"host\"\ntiers = []"),
            "alerts.rules[0].scope",
            "unknown scope \"host\" (group, relay)",
        ),
        (
            format!("{channel}[[alerts.rules]]\nname = \"r\"\nscope = \"relay\"\nclass = \"soft\"\ntiers = []"),
            "alerts.rules[0].class",
            "unknown failure class \"soft\"",
        ),
        (
            format!("{channel}[[alerts.rules]]\nname = \"r\"\nscope = \"relay\"\ntiers = []"),
            "alerts.rules[0].tiers",
            "at least one tier",
        ),
        (rule("{ min_count = 0, channels = [\"c\"] }"), "alerts.rules[0].tiers[0].min_count", "at least 1"),
        (rule("{ min_rate = 1.5, channels = [\"c\"] }"), "alerts.rules[0].tiers[0].min_rate", "fraction"),
        (rule("{ channels = [\"c\"] }"), "alerts.rules[0].tiers[0]", "exactly one of min_count and min_rate"),
        (
            rule("{ min_count = 1, min_rate = 0.5, channels = [\"c\"] }"),
            "alerts.rules[0].tiers[0]",
            "exactly one",
        ),
        (rule("{ min_count = 1 }"), "alerts.rules[0].tiers[0].channels", "at least one channel"),
        (
            rule("{ min_count = 1, channels = [\"c\", \"pager\"] }"),
            "alerts.rules[0].tiers[0].channels[1]",
            "no channel is named \"pager\"",
        ),
        (
            rule("{ name = \"x\", min_count = 1, channels = [\"c\"] }, { name = \"x\", min_count = 2, channels = [\"c\"] }"),
            "alerts.rules[0].tiers[1].name",
            "used twice",
        ),
        (
            format!("{}[[alerts.rules]]\nname = \"r\"\nscope = \"relay\"\ntiers = [{{ min_count = 1, channels = [\"c\"] }}]\n", rule("{ min_count = 1, channels = [\"c\"] }")),
            "alerts.rules[1].name",
            "\"r\" is used twice",
        ),
    ];
    for (text, want_field, want_message) in cases {
        let (field, message) = error(&text);
        assert_eq!(field, want_field, "{text}");
        assert!(message.contains(want_message), "{text}\n→ {message}");
    }
}

#[test]
fn secrets_stay_out_of_debug_and_errors() {
    let config = parse(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    let debug = format!("{config:?}");
    for secret in ["wecom-token", "dt-token", "SECdingtalk"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    assert!(debug.contains("https://qyapi.weixin.qq.com/***"), "{debug}");
    let with_userinfo = ChannelConfig {
        name: "c".to_owned(),
        kind: ChannelKind::Webhook,
        url: "https://user:pw@hooks.example.com/x?token=t".to_owned(),
        secret: None,
    };
    let debug = format!("{with_userinfo:?}");
    assert!(debug.contains("https://hooks.example.com/***"), "{debug}");
    assert!(!debug.contains("pw") && !debug.contains("user"), "{debug}");
    let (_, message) =
        error("[[alerts.channels]]\nname = \"c\"\nkind = \"webhook\"\nurl = \"htp://tok3n\"");
    assert!(!message.contains("tok3n"), "{message}");
}

/// The complete examples in docs/alerting.md (blocks starting with
/// `[alerts]`) are valid.
#[test]
fn the_examples_in_the_docs_parse() {
    let doc = include_str!("../../../../docs/alerting.md");
    let env = |name: &str| {
        Some(if name.ends_with("_URL") {
            "https://example.invalid/hook?token=t".to_owned()
        } else {
            "secret".to_owned()
        })
    };
    let mut parsed = 0;
    for block in doc.split("```toml\n").skip(1) {
        let block = block.split("```").next().unwrap_or_default();
        if block.starts_with("[alerts]") {
            AlertsConfig::from_toml_str(block, &env).unwrap_or_else(|e| panic!("{e}\n{block}"));
            parsed += 1;
        }
    }
    assert_eq!(parsed, 2);
}
