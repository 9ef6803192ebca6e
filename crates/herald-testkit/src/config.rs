//! How a test scripts the server: the knobs of [`ServerConfig`] and the
//! phase-wide [`Fault`]s. Kept apart from the protocol code so a test author
//! can read every option, and its default, in one place.

use std::fmt;
use std::time::Duration;

use crate::tokens::TokenBook;

/// How TLS is offered to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain text only; STARTTLS is not advertised.
    #[default]
    None,
    /// Plain text first; STARTTLS is advertised until TLS is active.
    StartTls,
    /// TLS from the first byte (port-465 style "implicit TLS").
    Implicit,
}

/// Account the server accepts for AUTH.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name (authcid for PLAIN, the `user=` for XOAUTH2).
    pub username: String,
    /// The password for PLAIN and LOGIN.
    pub password: String,
    /// The bearer token accepted by XOAUTH2; when set, XOAUTH2 is advertised.
    pub xoauth2_token: Option<String>,
    /// Bearer tokens granted while the server runs, each until it
    /// expires; when set, XOAUTH2 is advertised.
    pub xoauth2_tokens: Option<TokenBook>,
}

impl Credentials {
    /// Credentials for PLAIN and LOGIN, without XOAUTH2.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
            xoauth2_token: None,
            xoauth2_tokens: None,
        }
    }

    /// The same credentials, also accepting XOAUTH2 with this bearer token.
    pub fn with_xoauth2_token(mut self, token: impl Into<String>) -> Self {
        self.xoauth2_token = Some(token.into());
        self
    }

    /// The same credentials, also accepting XOAUTH2 with any token that
    /// `book` holds and that has not expired. A refused token gets
    /// Gmail's answer: a 334 with a JSON error, then `535 5.7.8`.
    pub fn with_xoauth2_tokens(mut self, book: TokenBook) -> Self {
        self.xoauth2_tokens = Some(book);
        self
    }
}

// Secrets stay out of test output even in a failing assertion's Debug dump.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"***")
            .field("xoauth2_token", &self.xoauth2_token.as_ref().map(|_| "***"))
            .field("xoauth2_tokens", &self.xoauth2_tokens)
            .finish()
    }
}

/// A point in the SMTP dialogue where a [`FaultRule`] can strike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The 220 greeting sent when the connection opens.
    Banner,
    /// The reply to EHLO or HELO.
    Ehlo,
    /// The reply to STARTTLS.
    StartTls,
    /// The final reply of an AUTH exchange (after any 334 continuations).
    Auth,
    /// The reply to MAIL FROM.
    Mail,
    /// The reply to RCPT TO.
    Rcpt,
    /// The reply to the DATA command (normally 354).
    Data,
    /// The reply after the final dot of the message body.
    DataDot,
    /// The reply to RSET.
    Rset,
    /// The reply to QUIT.
    Quit,
}

/// What the server does instead of answering normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Reply with this code and text (the text follows the code, e.g.
    /// `"4.7.1 try again later"`). A code of 400 or more means the command
    /// failed; 421 also closes the connection, as RFC 5321 says it must.
    Reply(u16, String),
    /// Send `421 4.4.2 closing connection` and close.
    Disconnect421,
    /// Close the socket without a word.
    Close,
    /// Never answer; keep reading and discarding until the client gives up.
    Stall,
    /// Answer normally, but only after this delay.
    Delay(Duration),
    /// For [`Phase::DataDot`]: accept DATA, then close the socket after the
    /// first chunk of the body arrives, before the final dot. Elsewhere it
    /// acts like [`Fault::Close`].
    DropMidData,
}

/// A fault applied to every command of one phase, on every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// Where the fault strikes.
    pub phase: Phase,
    /// What happens there.
    pub fault: Fault,
    /// `None`: every time. `Some(n)`: the first `n` times (counted across all
    /// connections of this server), then the server behaves normally.
    pub times: Option<usize>,
}

impl FaultRule {
    /// A rule that fires every time the phase is reached.
    pub fn always(phase: Phase, fault: Fault) -> Self {
        Self {
            phase,
            fault,
            times: None,
        }
    }

    /// A rule that fires the first `n` times the phase is reached.
    pub fn times(phase: Phase, fault: Fault, n: usize) -> Self {
        Self {
            phase,
            fault,
            times: Some(n),
        }
    }
}

