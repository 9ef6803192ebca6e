//! Alerting end to end over real sockets, through the public API only: a
//! local webhook receiver gets exactly one alert per tier and one resolve
//! in each channel's format, signatures check out, failing receivers are
//! retried, and a receiver that never answers blocks nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Fake times start from the real one (signatures carry it); the evaluator
// and senders run on the system clock.
#![allow(clippy::disallowed_methods)]

#[path = "alert_channels/support.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use herald_alerts::{
    AlertKind, Alerting, AlertsConfig, ChannelStats, FailureClass, FailureSample, GroupFilter,
};
use herald_policy::SystemClock;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use support::{Receiver, hex, hmac_sha256, percent_decode};

fn no_env(_: &str) -> Option<String> {
    None
}

/// Whole seconds, so that fake times fall on bucket edges.
fn base_time() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
}

fn secs(base: OffsetDateTime, s: i64) -> OffsetDateTime {
    base + time::Duration::seconds(s)
}

/// A deferral of `recipient`'s message, with per-message detail in the text.
fn deferral(relay: &str, recipient: &str, n: u32, at: OffsetDateTime) -> FailureSample {
    FailureSample {
        relay: relay.to_owned(),
        class: FailureClass::Transient,
        smtp_code: Some(451),
        enhanced_code: Some("4.7.1".to_owned()),
        response: format!("<{recipient}>: greylisted, retry in {n}s (id 01HQZ{n:05}ABCDEFGH)"),
        message_id: format!("msg-{n}"),
        at,
    }
}

fn stats(alerting: &Alerting, channel: &str) -> ChannelStats {
    alerting
        .channel_stats()
        .into_iter()
        .find(|s| s.name == channel)
        .unwrap()
}

