//! Errors that classify themselves. Retry code asks an error whether it is
//! transient or permanent and whose fault it was (the connection's, the
//! message's or one recipient's); it never matches on text.

use std::fmt;
use std::time::Duration;

use crate::reply::{EnhancedCode, Reply};

/// Where in the session something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Opening the TCP connection.
    Connect,
    /// The implicit-TLS handshake (port 465).
    TlsHandshake,
    /// Waiting for the 220 greeting.
    Banner,
    /// EHLO / HELO.
    Ehlo,
    /// STARTTLS and its handshake.
    StartTls,
    /// AUTH.
    Auth,
    /// MAIL FROM (and RSET before it on a reused connection).
    Mail,
    /// RCPT TO.
    Rcpt,
    /// The DATA command, up to 354.
    Data,
    /// Sending the body and waiting for the reply to the final dot.
    DataDot,
    /// QUIT, RSET or NOOP outside a transaction.
    Other,
}

impl Phase {
    /// A short lower-case name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::TlsHandshake => "tls",
            Self::Banner => "banner",
            Self::Ehlo => "ehlo",
            Self::StartTls => "starttls",
            Self::Auth => "auth",
            Self::Mail => "mail",
            Self::Rcpt => "rcpt",
            Self::Data => "data",
            Self::DataDot => "data-dot",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whose fault a failure is, which decides what to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The connection or the relay: try the message again, on another
    /// connection or later. Other messages are affected too.
    Connection,
    /// This message (its sender, size, or content): other messages on the
    /// same connection are fine.
    Message,
    /// One recipient: the others may still be delivered.
    Recipient,
}

/// What kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The server answered with a negative reply (see [`Error::reply`]).
    Rejected,
    /// A phase did not finish within its timeout.
    Timeout,
    /// TCP connect failed, or the connection broke.
    Network,
    /// The TLS handshake or certificate verification failed.
    Tls,
    /// STARTTLS was required but the server did not offer it.
    TlsUnavailable,
    /// The server's bytes were not SMTP.
    Protocol,
    /// The relay refused our credentials.
    AuthFailed,
    /// AUTH is configured but cannot be done: no common mechanism, the
    /// server offers none, or the connection is not encrypted.
    AuthUnavailable,
    /// The message is larger than the server's SIZE limit.
    MessageTooLarge,
    /// The message needs SMTPUTF8, which the server does not offer.
    Smtputf8Unavailable,
    /// The caller cancelled the send, or its deadline passed.
    Cancelled,
}