/// Everything a test can script about the server. Start from
/// `ServerConfig::default()` and override fields with struct-update syntax.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// TLS offering. Default: [`TlsMode::None`].
    pub tls: TlsMode,
    /// Refuse MAIL and AUTH with `530 5.7.0` until TLS is active. Default: false.
    pub require_tls: bool,
    /// Accept AUTH with these credentials; wrong ones get `535 5.7.8`.
    /// Default: `None` (AUTH not offered).
    pub auth: Option<Credentials>,
    /// Mechanisms to advertise (and accept) instead of the default
    /// `PLAIN LOGIN` (plus `XOAUTH2` when a token is set). Empty: the default.
    pub auth_mechanisms: Vec<String>,
    /// Refuse MAIL with `530 5.7.0` until AUTH succeeded. Default: false.
    pub require_auth: bool,
    /// Advertise AUTH before STARTTLS when `tls` is [`TlsMode::StartTls`].
    /// Default: false, as real submission servers do.
    pub advertise_auth_without_tls: bool,
    /// Advertise PIPELINING. Default: true.
    pub pipelining: bool,
    /// Advertise and accept SMTPUTF8. Default: true.
    pub smtputf8: bool,
    /// Advertise and accept 8BITMIME. Default: true.
    pub eight_bit_mime: bool,
    /// Advertise ENHANCEDSTATUSCODES and put enhanced codes in replies. Default: true.
    pub enhanced_status_codes: bool,
    /// Advertise `SIZE n`; MAIL with a larger `SIZE=` and bodies larger than
    /// `n` get `552 5.3.4`. Default: `None` (SIZE not advertised).
    pub size_limit: Option<usize>,
    /// When false, EHLO gets `502 5.5.1` so the client must fall back to HELO.
    /// Default: true.
    pub ehlo_supported: bool,
    /// Text of the 220 greeting. Default: `"localhost ESMTP herald-testkit"`.
    pub banner: String,
    /// Name in the EHLO/HELO reply. Default: `"localhost"`.
    pub hostname: String,
    /// Delay every reply by this much ("slow server"). Default: `None`.
    pub reply_delay: Option<Duration>,
    /// Phase-wide faults; the first rule for a phase with firings left wins,
    /// and it takes precedence over faults chosen by recipient address.
    pub faults: Vec<FaultRule>,
    /// `(p, fault, seed)`: each RCPT (without an address-scripted fault)
    /// gets `fault` with probability `p`, drawn from a `StdRng` seeded with
    /// `seed`. For load tests. Default: `None`.
    pub fault_probability: Option<(f64, Fault, u64)>,
    /// After this many accepted messages on one connection, the next MAIL
    /// gets `421 4.7.0` and the connection closes. Default: `None`.
    pub max_messages_per_connection: Option<usize>,
    /// Keep message bodies in [`ReceivedMessage::data`](crate::ReceivedMessage::data).
    /// Benchmarks turn this off; messages are still counted and their
    /// envelopes recorded. Default: true.
    pub record_data: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            tls: TlsMode::None,
            require_tls: false,
            auth: None,
            auth_mechanisms: Vec::new(),
            require_auth: false,
            advertise_auth_without_tls: false,
            pipelining: true,
            smtputf8: true,
            eight_bit_mime: true,
            enhanced_status_codes: true,
            size_limit: None,
            ehlo_supported: true,
            banner: "localhost ESMTP herald-testkit".to_owned(),
            hostname: "localhost".to_owned(),
            reply_delay: None,
            faults: Vec::new(),
            fault_probability: None,
            max_messages_per_connection: None,
            record_data: true,
        }
    }
}

impl ServerConfig {
    /// The SASL mechanisms this configuration advertises and accepts,
    /// upper-cased; empty when AUTH is off.
    pub fn effective_auth_mechanisms(&self) -> Vec<String> {
        let Some(creds) = &self.auth else {
            return Vec::new();
        };
        if !self.auth_mechanisms.is_empty() {
            return self
                .auth_mechanisms
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect();
        }
        let mut mechs = vec!["PLAIN".to_owned(), "LOGIN".to_owned()];
        if creds.xoauth2_token.is_some() || creds.xoauth2_tokens.is_some() {
            mechs.push("XOAUTH2".to_owned());
        }
        mechs
    }
}
