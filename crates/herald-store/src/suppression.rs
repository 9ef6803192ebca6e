//! The suppression list: addresses herald will not send to, why, and
//! until when. The rules (how an address is compared, which failures add
//! an entry by themselves, when an entry lapses) are pure functions here;
//! backends store and look up.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use herald_policy::BounceClass;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{RecipientResult, RecipientStatus};

/// Why an address is on the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    /// A permanent failure of a class the configuration suppresses.
    Bounce,
    /// The recipient complained (reported as spam).
    Complaint,
    /// Added by a user.
    Manual,
}

impl SuppressionReason {
    /// Every reason.
    pub const ALL: [Self; 3] = [Self::Bounce, Self::Complaint, Self::Manual];

    /// The name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bounce => "bounce",
            Self::Complaint => "complaint",
            Self::Manual => "manual",
        }
    }
}

impl fmt::Display for SuppressionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SuppressionReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown suppression reason {s:?}"))
    }
}

/// One entry of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// The address, as [`address_key`] makes it.
    pub address: String,
    /// Why.
    pub reason: SuppressionReason,
    /// The herald id of the message whose failure caused it, if any.
    pub message: Option<String>,
    /// The SMTP reply that caused it, if any.
    pub response: Option<String>,
    /// When it was added.
    pub created_at: OffsetDateTime,
    /// When it lapses by itself, if ever.
    pub expires_at: Option<OffsetDateTime>,
}

impl Suppression {
    /// Whether the entry still holds at `now`.
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// The answer for one address given to [`crate::Store::add_suppressions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// A new entry (or one replacing a lapsed entry).
    Added(Suppression),
    /// The address was already on the list; the entry is unchanged.
    Exists(Suppression),
}

impl Added {
    /// The entry now on the list.
    pub fn entry(&self) -> &Suppression {
        match self {
            Self::Added(entry) | Self::Exists(entry) => entry,
        }
    }
}

/// Which entries [`crate::Store::list_suppressions`] returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuppressionFilter {
    /// Only this reason.
    pub reason: Option<SuppressionReason>,
    /// Only entries added at or after.
    pub since: Option<OffsetDateTime>,
    /// Continue after this entry (the previous page's last).
    pub after: Option<SuppressionCursor>,
    /// At most this many.
    pub limit: usize,
}

/// A position in a listing of the list (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionCursor {
    /// The last entry's `created_at`.
    pub created_at: OffsetDateTime,
    /// The last entry's address.
    pub address: String,
}

/// One page of the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuppressionPage {
    /// The entries, newest first (lapsed ones left out).
    pub entries: Vec<Suppression>,
    /// Where the next page starts, if there is one.
    pub next: Option<SuppressionCursor>,
}

/// What an attempt's failures add to the list by themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionPolicy {
    /// Permanent failures of these classes suppress their address.
    pub auto: Vec<BounceClass>,
    /// How long an automatic entry lasts; `None`: until removed.
    pub expire_after: Option<Duration>,
}

impl Default for SuppressionPolicy {
    /// A dead address (and only that) is suppressed, for good: policy,
    /// content, auth and network failures say nothing about the address.
    fn default() -> Self {
        Self {
            auto: vec![BounceClass::InvalidRecipient],
            expire_after: None,
        }
    }
}

impl SuppressionPolicy {
    /// No automatic entries at all.
    pub fn off() -> Self {
        Self {
            auto: Vec::new(),
            expire_after: None,
        }
    }

    /// Whether `result` puts its address on the list: a permanent failure
    /// (status failed) whose class is one of [`Self::auto`]. A deferral
    /// never does, whatever its class.
    pub fn suppresses(&self, result: &RecipientResult) -> bool {
        result.status == RecipientStatus::Failed
            && result.class.is_some_and(|class| self.auto.contains(&class))
    }

