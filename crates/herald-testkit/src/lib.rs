//! A scriptable SMTP server for herald's tests and benchmarks.
//!
//! It speaks real SMTP (RFC 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
//! ENHANCEDSTATUSCODES, STARTTLS or implicit TLS, AUTH PLAIN/LOGIN/XOAUTH2),
//! records every session and accepted message, and fails on command.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use herald_testkit::{ServerConfig, TestServer, TlsMode};
//! let server = TestServer::start(ServerConfig {
//!     tls: TlsMode::StartTls,
//!     ..ServerConfig::default()
//! })
//! .await?;
//! // ... point the client at server.addr(), trusting server.ca_pem() ...
//! assert!(server.wait_for_messages(1, std::time::Duration::from_secs(5)).await);
//! # Ok(()) }
//! ```
//!
//! # Faults scripted by recipient address
//!
//! The local part of each RCPT address (case-insensitive; the domain and
//! anything after the prefix are ignored) can script a fault:
//!
//! | local part starts with | effect |
//! | --- | --- |
//! | `rcptNNN` (NNN in 400–599) | RCPT gets NNN (`rcpt451` → `451 4.7.1`, `rcpt550` → `550 5.1.1 user unknown`, …; `rcpt421` also closes) |
//! | `dataNNN` | RCPT accepted; the reply after the final dot is NNN (`data451` → `451 4.3.0`, `data554` → `554 5.6.0`) |
//! | `disconnect` | `421 4.4.2` at RCPT, then close |
//! | `close` | socket closed at RCPT without a word |
//! | `dropdata` | RCPT and DATA accepted; socket closed mid-body, before the dot |
//! | `stallrcpt` / `stalldata` / `stalldot` | never answer the RCPT / the DATA command / the final dot |
//! | `slow<ms>` | RCPT answered after `<ms>` milliseconds |
//!
//! `-once` (or `-twice`) anywhere in the local part limits the fault to the
//! first one (two) sightings of that exact address (compared
//! case-insensitively) by this server, across connections; later attempts
//! behave normally. Among the accepted recipients of one transaction, the
//! first `data…`/`stall{data,dot}`/`dropdata` fault wins. Phase-wide
//! [`FaultRule`]s take precedence over address faults, which take
//! precedence over [`ServerConfig::fault_probability`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod faults;
mod log;
mod server;
mod session;
mod tls;
mod tokens;
mod wire;

pub use config::{Credentials, Fault, FaultRule, Phase, ServerConfig, TlsMode};
pub use log::{Closer, CommandRecord, ReceivedMessage, SessionLog};
pub use server::TestServer;
pub use tokens::TokenBook;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks a mutex, shrugging off poisoning: a panicking session must not take
/// the records of every other session down with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
