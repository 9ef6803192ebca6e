//! Bounce classes: what a failed or deferred recipient's reply means for
//! the sender (a dead address, a full mailbox, a policy block, throttling…),
//! decided from the SMTP code, the enhanced code and the reply text by an
//! ordered table of rules ([`RULES`]) that a maintainer extends by adding a
//! line. Pure: the same reply always gets the same class.
//!
//! The table is Rust, not a data file read at start: a rule with a typo in
//! its class or code range does not compile, and nothing can fail to parse
//! at run time.

use std::fmt;
use std::str::FromStr;

/// What a failure says about the recipient, the message or the sender.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum BounceClass {
    /// No such mailbox or domain (5.1.x): the address is dead.
    InvalidRecipient,
    /// The mailbox is over quota (4.2.2 / 5.2.2).
    MailboxFull,
    /// Refused by the receiver's policy (5.7.x): spam, reputation, sender
    /// authentication, relaying denied. Says nothing about the address.
    Policy,
    /// The message itself: content, headers, size (5.6.x, 5.3.4, 5.2.3).
    Message,
    /// Throttled: too much, too fast (4.7.x, 421/450/451 with such text).
    RateLimited,
    /// Connecting, TLS or a timeout failed; no reply about the recipient.
    Network,
    /// The relay refused our credentials (535, 530).
    Auth,
    /// Anything else.
    Other,
}

impl BounceClass {
    /// Every class.
    pub const ALL: [Self; 8] = [
        Self::InvalidRecipient,
        Self::MailboxFull,
        Self::Policy,
        Self::Message,
        Self::RateLimited,
        Self::Network,
        Self::Auth,
        Self::Other,
    ];

    /// The name in the API, the database, logs, metrics and webhooks.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRecipient => "invalid_recipient",
            Self::MailboxFull => "mailbox_full",
            Self::Policy => "policy",
            Self::Message => "message",
            Self::RateLimited => "rate_limited",
            Self::Network => "network",
            Self::Auth => "auth",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for BounceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BounceClass {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|class| class.as_str() == s)
            .ok_or_else(|| format!("unknown bounce class {s:?}"))
    }
}

/// One line of the table: every condition given must hold.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Reply codes it applies to, inclusive.
    pub codes: (u16, u16),
    /// An enhanced-code pattern, compared part by part: `5.1.1`, `5.7`
    /// (any detail), `x.2.2` (either class). Empty: any, or none at all.
    pub enhanced: &'static str,
    /// Lower-case fragments, any of which the reply text must contain.
    /// Empty: any text.
    pub text: &'static [&'static str],
    /// The class it gives.
    pub class: BounceClass,
}

const ANY: (u16, u16) = (200, 599);
const TEMP: (u16, u16) = (400, 499);

const fn text(text: &'static [&'static str], class: BounceClass) -> Rule {
    Rule {
        codes: ANY,
        enhanced: "",
        text,
        class,
    }
}

const fn temp_text(text: &'static [&'static str], class: BounceClass) -> Rule {
    Rule {
        codes: TEMP,
        enhanced: "",
        text,
        class,
    }
}

const fn enhanced(enhanced: &'static str, class: BounceClass) -> Rule {
    Rule {
        codes: ANY,
        enhanced,
        text: &[],
        class,
    }
}

const fn code(low: u16, high: u16, class: BounceClass) -> Rule {
    Rule {
        codes: (low, high),
        enhanced: "",
        text: &[],
        class,
    }
}

use BounceClass::{
    Auth, InvalidRecipient, MailboxFull, Message, Network, Other, Policy, RateLimited,
};

