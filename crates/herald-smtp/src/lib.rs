//! How a mail travels: herald's SMTP client. It opens sessions with TLS
//! (STARTTLS or implicit) and AUTH, pipelines the envelope when the server
//! allows, reports an outcome per recipient, bounds every phase with a
//! timeout, pools connections per relay, and classifies every failure.
//! XOAUTH2 tokens come from a [`TokenSource`] at each AUTH, so that a
//! refreshing source keeps a relay usable past a token's lifetime.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod auth;
mod config;
mod connection;
mod error;
mod pool;
mod reply;
mod stuffing;
mod tls;
mod token;
mod transaction;

pub use config::{
    ClientConfig, Credentials, Mechanism, Secret, Timeouts, TlsMode, default_helo_name,
};
pub use connection::{Capabilities, Connection, Ctx, Io};
pub use error::{Error, ErrorKind, Phase, Scope};
pub use herald_tls::{TlsSetupError, system_tls_config, tls_config_from_pem};
pub use pool::{Pool, PoolConfig, PoolStats};
pub use reply::{EnhancedCode, Reply};
pub use tls::TlsInfo;
pub use token::{TokenError, TokenFuture, TokenSource};
pub use tokio_util::sync::CancellationToken;
pub use transaction::{RecipientOutcome, SendOptions};

/// The reply parser, for the fuzz targets only (`fuzzing` feature): the
/// first complete reply in `buf` and how many bytes it used, `Ok(None)`
/// while more bytes are needed, or why the bytes are not a reply.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn parse_reply_for_fuzzing(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    reply::parse_reply(buf).map_err(|e| format!("{e:?}"))
}
