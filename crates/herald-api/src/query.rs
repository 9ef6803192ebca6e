//! The query strings of the listing routes, as types: what a client may
//! ask of `GET /v1/messages` and `GET /v1/errors`, and how it is spelled
//! in a URL.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{MessageStatus, SuppressionReason};

/// The most messages one page of `GET /v1/messages` holds.
pub const MAX_LIST_LIMIT: usize = 500;

/// The query of `GET /v1/messages`; every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListQuery {
    /// Only messages in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MessageStatus>,
    /// Only messages carrying this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Only messages to this recipient (exact address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// Only messages created at or after this time.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub since: Option<OffsetDateTime>,
    /// Only messages created before this time.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub until: Option<OffsetDateTime>,
    /// At most this many, 1 to [`MAX_LIST_LIMIT`] (50 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The previous page's `next_cursor`, to continue after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

impl ListQuery {
    /// The query string (without `?`), its values percent-encoded; empty
    /// when nothing is asked.
    pub fn to_query_string(&self) -> String {
        let time = |t: &OffsetDateTime| t.format(&Rfc3339).ok();
        let pairs = [
            ("status", self.status.map(|s| s.as_str().to_owned())),
            ("tag", self.tag.clone()),
            ("recipient", self.recipient.clone()),
            ("since", self.since.as_ref().and_then(time)),
            ("until", self.until.as_ref().and_then(time)),
            ("limit", self.limit.map(|n| n.to_string())),
            ("cursor", self.cursor.clone()),
        ];
        join(&pairs)
    }
}

/// The query of `GET /v1/errors`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorsQuery {
    /// Only groups seen within this window, counted over it: a duration
    /// such as `15m` or `1h` (the configured window when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Only groups of this relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
}

impl ErrorsQuery {
    /// The query string (without `?`), its values percent-encoded.
    pub fn to_query_string(&self) -> String {
        join(&[
            ("window", self.window.clone()),
            ("relay", self.relay.clone()),
        ])
    }
}

/// The query of `GET /v1/suppressions`; every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressionQuery {
    /// Only entries added for this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<SuppressionReason>,
    /// Only entries added at or after this time.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub since: Option<OffsetDateTime>,
    /// At most this many, 1 to 500 (50 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The previous page's `next_cursor`, to continue after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

impl SuppressionQuery {
    /// The query string (without `?`), its values percent-encoded.
    pub fn to_query_string(&self) -> String {
        join(&[
            ("reason", self.reason.map(|r| r.as_str().to_owned())),
            ("since", self.since.and_then(|t| t.format(&Rfc3339).ok())),
            ("limit", self.limit.map(|n| n.to_string())),
            ("cursor", self.cursor.clone()),
        ])
    }
}

/// The query of `GET /v1/webhooks/deliveries`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryQuery {
    /// At most this many, 1 to 500 (50 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The previous page's `next_cursor`, to continue after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

impl DeliveryQuery {
    /// The query string (without `?`), its values percent-encoded.
    pub fn to_query_string(&self) -> String {
        join(&[
            ("limit", self.limit.map(|n| n.to_string())),
            ("cursor", self.cursor.clone()),
        ])
    }
}

fn join(pairs: &[(&str, Option<String>)]) -> String {
    pairs
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={}", encode(v))))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_string_names_only_what_is_asked_and_encodes_it() {
        assert_eq!(ListQuery::default().to_query_string(), "");
        let query = ListQuery {
            status: Some(MessageStatus::Deferred),
            recipient: Some("a+b@example.com".into()),
            since: Some(time::macros::datetime!(2026-01-02 03:04:05 UTC)),
            limit: Some(10),
            ..ListQuery::default()
        };
        assert_eq!(
            query.to_query_string(),
            "status=deferred&recipient=a%2Bb%40example.com\
             &since=2026-01-02T03%3A04%3A05Z&limit=10"
        );
        let errors = ErrorsQuery {
            window: Some("15m".into()),
            relay: None,
        };
        assert_eq!(errors.to_query_string(), "window=15m");
        let suppressions = SuppressionQuery {
            reason: Some(SuppressionReason::Bounce),
            since: Some(time::macros::datetime!(2026-01-02 03:04:05 UTC)),
            cursor: Some("1~a@b".into()),
            ..SuppressionQuery::default()
        };
        assert_eq!(
            suppressions.to_query_string(),
            "reason=bounce&since=2026-01-02T03%3A04%3A05Z&cursor=1~a%40b"
        );
        let deliveries = DeliveryQuery {
            limit: Some(2),
            cursor: None,
        };
        assert_eq!(deliveries.to_query_string(), "limit=2");
    }
}
