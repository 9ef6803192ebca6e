//! The SMTP submission listeners (`[submission]`): STARTTLS and implicit
//! TLS, AUTH with an API key that has the `send` scope, and every
//! accepted message committed to the same durable queue as the HTTP
//! API's before its `250`.

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod lockout;
mod queue;
pub(crate) mod raw;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::config::SubmissionConfig;
use crate::service::ServeError;
use session::{End, Session, Shared};

/// The running listeners, until [`stop`](Self::stop).
#[derive(Debug)]
pub(crate) struct Listeners {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    slots: Arc<Semaphore>,
    max_connections: u32,
}

/// The listeners bound and the certificate read, not yet serving.
pub(crate) struct Bound {
    config: SubmissionConfig,
    acceptor: TlsAcceptor,
    listeners: Vec<(TcpListener, bool)>,
}

/// Reads the certificate and binds the configured listeners. Errors (a
/// certificate that cannot be read, an address in use) name the field.
pub(crate) async fn bind(config: &SubmissionConfig) -> Result<Bound, ServeError> {
    let acceptor = acceptor(config)?;
    let mut listeners = Vec::new();
    for (field, addr, implicit) in [
        ("listen", config.listen, false),
        ("implicit_tls_listen", config.implicit_tls_listen, true),
    ] {
        if let Some(addr) = addr {
            let listener = TcpListener::bind(addr).await.map_err(|e| {
                ServeError::Config(format!("submission.{field}: cannot listen on {addr}: {e}"))
            })?;
            listeners.push((listener, implicit));
        }
    }
    Ok(Bound {
        config: config.clone(),
        acceptor,
        listeners,
    })
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

impl Bound {
    /// Serves the listeners, queuing through `state`; `hostname` is the
    /// name in the banner and the EHLO reply.
    pub(crate) fn serve(self, state: AppState, hostname: String) -> Listeners {
        let max_connections = u32::try_from(self.config.max_connections)
            .unwrap_or(u32::MAX)
            .min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        let slots = Arc::new(Semaphore::new(max_connections as usize));
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            state,
            config: self.config,
            hostname,
            lockout: lockout::Lockout::default(),
            stop: stop.clone(),
        });
        let mut tasks = Vec::new();
        for (listener, implicit) in self.listeners {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, implicit_tls = implicit, "SMTP submission listening");
            }
            tasks.push(tokio::spawn(accept_loop(
                listener,
                implicit,
                shared.clone(),
                self.acceptor.clone(),
                slots.clone(),
            )));
        }
        Listeners {
            stop,
            tasks,
            slots,
            max_connections,
        }
    }
}

impl Listeners {
    /// Stops accepting, tells idle sessions to close (421), and waits up
    /// to `drain` for the sessions still in a transaction.
    pub(crate) async fn stop(self, drain: Duration) {
        self.stop.cancel();
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(error = %error, "SMTP listener task failed");
            }
        }
        let all = self.slots.acquire_many(self.max_connections);
        if tokio::time::timeout(drain, all).await.is_err() {
            tracing::warn!("SMTP sessions still open after the drain timeout; closing them");
        }
    }
}

/// The certificate and key, read now so a mistake stops the start.
fn acceptor(config: &SubmissionConfig) -> Result<TlsAcceptor, ServeError> {
    let cert_error = |e: &dyn std::fmt::Display| {
        ServeError::Config(format!(
            "submission.cert_file: cannot read {}: {e}",
            config.cert_file.display()
        ))
    };
    let certs = CertificateDer::pem_file_iter(&config.cert_file)
        .map_err(|e| cert_error(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(&e))?;
    if certs.is_empty() {
        return Err(cert_error(&"no certificate in the file"));
    }
    // The error never quotes the key.
    let key = PrivateKeyDer::from_pem_file(&config.key_file).map_err(|e| {
        ServeError::Config(format!(
            "submission.key_file: cannot read a private key from {}: {e}",
            config.key_file.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Config(format!("submission: TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ServeError::Config(format!(
                "submission.key_file: does not go with submission.cert_file: {e}"
            ))
        })?;
    Ok(TlsAcceptor::from(Arc::new(tls)))
}

async fn accept_loop(
    listener: TcpListener,
    implicit: bool,
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
    slots: Arc<Semaphore>,
) {
    let stop = shared.stop.clone();
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors and the like: wait a little
                    // rather than spin.
                    tracing::warn!(error = %error, "SMTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(error) = connection(tcp, peer, implicit, shared, acceptor).await {
                tracing::debug!(peer = %peer.ip(), error = %error, "SMTP session ended with an error");
            }
        });
    }
}

/// One connection, through STARTTLS if the client asks for it.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    implicit: bool,
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
) -> std::io::Result<()> {
    let _ = tcp.set_nodelay(true);
    let handshake_timeout = shared.config.command_timeout;
    let mut session = Session::new(shared, peer, implicit);
    if implicit {
        let mut tls = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
        if session.greet(&mut tls).await? {
            session.run(&mut tls).await?;
        }
        return Ok(());
    }
    let mut tcp = tcp;
    if !session.greet(&mut tcp).await? {
        return Ok(());
    }
    if session.run(&mut tcp).await? == End::StartTls {
        let mut tls = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
        session.encrypted();
        session.run(&mut tls).await?;
    }
    Ok(())
}
