//! herald's SMTP client (herald-smtp) against a server that answers
//! arbitrary bytes: opening the session (banner, EHLO, STARTTLS, AUTH),
//! sending twice on it, NOOP and QUIT. Never a panic, never a hang (the
//! clock is tokio's paused one, so every timeout fires at once when the
//! server goes quiet), and every send that returns `Ok` has one outcome
//! per recipient, and a connection an error closed is never reused.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use herald_message::{EmailAddress, Envelope};
use herald_smtp::{ClientConfig, Connection, Credentials, Ctx, SendOptions, Timeouts, TlsMode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const MESSAGE: &[u8] = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\n\
.leading dot\r\nbody\r\n";

/// One input: the first byte chooses the client's settings, the rest is
/// everything the server says.
pub fn run(data: &[u8]) {
    let Some((&choice, answers)) = data.split_first() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(session(choice, answers));
}

async fn session(choice: u8, answers: &[u8]) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let answers = answers.to_vec();
    // Bit 3: the server hangs up after its last byte, or stays silent.
    let hang_up = choice & 8 != 0;
    let server = tokio::spawn(async move {
        let (mut read, mut write) = tokio::io::split(server);
        let answer = async {
            let _ = write.write_all(&answers).await;
            if hang_up {
                let _ = write.shutdown().await;
            }
        };
        let mut heard = Vec::new();
        let listen = read.read_to_end(&mut heard);
        let ((), _) = tokio::join!(answer, listen);
        if !hang_up {
            // Keep the write side open until the client is done.
            drop(write);
        }
    });

    let config = Arc::new(config(choice));
    let ctx = Ctx::default();
    if let Ok(mut conn) = Connection::open_on(Box::new(client), config, &ctx).await {
        let envelope = envelope();
        for _ in 0..2 {
            let options = SendOptions::default();
            match conn.send(&envelope, MESSAGE, options, &ctx).await {
                Ok(outcomes) => {
                    assert_eq!(outcomes.len(), envelope.recipients().len());
                    for outcome in &outcomes {
                        if let Ok(reply) = &outcome.result {
                            assert!(reply.is_positive(), "delivered on {reply}");
                        }
                    }
                }
                // The pool reuses a connection unless it is marked broken:
                // an error that closes the connection must have marked it.
                Err(error) if error.closes_connection() => {
                    assert!(!conn.is_usable(), "reusable after {error}");
                }
                Err(_) => {}
            }
        }
        let _ = conn.noop(&ctx).await;
        conn.quit().await;
    }
    let _ = server.await;
}

/// Bits 0–1: the TLS mode; bit 2: credentials (allowed in plain text, so
/// that AUTH is reached without a handshake).
fn config(choice: u8) -> ClientConfig {
    let tls = match choice & 3 {
        0 => TlsMode::None,
        1 => TlsMode::Opportunistic,
        2 => TlsMode::StartTls,
        _ => TlsMode::Implicit,
    };
    let mut config = ClientConfig::new("mx.example", 25, tls, tls_config());
    config.helo_name = "client.example".to_owned();
    config.timeouts = Timeouts::uniform(Duration::from_secs(30));
    if choice & 4 != 0 {
        config.credentials = Some(Credentials::password("user", "secret"));
        config.allow_insecure_auth = true;
    }
    config
}

/// A TLS client trusting nothing: handshakes with the fuzzed server fail,
/// as they should, after rustls has read what it sent.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

fn envelope() -> Envelope {
    let address = |a: &str| EmailAddress::parse(a).expect("a valid address");
    Envelope::new(
        Some(address("a@example.com")),
        [address("b@example.com"), address("c@example.org")],
    )
    .expect("an envelope")
}
