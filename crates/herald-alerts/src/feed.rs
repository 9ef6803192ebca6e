//! What one node tells the others about failures, when several nodes
//! share a store: each failure sample as it happened, and attempt counts
//! per relay summed over a short interval. The nodes' error groups are
//! then the same everywhere, and the node that evaluates the rules sees
//! every node's failures. The store carries the items as opaque JSON;
//! this module only turns them into text and back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::fingerprint::FailureClass;
use crate::groups::FailureSample;

/// One thing a node saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedItem {
    /// A failed or deferred attempt for one recipient.
    Failure {
        /// The relay's name.
        relay: String,
        /// Transient or permanent.
        class: FailureClass,
        /// The SMTP code, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        smtp_code: Option<u16>,
        /// The enhanced code, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        enhanced_code: Option<String>,
        /// The reply text or the error.
        response: String,
        /// The message's id.
        message_id: String,
        /// When the attempt ended.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// Attempts through a relay since the node's last report.
    Attempts {
        /// The relay's name.
        relay: String,
        /// How many.
        count: u64,
        /// When they were counted.
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
}

impl FeedItem {
    /// The item as the store keeps it.
    pub fn to_text(&self) -> String {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// An item from the store, or `None` for text this version does not
    /// understand (written by a newer node: skipped, not fatal).
    pub fn from_text(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// When it happened.
    pub fn at(&self) -> OffsetDateTime {
        match self {
            Self::Failure { at, .. } | Self::Attempts { at, .. } => *at,
        }
    }
}

impl From<&FailureSample> for FeedItem {
    fn from(sample: &FailureSample) -> Self {
        Self::Failure {
            relay: sample.relay.clone(),
            class: sample.class,
            smtp_code: sample.smtp_code,
            enhanced_code: sample.enhanced_code.clone(),
            response: sample.response.clone(),
            message_id: sample.message_id.clone(),
            at: sample.at,
        }
    }
}

/// What a node has seen since it last reported: failures in order, and
/// attempts summed per relay (so a busy node writes one line per relay
/// per report, not one per attempt).
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    failures: Vec<FeedItem>,
    attempts: BTreeMap<String, u64>,
}

/// Failures kept for the next report at most; beyond, they are counted as
/// attempts only (a storm must not grow memory without bound).
const MAX_PENDING_FAILURES: usize = 10_000;

impl Outgoing {
    pub(crate) fn failure(&mut self, sample: &FailureSample) {
        if self.failures.len() < MAX_PENDING_FAILURES {
            self.failures.push(FeedItem::from(sample));
        }
    }

    pub(crate) fn attempt(&mut self, relay: &str) {
        *self.attempts.entry(relay.to_owned()).or_default() += 1;
    }

    /// Everything pending, emptied; attempts stamped `now`.
    pub(crate) fn take(&mut self, now: OffsetDateTime) -> Vec<FeedItem> {
        let mut items = std::mem::take(&mut self.failures);
        items.extend(
            std::mem::take(&mut self.attempts)
                .into_iter()
                .map(|(relay, count)| FeedItem::Attempts {
                    relay,
                    count,
                    at: now,
                }),
        );
        items
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use time::macros::datetime;

    use super::*;

    #[test]
    fn items_round_trip_through_text_and_unknown_text_is_skipped() {
        let at = datetime!(2030-01-01 0:00 UTC);
        let sample = FailureSample {
            relay: "primary".into(),
            class: FailureClass::Permanent,
            smtp_code: Some(550),
            enhanced_code: Some("5.1.1".into()),
            response: "user unknown".into(),
            message_id: "01ABC".into(),
            at,
        };
        let mut out = Outgoing::default();
        out.failure(&sample);
        out.attempt("primary");
        out.attempt("primary");
        out.attempt("backup");
        let items = out.take(at);
        assert_eq!(items.len(), 3);
        for item in &items {
            assert_eq!(FeedItem::from_text(&item.to_text()).as_ref(), Some(item));
        }
        assert_eq!(
            items[1],
            FeedItem::Attempts {
                relay: "backup".into(),
                count: 1,
                at
            }
        );
        assert_eq!(
            items[2],
            FeedItem::Attempts {
                relay: "primary".into(),
                count: 2,
                at
            }
        );
        assert!(out.take(at).is_empty());
        assert_eq!(FeedItem::from_text("{\"novel\":{}}"), None);
    }
}
