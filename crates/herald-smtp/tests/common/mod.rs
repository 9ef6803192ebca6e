//! Shared helpers for the tests that run against herald-testkit.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_message::{EmailAddress, Envelope};
use herald_smtp::{ClientConfig, Timeouts, TlsMode, tls_config_from_pem};
use herald_testkit::TestServer;

/// A client for `server`, trusting its certificate, with short timeouts.
pub(crate) fn client(server: &TestServer, tls: TlsMode) -> ClientConfig {
    let mut config = ClientConfig::new(
        "127.0.0.1",
        server.port(),
        tls,
        tls_config_from_pem(server.ca_pem().as_bytes()).unwrap(),
    );
    config.helo_name = "herald.test".into();
    config.timeouts = Timeouts::uniform(Duration::from_secs(5));
    config
}

pub(crate) fn envelope(rcpts: &[&str]) -> Envelope {
    Envelope::new(
        Some(EmailAddress::parse("sender@example.com").unwrap()),
        rcpts.iter().map(|r| EmailAddress::parse(r).unwrap()),
    )
    .unwrap()
}

pub(crate) const MESSAGE: &[u8] = b"From: sender@example.com\r\nSubject: t\r\n\r\nhello\r\n";