    /// The entry `result` makes for message `message` at `now`, if it
    /// makes one.
    pub fn entry_for(
        &self,
        result: &RecipientResult,
        message: &str,
        now: OffsetDateTime,
    ) -> Option<Suppression> {
        self.suppresses(result).then(|| Suppression {
            address: address_key(&result.address),
            reason: SuppressionReason::Bounce,
            message: Some(message.to_owned()),
            response: Some(reply_line(result)),
            created_at: now,
            expires_at: self.expire_after.map(|after| now + after),
        })
    }
}

/// The SMTP reply of a result in one line: `550 5.1.1 user unknown`.
pub fn reply_line(result: &RecipientResult) -> String {
    [
        result.smtp_code.map(|c| c.to_string()),
        result.enhanced_code.clone(),
        result.response.clone(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ")
}

/// How an address is stored and compared: the local part as written (it
/// may be case-sensitive), the domain in lower case (it never is).
pub fn address_key(address: &str) -> String {
    let address = address.trim();
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_lowercase()),
        None => address.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn result(status: RecipientStatus, class: Option<BounceClass>) -> RecipientResult {
        RecipientResult {
            address: "Bob@Example.COM".to_owned(),
            status,
            smtp_code: Some(550),
            enhanced_code: Some("5.1.1".to_owned()),
            response: Some("user unknown".to_owned()),
            class,
        }
    }

    #[test]
    fn only_permanent_failures_of_configured_classes_suppress() {
        let policy = SuppressionPolicy::default();
        let cases = [
            (
                RecipientStatus::Failed,
                Some(BounceClass::InvalidRecipient),
                true,
            ),
            (
                RecipientStatus::Deferred,
                Some(BounceClass::InvalidRecipient),
                false,
            ),
            (RecipientStatus::Failed, Some(BounceClass::Policy), false),
            (RecipientStatus::Failed, Some(BounceClass::Message), false),
            (RecipientStatus::Failed, Some(BounceClass::Auth), false),
            (RecipientStatus::Failed, Some(BounceClass::Network), false),
            (RecipientStatus::Failed, None, false),
            (RecipientStatus::Delivered, None, false),
        ];
        for (status, class, expected) in cases {
            assert_eq!(
                policy.suppresses(&result(status, class)),
                expected,
                "{status} {class:?}"
            );
        }
        let off = SuppressionPolicy::off();
        assert!(!off.suppresses(&result(
            RecipientStatus::Failed,
            Some(BounceClass::InvalidRecipient)
        )));
    }

    #[test]
    fn an_automatic_entry_keeps_the_reply_and_expires_as_configured() {
        let now = datetime!(2030-01-01 00:00 UTC);
        let policy = SuppressionPolicy {
            expire_after: Some(Duration::from_secs(3600)),
            ..SuppressionPolicy::default()
        };
        let failed = result(RecipientStatus::Failed, Some(BounceClass::InvalidRecipient));
        let entry = policy.entry_for(&failed, "01M", now);
        assert_eq!(
            entry,
            Some(Suppression {
                address: "Bob@example.com".to_owned(),
                reason: SuppressionReason::Bounce,
                message: Some("01M".to_owned()),
                response: Some("550 5.1.1 user unknown".to_owned()),
                created_at: now,
                expires_at: Some(datetime!(2030-01-01 01:00 UTC)),
            })
        );
        let entry = entry.unwrap_or_else(|| unreachable!());
        assert!(entry.is_active(datetime!(2030-01-01 00:59:59 UTC)));
        assert!(!entry.is_active(datetime!(2030-01-01 01:00 UTC)));
    }

    #[test]
    fn the_domain_is_compared_without_case_the_local_part_as_written() {
        assert_eq!(address_key(" Bob@Example.COM "), "Bob@example.com");
        assert_eq!(address_key("a@b@C.org"), "a@b@c.org");
        assert_ne!(address_key("Bob@x.org"), address_key("bob@x.org"));
    }
}
