//! Each channel's JSON and signature, pinned.

use std::time::Duration;

use super::*;
use crate::fingerprint::FailureClass;
use crate::rules::AlertSample;

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000 + secs).unwrap()
}

fn event(kind: AlertKind) -> AlertEvent {
    AlertEvent {
        kind,
        rule: "relay-failing".to_owned(),
        scope: RuleScope::Relay,
        key: "primary".to_owned(),
        relay: "primary".to_owned(),
        tier: "chat".to_owned(),
        tier_index: 0,
        threshold: Threshold::Count(10),
        channels: vec!["c".to_owned()],
        count: 12,
        attempts: None,
        window: Duration::from_secs(300),
        started_at: at(0),
        at: at(60),
        sample: Some(AlertSample {
            group_id: "0123456789ab".to_owned(),
            class: FailureClass::Transient,
            smtp_code: Some(451),
            enhanced_code: Some("4.7.1".to_owned()),
            text: "<addr>: try again & later".to_owned(),
            message_id: "01HQZ".to_owned(),
        }),
    }
}

fn channel(kind: ChannelKind, url: &str, secret: Option<&str>) -> ChannelConfig {
    ChannelConfig {
        name: "c".to_owned(),
        kind,
        url: url.to_owned(),
        secret: secret.map(str::to_owned),
    }
}

fn body(out: &Outgoing) -> Value {
    serde_json::from_slice(&out.body).unwrap()
}

