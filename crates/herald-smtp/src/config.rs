//! How to reach one relay: address, TLS mode, credentials and the timeout
//! of every phase. Secrets live here, so `Debug` is written by hand.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::token::TokenSource;

/// How the connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// Plain text throughout. Credentials are refused unless
    /// [`ClientConfig::allow_insecure_auth`] is set.
    None,
    /// Upgrade with STARTTLS (port 587); fail if the server does not offer
    /// it — never fall back to plain text silently.
    StartTls,
    /// STARTTLS when offered, plain text otherwise (for relays on a trusted
    /// network; never with credentials unless insecure AUTH is allowed).
    Opportunistic,
    /// TLS from the first byte (port 465, "SMTPS").
    Implicit,
}

impl TlsMode {
    /// The lower-case name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::StartTls => "starttls",
            Self::Opportunistic => "opportunistic",
            Self::Implicit => "implicit",
        }
    }
}

impl std::str::FromStr for TlsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "starttls" => Ok(Self::StartTls),
            "opportunistic" => Ok(Self::Opportunistic),
            "implicit" => Ok(Self::Implicit),
            other => Err(format!(
                "unknown TLS mode {other:?} (none, starttls, opportunistic, implicit)"
            )),
        }
    }
}

/// An AUTH mechanism herald can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// The widespread non-standard LOGIN exchange.
    Login,
    /// Google/Microsoft OAuth 2.0 bearer tokens.
    Xoauth2,
}

impl Mechanism {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Login => "LOGIN",
            Self::Xoauth2 => "XOAUTH2",
        }
    }
}

/// What to authenticate with.
#[derive(Clone)]
pub enum Secret {
    /// A password (PLAIN or LOGIN).
    Password(String),
    /// An OAuth 2.0 access token (XOAUTH2), fixed: it works until it
    /// expires.
    OAuth2Token(String),
    /// OAuth 2.0 access tokens (XOAUTH2) asked from a source at each AUTH,
    /// which refreshes them; a refused token is handed back to the source
    /// and AUTH is tried once more with a new one.
    OAuth2Source(Arc<dyn TokenSource>),
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Password(a), Self::Password(b))
            | (Self::OAuth2Token(a), Self::OAuth2Token(b)) => a == b,
            (Self::OAuth2Source(a), Self::OAuth2Source(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Secret {}

/// Relay credentials. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub secret: Secret,
    /// Force one mechanism; by default the best one both sides offer.
    pub mechanism: Option<Mechanism>,
}

impl Credentials {
    /// Username and password.
    pub fn password(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            secret: Secret::Password(password.into()),
            mechanism: None,
        }
    }

    /// Username and OAuth 2.0 access token.
    pub fn oauth2(username: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            secret: Secret::OAuth2Token(token.into()),
            mechanism: None,
        }
    }

    /// Username and a source of OAuth 2.0 access tokens that refreshes
    /// them.
    pub fn oauth2_source(username: impl Into<String>, source: Arc<dyn TokenSource>) -> Self {
        Self {
            username: username.into(),
            secret: Secret::OAuth2Source(source),
            mechanism: None,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = match self.secret {
            Secret::Password(_) => "password: ***",
            Secret::OAuth2Token(_) => "oauth2 token: ***",
            Secret::OAuth2Source(_) => "oauth2 token source: ***",
        };
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &format_args!("{secret}"))
            .field("mechanism", &self.mechanism)
            .finish()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The timeout of each phase. Defaults follow RFC 5321 section 4.5.3.2
/// where it gives one, and are shorter where a relay that slow is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect (default 30 s).
    pub connect: Duration,
    /// TLS handshake, implicit or after STARTTLS (default 30 s).
    pub tls: Duration,
    /// The 220 greeting (default 5 min).
    pub banner: Duration,
    /// EHLO/HELO, STARTTLS, AUTH, RSET, NOOP, QUIT (default 5 min).
    pub command: Duration,
    /// MAIL FROM (default 5 min).
    pub mail: Duration,
    /// Each RCPT TO (default 5 min).
    pub rcpt: Duration,
    /// DATA up to 354 (default 2 min).
    pub data: Duration,
    /// Sending the body and the reply to the final dot (default 10 min).
    pub data_dot: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(30),
            tls: Duration::from_secs(30),
            banner: Duration::from_secs(300),
            command: Duration::from_secs(300),
            mail: Duration::from_secs(300),
            rcpt: Duration::from_secs(300),
            data: Duration::from_secs(120),
            data_dot: Duration::from_secs(600),
        }
    }
}

impl Timeouts {
    /// The three settings operators think in, spread over the phases:
    /// `connect` for TCP and the TLS handshake; `command` for the greeting
    /// and every command up to DATA's 354; `data` for the body and the
    /// final reply. `None` keeps the phase's current value.
    pub fn with_settings(
        mut self,
        connect: Option<Duration>,
        command: Option<Duration>,
        data: Option<Duration>,
    ) -> Self {
        if let Some(d) = connect {
            self.connect = d;
            self.tls = d;
        }
        if let Some(d) = command {
            self.banner = d;
            self.command = d;
            self.mail = d;
            self.rcpt = d;
            self.data = d;
        }
        if let Some(d) = data {
            self.data_dot = d;
        }
        self
    }

    /// Every phase with the same timeout (handy in tests).
    pub fn uniform(d: Duration) -> Self {
        Self {
            connect: d,
            tls: d,
            banner: d,
            command: d,
            mail: d,
            rcpt: d,
            data: d,
            data_dot: d,
        }
    }
}

/// Everything needed to open a session with one relay.
#[derive(Clone)]
pub struct ClientConfig {
    /// Host name or IP address to connect to; also the TLS server name.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// How to encrypt.
    pub tls: TlsMode,
    /// Trust anchors and TLS settings (see [`crate::tls::TlsTrust`]).
    pub tls_config: Arc<rustls::ClientConfig>,
    /// Credentials, if the relay wants them.
    pub credentials: Option<Credentials>,
    /// Allow AUTH over an unencrypted connection (off by default: it would
    /// send the password in clear).
    pub allow_insecure_auth: bool,
    /// The name we give in EHLO.
    pub helo_name: String,
    /// Per-phase timeouts.
    pub timeouts: Timeouts,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("credentials", &self.credentials)
            .field("allow_insecure_auth", &self.allow_insecure_auth)
            .field("helo_name", &self.helo_name)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// A configuration with default timeouts, the system's trust roots and
    /// this machine's host name for EHLO.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        tls: TlsMode,
        tls_config: Arc<rustls::ClientConfig>,
    ) -> Self {
        Self {
            host: host.into(),
            port,
            tls,
            tls_config,
            credentials: None,
            allow_insecure_auth: false,
            helo_name: default_helo_name(),
            timeouts: Timeouts::default(),
        }
    }
}

/// This machine's name, for EHLO; `localhost` when it has none usable.
pub fn default_helo_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        })
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials::password("alice", "hunter2-secret");
        let shown = format!("{c:?}");
        assert!(shown.contains("alice"));
        assert!(!shown.contains("hunter2"), "{shown}");
        let t = Credentials::oauth2("bob", "ya29.token-secret");
        assert!(!format!("{t:?}").contains("ya29"));
        assert!(!format!("{:?}", t.secret).contains("ya29"));
    }

    #[test]
    fn tls_modes_parse_by_name() {
        assert_eq!("implicit".parse::<TlsMode>(), Ok(TlsMode::Implicit));
        assert!(
            "ssl"
                .parse::<TlsMode>()
                .unwrap_err()
                .contains("unknown TLS mode")
        );
    }
}