/// Waits until no channel has an alert queued or being sent, so that an
/// assertion that nothing more arrived is not a guess about timing.
async fn settled(alerting: &Alerting) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while alerting.channel_stats().iter().any(|s| s.pending > 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            alerting.channel_stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn one_alert_per_tier_one_resolve_in_every_format() {
    let rx = Receiver::start().await;
    let base = &rx.base;
    let config = AlertsConfig::from_toml_str(
        &format!(
            r#"
[alerts]
history = "5m"
send_backoff = "10ms"

[[alerts.channels]]
name = "hook"
kind = "webhook"
url = "{base}/hook"
secret = "hook-secret"

[[alerts.channels]]
name = "wecom"
kind = "wecom"
url = "{base}/wecom?key=wecom-key"

[[alerts.channels]]
name = "feishu"
kind = "feishu"
url = "{base}/feishu"
secret = "feishu-secret"

[[alerts.channels]]
name = "ding"
kind = "dingtalk"
url = "{base}/ding?access_token=ding-token"
secret = "ding-secret"

[[alerts.channels]]
name = "slack"
kind = "slack"
url = "{base}/slack"

[[alerts.rules]]
name = "relay-failing"
scope = "relay"
window = "5m"
cooldown = "30m"
resolve_after = "1m"
tiers = [
  {{ name = "chat", min_count = 10, channels = ["hook", "wecom", "feishu"] }},
  {{ name = "page", min_count = 30, channels = ["hook", "ding", "slack"] }},
]
"#
        ),
        &no_env,
    )
    .unwrap();
    let alerting = Arc::new(Alerting::new(config, SystemClock::shared()));
    let stop = CancellationToken::new();
    // A period far away: every evaluation below is a tick with a fake time.
    let evaluator =
        Arc::clone(&alerting).spawn_evaluator(Duration::from_secs(3600), stop.clone(), None);
    let t0 = base_time();
    let t = |s| secs(t0, s);

    // The same deferral for ten different recipients: one group.
    for i in 0..10u32 {
        alerting.record_attempt("primary", t(i64::from(i)));
        alerting.record_failure(deferral(
            "primary",
            &format!("user{i}@example.com"),
            i,
            t(i64::from(i)),
        ));
    }
    let groups = alerting.groups(&GroupFilter::default(), t(10));
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!((groups[0].count, groups[0].window_count), (10, 10));
    assert_eq!(
        groups[0].text,
        "<addr>: greylisted, retry in <n>s (id <id>)"
    );
    assert_eq!(groups[0].sample_message_id, "msg-9");

    // Ten in five minutes: tier "chat" fires, once.
    let events = alerting.tick(t(10));
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind, events[0].tier.as_str()),
        (AlertKind::Fire, "chat")
    );
    assert!(alerting.tick(t(11)).is_empty());
    rx.wait_for("/hook", 1).await;
    rx.wait_for("/wecom", 1).await;
    rx.wait_for("/feishu", 1).await;

    // Thirty: tier "page" fires, once.
    for i in 10..30u32 {
        alerting.record_failure(deferral(
            "primary",
            &format!("other{i}@example.org"),
            i,
            t(20),
        ));
    }
    let events = alerting.tick(t(40));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].tier, "page");
    for s in [41, 60, 120] {
        assert!(alerting.tick(t(s)).is_empty(), "t={s}");
    }
    rx.wait_for("/ding", 1).await;
    rx.wait_for("/slack", 1).await;

    // Quiet from t=400 (the window has emptied); resolved a minute later.
    assert!(alerting.tick(t(400)).is_empty());
    assert!(alerting.tick(t(459)).is_empty());
    let events = alerting.tick(t(460));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, AlertKind::Resolve);
    assert!(alerting.tick(t(461)).is_empty());

    let hook = rx.wait_for("/hook", 3).await;
    let wecom = rx.wait_for("/wecom", 2).await;
    let feishu = rx.wait_for("/feishu", 2).await;
    let ding = rx.wait_for("/ding", 2).await;
    let slack = rx.wait_for("/slack", 2).await;

    // Failing again within the cooldown: suppressed, and no resolve either.
    for i in 0..10u32 {
        alerting.record_failure(deferral(
            "primary",
            &format!("late{i}@example.net"),
            i,
            t(500),
        ));
    }
    assert!(alerting.tick(t(510)).is_empty());
    assert!(alerting.tick(t(900)).is_empty());
    assert!(alerting.tick(t(1000)).is_empty());
    // Nothing was queued; had anything been, it would be sent by now.
    settled(&alerting).await;
    for (path, n) in [
        ("/hook", 3),
        ("/wecom", 2),
        ("/feishu", 2),
        ("/ding", 2),
        ("/slack", 2),
    ] {
        assert_eq!(rx.at(path).len(), n, "{path}");
    }

    // The generic webhook: herald's JSON, HMAC-signed.
    let statuses: Vec<_> = hook
        .iter()
        .map(|r| {
            let json = r.json();
            (
                json["status"].as_str().unwrap().to_owned(),
                json["tier"].as_str().unwrap().to_owned(),
                json["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("firing".to_owned(), "chat".to_owned(), 10),
            ("firing".to_owned(), "page".to_owned(), 30),
            ("resolved".to_owned(), "page".to_owned(), 0),
        ]
    );
    for r in &hook {
        assert_eq!(r.header("content-type"), "application/json");
        let signature = r.header("x-herald-signature");
        assert_eq!(
            signature,
            format!("sha256={}", hex(&hmac_sha256(b"hook-secret", &r.body)))
        );
        let timestamp: i64 = r.header("x-herald-timestamp").parse().unwrap();
        assert!((timestamp - OffsetDateTime::now_utc().unix_timestamp()).abs() < 60);
    }
    let first = hook[0].json();
    assert_eq!(first["rule"], "relay-failing");
    assert_eq!(first["scope"], "relay");
    assert_eq!(first["relay"], "primary");
    assert_eq!(first["window_seconds"], 300);
    assert_eq!(first["threshold"]["min_count"], 10);
    assert_eq!(first["sample"]["class"], "transient");
    assert_eq!(first["sample"]["smtp_code"], 451);
    assert_eq!(first["sample"]["enhanced_code"], "4.7.1");
    assert_eq!(first["sample"]["group_id"], groups[0].id.as_str());
    assert_eq!(
        first["sample"]["text"],
        "<addr>: greylisted, retry in <n>s (id <id>)"
    );
    // No recipient address leaves in an alert.
    for r in rx.received.lock().unwrap().iter() {
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("example.com") && !body.contains("example.org"),
            "{body}"
        );
    }

    // WeCom: markdown; the key stays in the URL as configured.
    assert!(wecom.iter().all(|r| r.query == "key=wecom-key"));
    let contents: Vec<String> = wecom
        .iter()
        .map(|r| {
            let json = r.json();
            assert_eq!(json["msgtype"], "markdown");
            json["markdown"]["content"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(
        contents[0].contains("FIRING relay-failing (chat): relay primary"),
        "{}",
        contents[0]
    );
    assert!(
        contents[1].contains("RESOLVED relay-failing: relay primary"),
        "{}",
        contents[1]
    );

    // Feishu: text, signed with the timestamp.
    for r in &feishu {
        let json = r.json();
        assert_eq!(json["msg_type"], "text");
        let timestamp = json["timestamp"].as_str().unwrap();
        let key = format!("{timestamp}\nfeishu-secret");
        assert_eq!(
            json["sign"].as_str().unwrap(),
            BASE64.encode(hmac_sha256(key.as_bytes(), b""))
        );
    }
    assert!(
        feishu[0].json()["content"]["text"]
            .as_str()
            .unwrap()
            .starts_with("[herald] FIRING relay-failing (chat)")
    );

    // DingTalk: markdown, signed in the query.
    for r in &ding {
        assert_eq!(r.query_param("access_token"), "ding-token");
        let timestamp = r.query_param("timestamp");
        let sign = percent_decode(&r.query_param("sign"));
        let want = BASE64.encode(hmac_sha256(
            b"ding-secret",
            format!("{timestamp}\nding-secret").as_bytes(),
        ));
        assert_eq!(sign, want);
        let json = r.json();
        assert_eq!(json["msgtype"], "markdown");
        assert!(json["markdown"]["title"].is_string());
    }
    assert!(
        ding[0].json()["markdown"]["title"]
            .as_str()
            .unwrap()
            .contains("FIRING relay-failing (page)")
    );
    assert!(
        ding[1].json()["markdown"]["title"]
            .as_str()
            .unwrap()
            .contains("RESOLVED")
    );

    // Slack: one text field.
    let json = slack[0].json();
    assert_eq!(json.as_object().unwrap().len(), 1);
    assert!(
        json["text"]
            .as_str()
            .unwrap()
            .starts_with("*[herald] FIRING relay-failing (page)")
    );

    for name in ["hook", "wecom", "feishu", "ding", "slack"] {
        let s = stats(&alerting, name);
        assert_eq!(
            (s.failed, s.dropped, s.retries, s.pending),
            (0, 0, 0, 0),
            "{s:?}"
        );
    }
    assert_eq!(stats(&alerting, "hook").sent, 3);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), evaluator)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_backoff() {
    let rx = Receiver::start().await;
    rx.answer("/flaky", &[(500, ""), (502, "")]);
    rx.answer(
        "/limited",
        &[(200, r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#)],
    );
    rx.answer("/down", &[(503, ""), (503, ""), (503, ""), (503, "")]);
    let base = &rx.base;
    let config = AlertsConfig::from_toml_str(
        &format!(
            r#"
[alerts]
send_attempts = 3
send_backoff = "20ms"
[[alerts.channels]]
name = "flaky"
kind = "webhook"
url = "{base}/flaky"
[[alerts.channels]]
name = "limited"
kind = "wecom"
url = "{base}/limited?key=k"
[[alerts.channels]]
name = "down"
kind = "slack"
url = "{base}/down"
[[alerts.rules]]
name = "any"
scope = "group"
tiers = [{{ min_count = 1, channels = ["flaky", "limited", "down"] }}]
"#
        ),
        &no_env,
    )
    .unwrap();
    let alerting = Arc::new(Alerting::new(config, SystemClock::shared()));
    let stop = CancellationToken::new();
    let evaluator =
        Arc::clone(&alerting).spawn_evaluator(Duration::from_secs(3600), stop.clone(), None);
    let now = base_time();
    alerting.record_failure(deferral("primary", "a@example.com", 1, now));
    assert_eq!(alerting.tick(now).len(), 1);

    // 500, 502, then delivered on the third try.
    let flaky = rx.wait_for("/flaky", 3).await;
    assert!(flaky.iter().all(|r| r.json()["status"] == "firing"));
    // A robot's error code on a 200 is a failure too.
    rx.wait_for("/limited", 2).await;
    // Never delivered: three tries, then given up.
    rx.wait_for("/down", 3).await;
    for _ in 0..200 {
        if stats(&alerting, "down").failed == 1
            && stats(&alerting, "flaky").sent == 1
            && stats(&alerting, "limited").sent == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got: Vec<_> = ["flaky", "limited", "down"]
        .into_iter()
        .map(|name| {
            let s = stats(&alerting, name);
            (name, s.sent, s.retries, s.failed)
        })
        .collect();
    assert_eq!(
        got,
        [("flaky", 1, 2, 0), ("limited", 1, 1, 0), ("down", 0, 2, 1)]
    );
    settled(&alerting).await;
    assert_eq!(rx.at("/flaky").len(), 3);
    assert_eq!(rx.at("/down").len(), 3);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), evaluator)
        .await
        .unwrap()
        .unwrap();
}

/// `i` in letters: distinct error texts that normalisation keeps apart.
fn word(mut i: usize) -> String {
    let mut s = String::new();
    loop {
        s.push(char::from(b'a' + (i % 26) as u8));
        i /= 26;
        if i == 0 {
            return s;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_blocks_nothing() {
    // Accepts connections and never reads or answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let config = AlertsConfig::from_toml_str(
        &format!(
            r#"
[alerts]
max_groups = 2000
queue_capacity = 4
send_timeout = "1s"
[[alerts.channels]]
name = "stuck"
kind = "webhook"
url = "http://{addr}/hook"
[[alerts.rules]]
name = "every-error"
scope = "group"
tiers = [{{ min_count = 1, channels = ["stuck"] }}]
"#
        ),
        &no_env,
    )
    .unwrap();
    let alerting = Arc::new(Alerting::new(config, SystemClock::shared()));
    let stop = CancellationToken::new();
    let evaluator =
        Arc::clone(&alerting).spawn_evaluator(Duration::from_secs(3600), stop.clone(), None);
    let now = base_time();

    // 10 000 failures, each its own group, with evaluations in between that
    // raise far more alerts than the stuck channel can take.
    let work = {
        let alerting = Arc::clone(&alerting);
        tokio::task::spawn_blocking(move || {
            let mut fired = 0;
            for i in 0..10_000usize {
                // Later failures are seen later: eviction takes the oldest.
                let at = now + time::Duration::seconds((i / 100) as i64);
                alerting.record_attempt("primary", at);
                alerting.record_failure(FailureSample {
                    relay: "primary".to_owned(),
                    class: FailureClass::Permanent,
                    smtp_code: Some(550),
                    enhanced_code: Some("5.7.1".to_owned()),
                    response: format!("rejected by policy {}", word(i)),
                    message_id: format!("m{i}"),
                    at,
                });
                if i % 1000 == 999 {
                    fired += alerting.tick(at).len();
                }
            }
            fired
        })
    };
    let fired = tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .expect("recording blocked behind a stuck webhook")
        .unwrap();
    assert!(fired >= 2000, "{fired}");
    let held = alerting.groups(&GroupFilter::default(), now).len();
    assert!((1900..=2000).contains(&held), "{held}");
    let s = stats(&alerting, "stuck");
    assert_eq!(s.sent, 0);
    // The queue's four and the one the stuck sender holds.
    assert!(s.pending <= 5, "{s:?}");
    // Everything beyond the queue and the one or two taken by the stuck
    // sender was dropped.
    assert!(s.dropped as usize >= fired - 10, "{s:?}, fired {fired}");

    // Stopping does not wait for the stuck request.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(2), evaluator)
        .await
        .unwrap()
        .unwrap();
}
