//! The SMTP envelope: who the mail is from (MAIL FROM) and to whom it goes
//! (RCPT TO). Unlike headers, this is what servers actually route on, so it
//! can never be empty.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::address::EmailAddress;

/// Why an envelope could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// No recipient at all.
    #[error("no recipient")]
    NoRecipients,
}

/// A reverse-path and one or more forward-paths, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawEnvelope")]
pub struct Envelope {
    sender: Option<EmailAddress>,
    recipients: Vec<EmailAddress>,
}

#[derive(Deserialize)]
struct RawEnvelope {
    sender: Option<EmailAddress>,
    recipients: Vec<EmailAddress>,
}

impl TryFrom<RawEnvelope> for Envelope {
    type Error = EnvelopeError;

    fn try_from(raw: RawEnvelope) -> Result<Self, Self::Error> {
        Self::new(raw.sender, raw.recipients)
    }
}

impl Envelope {
    /// Builds an envelope. `sender` `None` is the null reverse-path `<>`
    /// (used for bounces). Recipients that name the same mailbox twice are
    /// kept once, in first-seen order; display names are dropped.
    pub fn new(
        sender: Option<EmailAddress>,
        recipients: impl IntoIterator<Item = EmailAddress>,
    ) -> Result<Self, EnvelopeError> {
        let mut seen = std::collections::HashSet::new();
        let recipients: Vec<_> = recipients
            .into_iter()
            .filter(|r| seen.insert(r.mailbox_key()))
            .map(|r| r.without_name())
            .collect();
        if recipients.is_empty() {
            return Err(EnvelopeError::NoRecipients);
        }
        Ok(Self {
            sender: sender.map(|s| s.without_name()),
            recipients,
        })
    }

    /// The reverse-path; `None` is `<>`.
    pub fn sender(&self) -> Option<&EmailAddress> {
        self.sender.as_ref()
    }

    /// The forward-paths, never empty.
    pub fn recipients(&self) -> &[EmailAddress] {
        &self.recipients
    }

    /// Whether any address needs the SMTPUTF8 extension.
    pub fn needs_smtputf8(&self) -> bool {
        self.sender
            .iter()
            .chain(&self.recipients)
            .any(EmailAddress::needs_smtputf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    #[test]
    fn an_envelope_cannot_be_empty() {
        assert_eq!(
            Envelope::new(Some(addr("a@example.com")), []),
            Err(EnvelopeError::NoRecipients)
        );
        let err = serde_json::from_str::<Envelope>(r#"{"sender":null,"recipients":[]}"#);
        assert!(err.unwrap_err().to_string().contains("no recipient"));
    }

    #[test]
    fn duplicates_are_sent_once_and_names_dropped() {
        let env = Envelope::new(
            Some(addr("Alice <a@example.com>")),
            [
                addr("Bob <bob@example.com>"),
                addr("carol@example.org"),
                addr("bob@EXAMPLE.com"),
            ],
        )
        .unwrap();
        let rcpts: Vec<_> = env.recipients().iter().map(|r| r.to_string()).collect();
        assert_eq!(rcpts, ["bob@example.com", "carol@example.org"]);
        assert_eq!(env.sender().unwrap().to_string(), "a@example.com");
        assert!(!env.needs_smtputf8());
    }
}
