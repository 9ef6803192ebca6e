//! `[submission]`: the SMTP submission listeners (STARTTLS and implicit
//! TLS), off unless the section names at least one listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::build::positive;
use super::raw::Dur;
use super::{ConfigError, LimitsConfig};

/// `[submission]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubmission {
    /// STARTTLS listener (TLS required before AUTH).
    #[serde(default)]
    pub(crate) listen: Option<SocketAddr>,
    /// Implicit-TLS listener (TLS from the first byte).
    #[serde(default)]
    pub(crate) implicit_tls_listen: Option<SocketAddr>,
    /// The certificate chain, PEM.
    #[serde(default)]
    pub(crate) cert_file: Option<PathBuf>,
    /// The private key, PEM.
    #[serde(default)]
    pub(crate) key_file: Option<PathBuf>,
    /// SMTP connections open at once, both listeners together.
    #[serde(default = "default_max_connections")]
    pub(crate) max_connections: usize,
    /// Largest message accepted; `None` means `limits.max_message_bytes`.
    #[serde(default)]
    pub(crate) max_message_bytes: Option<usize>,
    /// Most recipients of one transaction; `None` means
    /// `limits.max_recipients`.
    #[serde(default)]
    pub(crate) max_recipients: Option<usize>,
    /// How long the server waits for the next command (RFC 5321
    /// §4.5.3.2.7: at least 5 minutes).
    #[serde(default = "default_command_timeout")]
    pub(crate) command_timeout: Dur,
    /// How long the server waits for each block of message data (RFC 5321
    /// §4.5.3.2.5: 3 minutes).
    #[serde(default = "default_data_timeout")]
    pub(crate) data_timeout: Dur,
}

fn default_max_connections() -> usize {
    100
}
fn default_command_timeout() -> Dur {
    Dur(Duration::from_secs(5 * 60))
}
fn default_data_timeout() -> Dur {
    Dur(Duration::from_secs(3 * 60))
}

/// `[submission]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionConfig {
    /// The STARTTLS listener, if any.
    pub listen: Option<SocketAddr>,
    /// The implicit-TLS listener, if any.
    pub implicit_tls_listen: Option<SocketAddr>,
    /// The certificate chain (PEM), read when the listeners start.
    pub cert_file: PathBuf,
    /// The private key (PEM), read when the listeners start.
    pub key_file: PathBuf,
    /// SMTP connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// Largest message accepted, in bytes (`SIZE`, and 552 above it).
    pub max_message_bytes: usize,
    /// Most recipients of one transaction (452 above it).
    pub max_recipients: usize,
    /// How long the server waits for a command.
    pub command_timeout: Duration,
    /// How long the server waits for each block of message data.
    pub data_timeout: Duration,
}

/// Validates `[submission]`; `None` when absent.
pub(super) fn submission(
    raw: Option<RawSubmission>,
    limits: &LimitsConfig,
) -> Result<Option<SubmissionConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if raw.listen.is_none() && raw.implicit_tls_listen.is_none() {
        return Err(ConfigError::new(
            "submission",
            "give listen (STARTTLS), implicit_tls_listen, or both; or leave the section out",
        ));
    }
    if let (Some(a), Some(b)) = (raw.listen, raw.implicit_tls_listen)
        && a == b
        && a.port() != 0
    {
        return Err(ConfigError::new(
            "submission.implicit_tls_listen",
            format!("{b} is submission.listen too"),
        ));
    }
    // AUTH needs TLS on either listener, so a certificate is required.
    let path = |field: &str, value: Option<PathBuf>| {
        value.filter(|p| !p.as_os_str().is_empty()).ok_or_else(|| {
            ConfigError::new(
                format!("submission.{field}"),
                "is required (AUTH is offered over TLS only)",
            )
        })
    };
    let cert_file = path("cert_file", raw.cert_file)?;
    let key_file = path("key_file", raw.key_file)?;
    if raw.max_connections == 0 {
        return Err(ConfigError::new(
            "submission.max_connections",
            "must be at least 1",
        ));
    }
    let max_message_bytes = raw.max_message_bytes.unwrap_or(limits.max_message_bytes);
    if max_message_bytes == 0 {
        return Err(ConfigError::new(
            "submission.max_message_bytes",
            "must be at least 1",
        ));
    }
    let max_recipients = raw.max_recipients.unwrap_or(limits.max_recipients);
    if max_recipients == 0 || max_recipients > herald_message::MAX_ITEMS {
        return Err(ConfigError::new(
            "submission.max_recipients",
            format!("must be from 1 to {}", herald_message::MAX_ITEMS),
        ));
    }
    positive("submission.command_timeout", raw.command_timeout.0)?;
    positive("submission.data_timeout", raw.data_timeout.0)?;
    Ok(Some(SubmissionConfig {
        listen: raw.listen,
        implicit_tls_listen: raw.implicit_tls_listen,
        cert_file,
        key_file,
        max_connections: raw.max_connections,
        max_message_bytes,
        max_recipients,
        command_timeout: raw.command_timeout.0,
        data_timeout: raw.data_timeout.0,
    }))
}
