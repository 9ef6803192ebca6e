//! What an alert looks like on the wire for each kind of channel — a
//! generic JSON webhook signed with HMAC-SHA256, and the incoming-webhook
//! formats of WeCom (企业微信) group robots, Feishu/Lark, DingTalk and
//! Slack — and how each answers success. Pure: the send time is passed in,
//! so every format is pinned by tests.

#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::ChannelConfig;
use crate::rules::{AlertEvent, AlertKind, RuleScope, Threshold, ratio};
use const_hex::encode as hex;

/// The header carrying the generic webhook's signature:
/// `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Herald-Signature";
/// The header carrying the generic webhook's send time, in Unix seconds
/// (the body's `sent_at` says the same and is covered by the signature).
pub const TIMESTAMP_HEADER: &str = "X-Herald-Timestamp";
/// WeCom refuses markdown content over 4096 bytes.
const WECOM_MAX_BYTES: usize = 4000;

/// The message format of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// Herald's own JSON, signed when a secret is set.
    Webhook,
    /// A WeCom (企业微信) group robot: markdown message.
    WeCom,
    /// A Feishu (飞书) or Lark custom bot: text message, optionally signed.
    Feishu,
    /// A DingTalk (钉钉) custom robot: markdown message, optionally signed.
    DingTalk,
    /// A Slack incoming webhook: text message.
    Slack,
}

impl ChannelKind {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::WeCom => "wecom",
            Self::Feishu => "feishu",
            Self::DingTalk => "dingtalk",
            Self::Slack => "slack",
        }
    }

    /// Whether the kind is signed with a secret.
    pub fn signs(self) -> bool {
        matches!(self, Self::Webhook | Self::Feishu | Self::DingTalk)
    }
}

impl FromStr for ChannelKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "webhook" => Ok(Self::Webhook),
            "wecom" => Ok(Self::WeCom),
            "feishu" | "lark" => Ok(Self::Feishu),
            "dingtalk" => Ok(Self::DingTalk),
            "slack" => Ok(Self::Slack),
            other => Err(format!(
                "unknown channel kind {other:?} (webhook, wecom, feishu, lark, dingtalk, slack)"
            )),
        }
    }
}

/// One HTTP POST, ready to send. The URL is a secret: never log it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Outgoing {
    pub(crate) url: String,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
}

/// The request that tells `channel` about `event`, signed for `sent_at`.
pub(crate) fn render(
    channel: &ChannelConfig,
    event: &AlertEvent,
    sent_at: OffsetDateTime,
) -> Result<Outgoing, String> {
    let text = Text::of(event);
    let secret = channel.secret.as_deref();
    let mut headers = vec![("Content-Type", "application/json".to_owned())];
    let mut url = channel.url.clone();
    let body = match channel.kind {
        ChannelKind::Webhook => {
            let body = webhook_body(event, &text, sent_at).to_string().into_bytes();
            headers.push((TIMESTAMP_HEADER, sent_at.unix_timestamp().to_string()));
            if let Some(secret) = secret {
                let mac = hmac_sha256(secret.as_bytes(), &body)?;
                headers.push((SIGNATURE_HEADER, format!("sha256={}", hex(&mac))));
            }
            return Ok(Outgoing { url, headers, body });
        }
        ChannelKind::WeCom => json!({
            "msgtype": "markdown",
            "markdown": { "content": cut_bytes(&text.markdown(Flavour::WeCom), WECOM_MAX_BYTES) },
        }),
        ChannelKind::Feishu => {
            let mut body = json!({
                "msg_type": "text",
                "content": { "text": text.plain() },
            });
            if let (Some(secret), Some(obj)) = (secret, body.as_object_mut()) {
                let timestamp = sent_at.unix_timestamp().to_string();
                obj.insert("timestamp".to_owned(), Value::String(timestamp.clone()));
                obj.insert(
                    "sign".to_owned(),
                    Value::String(feishu_sign(&timestamp, secret)?),
                );
            }
            body
        }
        ChannelKind::DingTalk => {
            if let Some(secret) = secret {
                let millis = sent_at.unix_timestamp_nanos() / 1_000_000;
                let sign = dingtalk_sign(&millis.to_string(), secret)?;
                let sep = if url.contains('?') { '&' } else { '?' };
                let _ = write!(
                    url,
                    "{sep}timestamp={millis}&sign={}",
                    percent_encode(&sign)
                );
            }
            json!({
                "msgtype": "markdown",
                "markdown": { "title": text.title, "text": text.markdown(Flavour::DingTalk) },
            })
        }
        ChannelKind::Slack => json!({ "text": text.slack() }),
    };
    Ok(Outgoing {
        url,
        headers,
        body: body.to_string().into_bytes(),
    })
}