/// The rules, first match wins: the words of a reply first (providers
/// reuse codes loosely: Gmail says "receiving mail at a rate" with 5.2.1,
/// Yandex "no such user" with 5.7.1), then enhanced codes, then plain
/// reply codes. Add a line where it belongs, and a row to the test table.
pub const RULES: &[Rule] = &[
    // Encryption and connection trouble, whatever the code.
    text(
        &[
            "starttls",
            "tls connection",
            "tls required",
            "timeout",
            "timed out",
            "connection expired",
        ],
        Network,
    ),
    // Our credentials.
    code(534, 535, Auth),
    code(530, 530, Auth),
    text(
        &[
            "login attempts",
            "authorization required",
            "user has no permission",
        ],
        Auth,
    ),
    // Words that make a throttling-looking reply a policy one.
    text(&["unauthenticated", "ptr record"], Policy),
    // Throttling.
    temp_text(&["low reputation", "unusual rate"], RateLimited),
    text(
        &[
            "receiving mail at a rate",
            "receiving email at a rate",
            "too quickly",
            "too many recipients",
            "sending limit",
            "frequency limited",
            "exceeded their limit",
            "rate limit",
            "excessive volume",
            "unexpected volume",
            "concurrent",
            "connection limit",
            "thread limit",
            "queue quota",
            "max message per connection",
        ],
        RateLimited,
    ),
    // A full mailbox.
    text(
        &[
            "over quota",
            "overquota",
            "quota exceeded",
            "out of storage",
            "mailbox size limit",
            "mailbox is full",
            "mailbox full",
        ],
        MailboxFull,
    ),
    // Words about the sender before those about the recipient.
    text(&["sender address", "sender verify"], Policy),
    // A dead address.
    text(
        &[
            "does not exist",
            "doesn't exist",
            "no such user",
            "user unknown",
            "unknown user",
            "user not found",
            "mailbox not found",
            "recipient not found",
            "mailbox unavailable",
            "invalid mailbox",
            "no longer valid",
            "no longer on server",
            "mailbox is disabled",
            "account is disabled",
            "inactive email address",
            "user doesn't have",
            "illegal alias",
            "bad address syntax",
            "not a valid rfc 5321 address",
            "recipient address rejected: access denied",
        ],
        InvalidRecipient,
    ),
    // The message itself.
    text(
        &[
            "multiple addresses in",
            "message-id",
            "disallowed header",
            "not rfc compliant",
            "virus",
            "attachment",
            "security issue",
            "malformed",
        ],
        Message,
    ),
    // Not throttling, not policy: the receiver is unwell.
    text(&["too many errors", "currently unavailable"], Other),
    // The receiver's policy.
    text(
        &[
            "policy",
            "spam",
            "block",
            "blacklist",
            "dmarc",
            "relay",
            "reputation",
            "ptr record",
            "reverse hostname",
            "client host rejected",
            "helo command rejected",
            "greylist",
            "suspicious",
            "unresolvable",
            "local user only",
            "rejected by recipients",
            "rejected by destination",
            "content denied",
            "not accepting connections",
        ],
        Policy,
    ),
    // Enhanced codes (RFC 3463).
    enhanced("x.1.7", Policy),
    enhanced("x.1.8", Policy),
    enhanced("x.1.1", InvalidRecipient),
    enhanced("x.1.2", InvalidRecipient),
    enhanced("x.1.3", InvalidRecipient),
    enhanced("x.1.6", InvalidRecipient),
    enhanced("x.1.10", InvalidRecipient),
    enhanced("x.2.1", InvalidRecipient),
    enhanced("x.2.2", MailboxFull),
    enhanced("x.2.3", Message),
    enhanced("x.3.4", Message),
    enhanced("x.6", Message),
    enhanced("x.4.2", Network),
    enhanced("4.7", RateLimited),
    enhanced("5.7", Policy),
];

/// The class of a reply: its `code`, its enhanced code (`5.1.1`) if the
/// server gave one, and its text. A positive reply is [`BounceClass::Other`].
pub fn classify(code: u16, enhanced: Option<&str>, text: &str) -> BounceClass {
    classify_with(RULES, code, enhanced, text)
}

/// [`classify`] with another table (for tests of a table being extended).
pub fn classify_with(rules: &[Rule], code: u16, enhanced: Option<&str>, text: &str) -> BounceClass {
    let lower = text.to_lowercase();
    rules
        .iter()
        .find(|rule| {
            (rule.codes.0..=rule.codes.1).contains(&code)
                && enhanced_matches(rule.enhanced, enhanced)
                && (rule.text.is_empty() || rule.text.iter().any(|t| lower.contains(t)))
        })
        .map_or(BounceClass::Other, |rule| rule.class)
}

/// Whether `code` matches `pattern` part by part (`x` matches any class;
/// missing parts of the pattern match anything).
fn enhanced_matches(pattern: &str, code: Option<&str>) -> bool {
    if pattern.is_empty() {
        return true;
    }
    let Some(code) = code else {
        return false;
    };
    let mut parts = code.split('.');
    pattern
        .split('.')
        .all(|want| parts.next().is_some_and(|got| want == "x" || want == got))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_patterns_compare_whole_parts() {
        assert!(enhanced_matches("x.1.1", Some("5.1.1")));
        assert!(enhanced_matches("x.1.1", Some("4.1.1")));
        assert!(!enhanced_matches("x.1.1", Some("5.1.10")));
        assert!(enhanced_matches("5.7", Some("5.7.509")));
        assert!(!enhanced_matches("5.7", Some("4.7.1")));
        assert!(!enhanced_matches("x.6", None));
        assert!(enhanced_matches("", None));
    }

    #[test]
    fn names_round_trip() {
        for class in BounceClass::ALL {
            assert_eq!(class.as_str().parse::<BounceClass>(), Ok(class));
        }
    }
}
