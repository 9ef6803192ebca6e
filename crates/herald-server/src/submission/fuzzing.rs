//! The submission session driven by bytes alone, for the fuzz targets
//! (`fuzzing` feature only): the session as the implicit-TLS listener runs
//! it, so that AUTH, MAIL, RCPT, DATA and BDAT are all reachable without a
//! TLS handshake in the way.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use herald_store::Store;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::lockout::Lockout;
use super::session::{Session, Shared};
use crate::api::{ApiLimits, AppState};
use crate::config::{ApiKey, SubmissionConfig};

/// The API key (with the send scope) a fuzzed client may AUTH with.
pub const KEY: &str = "fuzzing-key-0123456789";

/// Runs one session over an in-memory stream whose client side sends
/// `input` and then closes; returns everything the server wrote. Messages
/// are queued in `store`.
pub async fn session(store: Arc<dyn Store>, input: &[u8]) -> Vec<u8> {
    let keys = ApiKey::new(KEY).map(|k| vec![k]).unwrap_or_default();
    let limits = ApiLimits {
        max_message_bytes: 64 * 1024,
        max_batch: 10,
        max_queue_depth: 1_000_000,
        message: herald_message::Limits::default(),
    };
    let state = AppState::new(
        store,
        keys,
        limits,
        Arc::new(Notify::new()),
        Arc::new(AtomicBool::new(false)),
    );
    let config = SubmissionConfig {
        listen: None,
        implicit_tls_listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
        cert_file: "unused.pem".into(),
        key_file: "unused.pem".into(),
        max_connections: 1,
        max_message_bytes: 64 * 1024,
        max_recipients: 5,
        command_timeout: Duration::from_secs(10),
        data_timeout: Duration::from_secs(10),
    };
    let shared = Arc::new(Shared {
        state,
        config,
        hostname: "fuzz.example".to_owned(),
        lockout: Lockout::default(),
        stop: CancellationToken::new(),
    });
    let (mut client, mut server) = tokio::io::duplex(64 * 1024);
    let peer = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 40000));
    let serve = async move {
        let mut session = Session::new(shared, peer, true);
        if let Ok(true) = session.greet(&mut server).await {
            let _ = session.run(&mut server).await;
        }
        // Dropping the server's end ends the client's read.
    };
    let talk = async move {
        let (mut read, mut write) = tokio::io::split(&mut client);
        let send = async {
            // The server may stop reading (421) before all is sent.
            let _ = write.write_all(input).await;
            let _ = write.shutdown().await;
        };
        let mut output = Vec::new();
        let receive = read.read_to_end(&mut output);
        let ((), _) = tokio::join!(send, receive);
        output
    };
    let ((), output) = tokio::join!(serve, talk);
    output
}