/// Whether the channel's answer means "delivered". Chat robots answer
/// `200` with an error code in the body (bad signature, rate limited). The
/// message never quotes more than a short error text from the body.
pub(crate) fn check_reply(kind: ChannelKind, status: u16, body: &str) -> Result<(), String> {
    if !(200..300).contains(&status) {
        return Err(format!("HTTP {status}"));
    }
    let Ok(json) = serde_json::from_str::<Value>(body) else {
        return Ok(());
    };
    let (code, message) = match kind {
        ChannelKind::WeCom | ChannelKind::DingTalk => (json.get("errcode"), json.get("errmsg")),
        ChannelKind::Feishu => match json.get("code") {
            Some(code) => (Some(code), json.get("msg")),
            None => (json.get("StatusCode"), json.get("StatusMessage")),
        },
        ChannelKind::Webhook | ChannelKind::Slack => return Ok(()),
    };
    match code.and_then(Value::as_i64) {
        None | Some(0) => Ok(()),
        Some(code) => {
            let message = message.and_then(Value::as_str).unwrap_or_default();
            let message: String = message.chars().take(120).collect();
            Err(format!("error code {code}: {message}"))
        }
    }
}

/// HMAC-SHA256.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Result<Vec<u8>, String> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .map_err(|_| "cannot key HMAC-SHA256".to_owned())?;
    mac.update(message);
    Ok(mac.finalize().into_bytes().to_vec())
}

/// The generic webhook's signature value for `body`: what a receiver
/// compares `X-Herald-Signature` with (in constant time).
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    match hmac_sha256(secret.as_bytes(), body) {
        Ok(mac) => format!("sha256={}", hex(&mac)),
        Err(_) => String::new(),
    }
}

/// Feishu/Lark: base64 of HMAC-SHA256 keyed with `timestamp + "\n" +
/// secret` over an empty message (seconds since the epoch).
pub(crate) fn feishu_sign(timestamp: &str, secret: &str) -> Result<String, String> {
    let key = format!("{timestamp}\n{secret}");
    Ok(BASE64.encode(hmac_sha256(key.as_bytes(), b"")?))
}

/// DingTalk: base64 of HMAC-SHA256 keyed with the secret over `timestamp +
/// "\n" + secret` (milliseconds since the epoch); URL-encoded by the caller.
pub(crate) fn dingtalk_sign(timestamp_ms: &str, secret: &str) -> Result<String, String> {
    let message = format!("{timestamp_ms}\n{secret}");
    Ok(BASE64.encode(hmac_sha256(secret.as_bytes(), message.as_bytes())?))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// At most `max` bytes, cut at a character boundary.
fn cut_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_owned()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Herald's own JSON.
fn webhook_body(event: &AlertEvent, text: &Text, sent_at: OffsetDateTime) -> Value {
    let threshold = match event.threshold {
        Threshold::Count(n) => json!({ "min_count": n }),
        Threshold::Rate(r) => json!({ "min_rate": r }),
    };
    json!({
        "version": 1,
        "status": status(event),
        "rule": event.rule,
        "scope": event.scope,
        "key": event.key,
        "relay": event.relay,
        "tier": event.tier,
        "tier_index": event.tier_index,
        "threshold": threshold,
        "count": event.count,
        "attempts": event.attempts,
        "window_seconds": event.window.as_secs(),
        "started_at": rfc3339(event.started_at),
        "at": rfc3339(event.at),
        "sent_at": rfc3339(sent_at),
        "sample": event.sample,
        "title": text.title,
        "text": text.plain(),
    })
}

fn status(event: &AlertEvent) -> &'static str {
    match event.kind {
        AlertKind::Fire => "firing",
        AlertKind::Resolve => "resolved",
    }
}

