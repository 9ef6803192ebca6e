//! `GET /v1/errors`: delivery failures grouped by fingerprint (relay,
//! class, codes, normalised reply text), most frequent first.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The answer of `GET /v1/errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorGroups {
    /// The window `window_count` was counted over, in seconds.
    pub window_seconds: u64,
    /// The groups, most frequent in the window first.
    pub groups: Vec<ErrorGroup>,
}

/// Whether a failure may pass with time (a deferral) or is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureClass {
    /// A 4xx reply, a timeout or a lost connection: the message was
    /// deferred.
    Transient,
    /// A 5xx reply: the recipient failed for good.
    Permanent,
}

/// One group of like failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorGroup {
    /// The fingerprint: 12 hex digits, stable for the same failure.
    pub id: String,
    /// The relay's name.
    pub relay: String,
    /// Transient or permanent.
    pub class: FailureClass,
    /// The SMTP reply code, if the server answered (`null` otherwise).
    pub smtp_code: Option<u16>,
    /// The enhanced status code, if any (`null` otherwise).
    pub enhanced_code: Option<String>,
    /// The normalised reply text the group is keyed on (ids and numbers
    /// replaced by `<id>` and `<n>`).
    pub text: String,
    /// Failures since the group was first seen by this node.
    pub count: u64,
    /// Failures within the window.
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