fn header<'a>(out: &'a Outgoing, name: &str) -> Option<&'a str> {
    out.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn hmac_sha256_matches_rfc_4231() {
    // Test case 2.
    let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?").unwrap();
    assert_eq!(
        hex(&mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn the_generic_webhook_is_herald_json_signed() {
    let c = channel(
        ChannelKind::Webhook,
        "http://127.0.0.1:9/hook",
        Some("s3cret"),
    );
    let out = render(&c, &event(AlertKind::Fire), at(61)).unwrap();
    assert_eq!(out.url, "http://127.0.0.1:9/hook");
    assert_eq!(header(&out, "content-type"), Some("application/json"));
    assert_eq!(header(&out, TIMESTAMP_HEADER), Some("1700000061"));
    let signature = header(&out, SIGNATURE_HEADER).unwrap();
    assert_eq!(signature, webhook_signature("s3cret", &out.body));
    assert_eq!(
        signature,
        format!("sha256={}", hex(hmac_sha256(b"s3cret", &out.body).unwrap()))
    );
    let json = body(&out);
    assert_eq!(json["version"], 1);
    assert_eq!(json["status"], "firing");
    assert_eq!(json["rule"], "relay-failing");
    assert_eq!(json["scope"], "relay");
    assert_eq!(json["key"], "primary");
    assert_eq!(json["tier"], "chat");
    assert_eq!(json["tier_index"], 0);
    assert_eq!(json["threshold"], json!({ "min_count": 10 }));
    assert_eq!(json["count"], 12);
    assert_eq!(json["attempts"], Value::Null);
    assert_eq!(json["window_seconds"], 300);
    assert_eq!(json["started_at"], "2023-11-14T22:13:20Z");
    assert_eq!(json["at"], "2023-11-14T22:14:20Z");
    assert_eq!(json["sent_at"], "2023-11-14T22:14:21Z");
    assert_eq!(json["sample"]["group_id"], "0123456789ab");
    assert_eq!(json["sample"]["class"], "transient");
    assert_eq!(json["sample"]["smtp_code"], 451);
    assert_eq!(
        json["title"],
        "[herald] FIRING relay-failing (chat): relay primary"
    );
    assert_eq!(
        json["text"],
        "[herald] FIRING relay-failing (chat): relay primary\n\
         rule: relay-failing · tier chat\n\
         failures: 12 in the last 5m\n\
         threshold: 10 in 5m\n\
         error: 451 4.7.1 <addr>: try again & later (transient)\n\
         sample message: 01HQZ\n\
         since: 2023-11-14T22:13:20Z"
    );
    // Without a secret: no signature header.
    let unsigned = channel(ChannelKind::Webhook, "http://h/", None);
    let out = render(&unsigned, &event(AlertKind::Fire), at(61)).unwrap();
    assert_eq!(header(&out, SIGNATURE_HEADER), None);
}

#[test]
fn wecom_is_a_markdown_message() {
    let c = channel(
        ChannelKind::WeCom,
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K",
        None,
    );
    let out = render(&c, &event(AlertKind::Fire), at(61)).unwrap();
    assert_eq!(out.url, c.url);
    let json = body(&out);
    assert_eq!(json["msgtype"], "markdown");
    assert_eq!(
        json["markdown"]["content"],
        "**<font color=\"warning\">[herald] FIRING relay-failing (chat): relay primary</font>**\n\
         > rule: relay-failing · tier chat\n\
         > failures: 12 in the last 5m\n\
         > threshold: 10 in 5m\n\
         > error: 451 4.7.1 ‹addr›: try again & later (transient)\n\
         > sample message: 01HQZ\n\
         > since: 2023-11-14T22:13:20Z"
    );
    let resolved = body(&render(&c, &event(AlertKind::Resolve), at(61)).unwrap());
    let content = resolved["markdown"]["content"].as_str().unwrap();
    assert!(content.starts_with(
        "**<font color=\"info\">[herald] RESOLVED relay-failing: relay primary</font>**"
    ));
    assert!(content.contains("> failures now: 12 in the last 5m"));
    assert!(content.ends_with("> resolved: 2023-11-14T22:14:20Z"));
    assert_eq!(json.as_object().map(|o| o.len()), Some(2));
}

#[test]
fn feishu_is_a_text_message_signed_with_the_timestamp() {
    let c = channel(
        ChannelKind::Feishu,
        "https://open.feishu.cn/open-apis/bot/v2/hook/H",
        Some("fs"),
    );
    let out = render(&c, &event(AlertKind::Resolve), at(61)).unwrap();
    let json = body(&out);
    assert_eq!(json["msg_type"], "text");
    let text = json["content"]["text"].as_str().unwrap();
    assert!(text.starts_with("[herald] RESOLVED relay-failing: relay primary\n"));
    assert_eq!(json["timestamp"], "1700000061");
    // sign = base64(HMAC-SHA256(key = "timestamp\nsecret", message = "")).
    let want = BASE64.encode(hmac_sha256(b"1700000061\nfs", b"").unwrap());
    assert_eq!(json["sign"], want.as_str());
    // Unsigned without a secret.
    let plain = body(
        &render(
            &channel(ChannelKind::Feishu, "https://x/", None),
            &event(AlertKind::Fire),
            at(61),
        )
        .unwrap(),
    );
    assert_eq!(plain.as_object().map(|o| o.len()), Some(2));
}

#[test]
fn dingtalk_is_markdown_signed_in_the_query() {
    let url = "https://oapi.dingtalk.com/robot/send?access_token=T";
    let c = channel(ChannelKind::DingTalk, url, Some("SECd"));
    let out = render(&c, &event(AlertKind::Fire), at(61)).unwrap();
    let (base, query) = out.url.split_once("&timestamp=").unwrap();
    assert_eq!(base, url);
    let (timestamp, sign) = query.split_once("&sign=").unwrap();
    assert_eq!(timestamp, "1700000061000");
    // sign = urlencode(base64(HMAC-SHA256(key = secret, "timestamp\nsecret"))).
    let raw = BASE64.encode(hmac_sha256(b"SECd", b"1700000061000\nSECd").unwrap());
    assert_eq!(sign, percent_encode(&raw));
    assert!(!sign.contains(['+', '/', '=']));
    let json = body(&out);
    assert_eq!(json["msgtype"], "markdown");
    assert_eq!(
        json["markdown"]["title"],
        "[herald] FIRING relay-failing (chat): relay primary"
    );
    let text = json["markdown"]["text"].as_str().unwrap();
    assert!(
        text.starts_with("#### [herald] FIRING relay-failing (chat): relay primary\n\n> rule: ")
    );
    assert!(text.contains("\n\n> error: 451 4.7.1 ‹addr›: try again & later (transient)\n\n"));
    // A URL without a query gets one.
    let bare = channel(
        ChannelKind::DingTalk,
        "http://127.0.0.1:1/ding",
        Some("SECd"),
    );
    let out = render(&bare, &event(AlertKind::Fire), at(61)).unwrap();
    assert!(
        out.url
            .starts_with("http://127.0.0.1:1/ding?timestamp=1700000061000&sign=")
    );
}

#[test]
fn slack_is_escaped_text() {
    let c = channel(
        ChannelKind::Slack,
        "https://hooks.slack.com/services/A/B/C",
        None,
    );
    let json = body(&render(&c, &event(AlertKind::Fire), at(61)).unwrap());
    assert_eq!(json.as_object().map(|o| o.len()), Some(1));
    let text = json["text"].as_str().unwrap();
    assert!(text.starts_with("*[herald] FIRING relay-failing (chat): relay primary*\n"));
    assert!(text.contains("error: 451 4.7.1 &lt;addr&gt;: try again &amp; later (transient)"));
}

#[test]
fn group_scope_and_rates_in_words() {
    let mut e = event(AlertKind::Fire);
    e.scope = RuleScope::Group;
    e.key = "0123456789ab".to_owned();
    e.threshold = Threshold::Rate(0.25);
    e.attempts = Some(40);
    let c = channel(ChannelKind::Webhook, "http://h/", None);
    let json = body(&render(&c, &e, at(61)).unwrap());
    assert_eq!(
        json["title"],
        "[herald] FIRING relay-failing (chat): error group 0123456789ab via primary"
    );
    assert_eq!(json["threshold"], json!({ "min_rate": 0.25 }));
    assert_eq!(json["attempts"], 40);
    let text = json["text"].as_str().unwrap();
    assert!(
        text.contains("failures: 12 in the last 5m (30.0% of 40 attempts)"),
        "{text}"
    );
    assert!(
        text.contains("threshold: 25.0% of attempts in 5m"),
        "{text}"
    );
}

#[test]
fn replies_table() {
    use ChannelKind::*;
    let cases: [(ChannelKind, u16, &str, Result<(), &str>); 14] = [
        (Webhook, 200, "", Ok(())),
        (Webhook, 204, "", Ok(())),
        (Webhook, 500, "", Err("HTTP 500")),
        (Webhook, 302, "", Err("HTTP 302")),
        (Slack, 200, "ok", Ok(())),
        (Slack, 404, "no_service", Err("HTTP 404")),
        (WeCom, 200, r#"{"errcode":0,"errmsg":"ok"}"#, Ok(())),
        (
            WeCom,
            200,
            r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#,
            Err("error code 45009: api freq out of limit"),
        ),
        (WeCom, 200, "not json", Ok(())),
        (
            DingTalk,
            200,
            r#"{"errcode":310000,"errmsg":"sign not match"}"#,
            Err("error code 310000: sign not match"),
        ),
        (
            Feishu,
            200,
            r#"{"code":0,"msg":"success","data":{}}"#,
            Ok(()),
        ),
        (
            Feishu,
            200,
            r#"{"code":19021,"msg":"sign match fail"}"#,
            Err("error code 19021: sign match fail"),
        ),
        (
            Feishu,
            200,
            r#"{"StatusCode":0,"StatusMessage":"success"}"#,
            Ok(()),
        ),
        (
            Feishu,
            200,
            r#"{"StatusCode":9499,"StatusMessage":"Bad Request"}"#,
            Err("error code 9499: Bad Request"),
        ),
    ];
    for (kind, status, body, want) in cases {
        let got = check_reply(kind, status, body);
        assert_eq!(
            got.as_ref().map_err(String::as_str),
            want.as_ref().map_err(|e| *e),
            "{kind:?} {status} {body}"
        );
    }
}

#[test]
fn helpers() {
    assert_eq!(percent_encode("aZ0-._~+/= é"), "aZ0-._~%2B%2F%3D%20%C3%A9");
    assert_eq!(cut_bytes("héllo", 2), "h");
    assert_eq!(cut_bytes("héllo", 3), "hé");
    assert_eq!(cut_bytes("héllo", 100), "héllo");
    for kind in ["webhook", "wecom", "feishu", "dingtalk", "slack"] {
        assert_eq!(
            kind.parse::<ChannelKind>().map(ChannelKind::as_str),
            Ok(kind)
        );
    }
    assert_eq!("lark".parse::<ChannelKind>(), Ok(ChannelKind::Feishu));
    assert!("teams".parse::<ChannelKind>().is_err());
}