/// Which markdown dialect.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    WeCom,
    DingTalk,
}

/// An alert in words: a title and `label: value` lines.
struct Text {
    kind: AlertKind,
    title: String,
    lines: Vec<(&'static str, String)>,
}

impl Text {
    fn of(event: &AlertEvent) -> Self {
        let window = humantime::format_duration(event.window).to_string();
        let subject = match event.scope {
            RuleScope::Relay => format!("relay {}", event.relay),
            RuleScope::Group => format!("error group {} via {}", event.key, event.relay),
        };
        let title = match event.kind {
            AlertKind::Fire => {
                format!("[herald] FIRING {} ({}): {subject}", event.rule, event.tier)
            }
            AlertKind::Resolve => format!("[herald] RESOLVED {}: {subject}", event.rule),
        };
        let mut failures = format!("{} in the last {window}", event.count);
        if let Some(attempts) = event.attempts {
            let _ = write!(
                failures,
                " ({:.1}% of {attempts} attempts)",
                ratio(event.count, attempts) * 100.0
            );
        }
        let threshold = match event.threshold {
            Threshold::Count(n) => format!("{n} in {window}"),
            Threshold::Rate(r) => format!("{:.1}% of attempts in {window}", r * 100.0),
        };
        let mut lines = vec![("rule", format!("{} · tier {}", event.rule, event.tier))];
        match event.kind {
            AlertKind::Fire => {
                lines.push(("failures", failures));
                lines.push(("threshold", threshold));
            }
            AlertKind::Resolve => lines.push(("failures now", failures)),
        }
        if let Some(s) = &event.sample {
            let mut error = String::new();
            if let Some(code) = s.smtp_code {
                let _ = write!(error, "{code} ");
            }
            if let Some(enhanced) = &s.enhanced_code {
                let _ = write!(error, "{enhanced} ");
            }
            let _ = write!(error, "{} ({})", s.text, s.class);
            lines.push(("error", error));
            lines.push(("sample message", s.message_id.clone()));
        }
        lines.push(("since", rfc3339(event.started_at)));
        if event.kind == AlertKind::Resolve {
            lines.push(("resolved", rfc3339(event.at)));
        }
        Self {
            kind: event.kind,
            title,
            lines,
        }
    }

    /// Plain text: the title, then one line per field.
    fn plain(&self) -> String {
        let mut out = self.title.clone();
        for (label, value) in &self.lines {
            let _ = write!(out, "\n{label}: {value}");
        }
        out
    }

    /// WeCom and DingTalk markdown. `<` and `>` (as in `<addr>`) would be
    /// taken for HTML, so they become `‹ ›`.
    fn markdown(&self, flavour: Flavour) -> String {
        let esc = |s: &str| s.replace('<', "‹").replace('>', "›");
        let mut out = match (flavour, self.kind) {
            (Flavour::WeCom, AlertKind::Fire) => {
                format!("**<font color=\"warning\">{}</font>**", esc(&self.title))
            }
            (Flavour::WeCom, AlertKind::Resolve) => {
                format!("**<font color=\"info\">{}</font>**", esc(&self.title))
            }
            (Flavour::DingTalk, _) => format!("#### {}", esc(&self.title)),
        };
        // DingTalk needs a blank line to break a line.
        let sep = if flavour == Flavour::DingTalk {
            "\n\n"
        } else {
            "\n"
        };
        for (label, value) in &self.lines {
            let _ = write!(out, "{sep}> {label}: {}", esc(value));
        }
        out
    }

    /// Slack mrkdwn: `&`, `<` and `>` escaped as Slack asks.
    fn slack(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut out = format!("*{}*", esc(&self.title));
        for (label, value) in &self.lines {
            let _ = write!(out, "\n{label}: {}", esc(value));
        }
        out
    }
}
