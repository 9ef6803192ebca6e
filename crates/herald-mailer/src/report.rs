//! What one send came to, recipient by recipient.

use std::fmt;

use herald_policy::GiveUpReason;
use herald_smtp::{EnhancedCode, Error as SmtpError, Reply};

/// The answer to one send.
#[derive(Debug, Clone)]
pub struct Report {
    /// The Message-ID the message went out with, with angle brackets.
    pub message_id: String,
    /// Transactions tried in all.
    pub attempts: u32,
    /// One entry per envelope recipient, in the envelope's order.
    pub recipients: Vec<RecipientReport>,
}

impl Report {
    /// Whether every recipient was delivered.
    pub fn all_delivered(&self) -> bool {
        self.recipients
            .iter()
            .all(|r| matches!(r.outcome, Outcome::Delivered(_)))
    }

    /// The entry of `address` (compared as given in the envelope).
    pub fn recipient(&self, address: &str) -> Option<&RecipientReport> {
        self.recipients.iter().find(|r| r.address == address)
    }
}

/// What happened to one recipient.
#[derive(Debug, Clone)]
pub struct RecipientReport {
    /// The address, as in the envelope.
    pub address: String,
    /// Attempts that included this recipient.
    pub attempts: u32,
    /// How it ended.
    pub outcome: Outcome,
}

impl RecipientReport {
    /// The relay's last reply about this recipient: its acceptance, or the
    /// refusal (none when no reply came: a network fault or a timeout).
    pub fn reply(&self) -> Option<&Reply> {
        match &self.outcome {
            Outcome::Delivered(reply) => Some(reply),
            Outcome::Refused(error)
            | Outcome::GaveUp { last: error, .. }
            | Outcome::Ambiguous(error) => error.reply(),
        }
    }

    /// The last SMTP code, when the relay gave one.
    pub fn code(&self) -> Option<u16> {
        self.reply().map(Reply::code)
    }

    /// The last enhanced status code (RFC 3463), when the relay gave one.
    pub fn enhanced_code(&self) -> Option<EnhancedCode> {
        self.reply().and_then(Reply::enhanced_code)
    }

    /// Why it was not delivered (none when it was).
    pub fn error(&self) -> Option<&SmtpError> {
        match &self.outcome {
            Outcome::Delivered(_) => None,
            Outcome::Refused(error)
            | Outcome::GaveUp { last: error, .. }
            | Outcome::Ambiguous(error) => Some(error),
        }
    }
}

/// How a recipient ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The relay took responsibility for it: its reply to the final dot.
    Delivered(Reply),
    /// The relay refused it for good (a 5xx, or a failure that trying
    /// again cannot mend).
    Refused(SmtpError),
    /// Every attempt failed for now, and the retry policy said stop.
    GaveUp {
        /// Attempts used up, or the deadline reached.
        reason: GiveUpReason,
        /// The last failure.
        last: SmtpError,
    },
    /// The final dot was written and no answer came: the relay may have
    /// accepted the message. Not sent again (see [`OnAmbiguous`](crate::OnAmbiguous)).
    Ambiguous(SmtpError),
}

impl Outcome {
    /// The relay's last reply (`250 2.0.0 OK`, `550 5.1.1 user unknown`),
    /// or the failure in words when no reply came.
    pub fn detail(&self) -> String {
        match self {
            Self::Delivered(reply) => reply.to_string(),
            Self::Refused(error) | Self::GaveUp { last: error, .. } | Self::Ambiguous(error) => {
                describe(error)
            }
        }
    }

    /// One word: `delivered`, `refused`, `gave-up` or `ambiguous`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Delivered(_) => "delivered",
            Self::Refused(_) => "refused",
            Self::GaveUp { .. } => "gave-up",
            Self::Ambiguous(_) => "ambiguous",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Delivered(reply) => write!(f, "delivered: {reply}"),
            Self::Refused(error) => write!(f, "refused: {}", describe(error)),
            Self::GaveUp {
                reason: GiveUpReason::MaxAttempts,
                last,
            } => write!(f, "gave up (retries exhausted): {}", describe(last)),
            Self::GaveUp {
                reason: GiveUpReason::MaxAge,
                last,
            } => write!(f, "gave up (deadline reached): {}", describe(last)),
            Self::Ambiguous(error) => {
                write!(f, "ambiguous (may have been accepted): {}", describe(error))
            }
        }
    }
}

/// The relay's reply if there was one, else the error's own words.
pub(crate) fn describe(error: &SmtpError) -> String {
    match error.reply() {
        Some(reply) => reply.to_string(),
        None => error.to_string(),
    }
}