/// A failure, with everything retry code and operators need to know.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    phase: Phase,
    reply: Option<Reply>,
    detail: String,
    ambiguous: bool,
    /// For a token that could not be had: whether the token endpoint's
    /// fault may pass.
    token_transient: bool,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, phase: Phase, detail: impl Into<String>) -> Self {
        Self {
            kind,
            phase,
            reply: None,
            detail: detail.into(),
            ambiguous: false,
            token_transient: false,
        }
    }

    /// AUTH could not start: the XOAUTH2 token source had no token. An
    /// authentication failure of the relay (the operator's to fix when
    /// permanent, such as a revoked refresh token), with no reply.
    pub(crate) fn token(error: &crate::token::TokenError) -> Self {
        Self {
            token_transient: error.is_transient(),
            ..Self::new(
                ErrorKind::AuthFailed,
                Phase::Auth,
                format!("no OAuth 2.0 access token: {error}"),
            )
        }
    }

    /// Marks a failure that came after the whole message, final dot
    /// included, was written: the server may have accepted it.
    pub(crate) fn after_final_dot(mut self) -> Self {
        self.ambiguous = true;
        self
    }

    /// Whether the relay may have accepted the message anyway: the final
    /// dot was sent and its reply never came (a timeout, a dropped
    /// connection, garbage, a cancel). Sending the message elsewhere now
    /// could deliver it twice; RFC 5321 §6.1 and every MTA treat this as
    /// "try again later", and a receiver that did accept it will see the
    /// same Message-ID again at worst.
    pub fn is_ambiguous(&self) -> bool {
        self.ambiguous
    }

    pub(crate) fn rejected(phase: Phase, reply: Reply) -> Self {
        let kind = match (phase, reply.code()) {
            (Phase::Auth, 535 | 534 | 530) => ErrorKind::AuthFailed,
            _ => ErrorKind::Rejected,
        };
        Self {
            kind,
            phase,
            detail: String::new(),
            reply: Some(reply),
            ambiguous: false,
            token_transient: false,
        }
    }

    pub(crate) fn timeout(phase: Phase, after: Duration) -> Self {
        Self::new(
            ErrorKind::Timeout,
            phase,
            format!("no answer within {}", humanize(after)),
        )
    }

    pub(crate) fn network(phase: Phase, error: &std::io::Error) -> Self {
        Self::new(ErrorKind::Network, phase, error.to_string())
    }

    /// What kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The phase it happened in.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The server's reply, when the failure is a negative reply.
    pub fn reply(&self) -> Option<&Reply> {
        self.reply.as_ref()
    }

    /// The SMTP reply code, when there was a reply.
    pub fn smtp_code(&self) -> Option<u16> {
        self.reply.as_ref().map(Reply::code)
    }

    /// The enhanced status code, when the server gave one.
    pub fn enhanced_code(&self) -> Option<EnhancedCode> {
        self.reply.as_ref().and_then(Reply::enhanced_code)
    }

    /// Whether trying again later may succeed: 4xx replies, timeouts,
    /// network and TLS faults, a missing STARTTLS (a downgrade may be
    /// an attack in progress, not a fact about the relay), 454 during AUTH.
    pub fn is_transient(&self) -> bool {
        match self.kind {
            ErrorKind::Rejected | ErrorKind::AuthFailed => self
                .reply
                .as_ref()
                .map_or(self.token_transient, Reply::is_transient),
            ErrorKind::Timeout
            | ErrorKind::Network
            | ErrorKind::Tls
            | ErrorKind::TlsUnavailable
            | ErrorKind::Protocol => true,
            ErrorKind::AuthUnavailable
            | ErrorKind::MessageTooLarge
            | ErrorKind::Smtputf8Unavailable
            | ErrorKind::Cancelled => false,
        }
    }

    /// Whether trying again cannot help: 5xx replies, 535 bad credentials,
    /// a message too large, a mechanism or extension the relay lacks.
    /// Cancellation is neither transient nor permanent.
    pub fn is_permanent(&self) -> bool {
        !self.is_transient() && self.kind != ErrorKind::Cancelled
    }

    /// Whether a phase timed out.
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }

    /// Whether the connection must be closed and not reused.
    pub fn closes_connection(&self) -> bool {
        self.scope() == Scope::Connection || self.smtp_code() == Some(421)
    }

    /// Whose fault it is. 421 is always the connection's (the server is
    /// closing the channel); a rejected RCPT is the recipient's; MAIL, DATA
    /// and the final dot are the message's; anything before MAIL, and every
    /// network, TLS, protocol and timeout fault, is the connection's.
    pub fn scope(&self) -> Scope {
        if self.smtp_code() == Some(421) {
            return Scope::Connection;
        }
        match self.kind {
            ErrorKind::Rejected => match self.phase {
                Phase::Rcpt => Scope::Recipient,
                Phase::Mail | Phase::Data | Phase::DataDot => Scope::Message,
                _ => Scope::Connection,
            },
            ErrorKind::MessageTooLarge | ErrorKind::Smtputf8Unavailable => Scope::Message,
            _ => Scope::Connection,
        }
    }

    /// A stable one-word class for logs and metrics: `transient`,
    /// `permanent` or `cancelled`.
    pub fn classification(&self) -> &'static str {
        if self.kind == ErrorKind::Cancelled {
            "cancelled"
        } else if self.is_transient() {
            "transient"
        } else {
            "permanent"
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::Rejected => "rejected",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Network => "network error",
            ErrorKind::Tls => "TLS error",
            ErrorKind::TlsUnavailable => "STARTTLS not offered",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::AuthFailed => "authentication failed",
            ErrorKind::AuthUnavailable => "authentication unavailable",
            ErrorKind::MessageTooLarge => "message too large",
            ErrorKind::Smtputf8Unavailable => "SMTPUTF8 not offered",
            ErrorKind::Cancelled => "cancelled",
        };
        write!(f, "{} {what}", self.phase)?;
        if let Some(reply) = &self.reply {
            write!(f, ": {reply}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16) -> Reply {
        Reply::new(code, None, "x")
    }

    #[test]
    fn replies_classify_by_code_and_phase() {
        // (phase, code, transient, permanent, scope)
        let table = [
            (Phase::Rcpt, 451, true, false, Scope::Recipient),
            (Phase::Rcpt, 550, false, true, Scope::Recipient),
            (Phase::Rcpt, 421, true, false, Scope::Connection),
            (Phase::Mail, 452, true, false, Scope::Message),
            (Phase::Mail, 553, false, true, Scope::Message),
            (Phase::DataDot, 554, false, true, Scope::Message),
            (Phase::DataDot, 451, true, false, Scope::Message),
            (Phase::Banner, 554, false, true, Scope::Connection),
            (Phase::Ehlo, 421, true, false, Scope::Connection),
            (Phase::Auth, 535, false, true, Scope::Connection),
            (Phase::Auth, 454, true, false, Scope::Connection),
        ];
        for (phase, code, transient, permanent, scope) in table {
            let e = Error::rejected(phase, reply(code));
            assert_eq!(e.is_transient(), transient, "{phase} {code}");
            assert_eq!(e.is_permanent(), permanent, "{phase} {code}");
            assert_eq!(e.scope(), scope, "{phase} {code}");
            assert_eq!(e.smtp_code(), Some(code));
        }
        assert_eq!(
            Error::rejected(Phase::Auth, reply(535)).kind(),
            ErrorKind::AuthFailed
        );
        assert!(Error::rejected(Phase::Rcpt, reply(421)).closes_connection());
        assert!(!Error::rejected(Phase::Rcpt, reply(550)).closes_connection());
    }

    #[test]
    fn faults_without_replies_classify_by_kind() {
        let t = Error::timeout(Phase::Rcpt, Duration::from_millis(1500));
        assert!(t.is_transient() && t.is_timeout() && t.closes_connection());
        assert_eq!(t.to_string(), "rcpt timed out: no answer within 1500ms");
        let n = Error::new(ErrorKind::Network, Phase::Connect, "refused");
        assert!(n.is_transient() && n.scope() == Scope::Connection);
        let big = Error::new(ErrorKind::MessageTooLarge, Phase::Mail, "x");
        assert!(big.is_permanent() && big.scope() == Scope::Message);
        let c = Error::new(ErrorKind::Cancelled, Phase::Mail, "x");
        assert!(!c.is_transient() && !c.is_permanent());
        assert_eq!(c.classification(), "cancelled");
    }
}
