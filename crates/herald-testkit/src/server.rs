//! The running server: binds a port-0 socket, accepts connections, and holds
//! the records every session writes into. Tests talk to [`TestServer`];
//! sessions talk to the crate-private [`Shared`] state.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::config::ServerConfig;
use crate::faults::FaultBook;
use crate::lock;
use crate::log::{Closer, CommandRecord, ReceivedMessage, SessionLog};
use crate::session;
use crate::tls::{self, TlsMaterial};
use crate::wire::{IdleCtl, IdleHandle};

/// State shared by the server handle and all its sessions.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) tls: TlsMaterial,
    pub(crate) faults: FaultBook,
    records: Mutex<Records>,
    /// Number of accepted messages; a watch so waiters need no polling.
    accepted: watch::Sender<usize>,
}

#[derive(Debug, Default)]
struct Records {
    sessions: Vec<SessionLog>,
    messages: Vec<ReceivedMessage>,
    idle: Vec<IdleHandle>,
}

impl Shared {
    fn open_session(&self) -> (usize, IdleHandle) {
        let mut records = lock(&self.records);
        let id = records.sessions.len();
        records.sessions.push(SessionLog::new(id));
        let ctl = Arc::new(IdleCtl::default());
        records.idle.push(Arc::clone(&ctl));
        (id, ctl)
    }

    pub(crate) fn record_command(&self, id: usize, command: CommandRecord) {
        self.update_session(id, |log| log.commands.push(command));
    }

    pub(crate) fn update_session(&self, id: usize, f: impl FnOnce(&mut SessionLog)) {
        if let Some(log) = lock(&self.records).sessions.get_mut(id) {
            f(log);
        }
    }

    /// Records who closed the session, unless that is already known.
    pub(crate) fn closed(&self, id: usize, closer: Closer) {
        self.update_session(id, |log| {
            if log.closed_by == Closer::Unknown {
                log.closed_by = closer;
            }
        });
    }

    /// Stores an accepted message and returns its index (its queue id).
    pub(crate) fn push_message(&self, message: ReceivedMessage) -> usize {
        let mut records = lock(&self.records);
        records.messages.push(message);
        let count = records.messages.len();
        // Sent under the lock so concurrent sessions publish counts in order.
        self.accepted.send_replace(count);
        count - 1
    }
}

/// A scriptable SMTP server on `127.0.0.1`, for testing herald's client.
///
/// It stops when dropped, or when [`TestServer::shutdown`] is awaited; every
/// open connection is then closed.
#[derive(Debug)]
pub struct TestServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl TestServer {
    /// Binds `127.0.0.1:0` and starts serving with `config`. Must be called
    /// inside a Tokio runtime.
    pub async fn start(config: ServerConfig) -> std::io::Result<TestServer> {
        let tls = tls::generate()?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            faults: FaultBook::new(&config),
            config,
            tls,
            records: Mutex::new(Records::default()),
            accepted: watch::Sender::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        Ok(TestServer {
            shared,
            addr,
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    /// The bound address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// PEM of the server's self-signed certificate (CN `localhost`, SANs
    /// `localhost` and `127.0.0.1`); a client trusts it as its only root.
    pub fn ca_pem(&self) -> String {
        self.shared.tls.cert_pem.clone()
    }

    /// DER of the same certificate as [`TestServer::ca_pem`].
    pub fn ca_der(&self) -> Vec<u8> {
        self.shared.tls.cert_der.clone()
    }

    /// Accepted messages, in the order they were accepted.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        lock(&self.shared.records).messages.clone()
    }

    /// Number of accepted messages (cheap; works with `record_data` off).
    pub fn message_count(&self) -> usize {
        *self.shared.accepted.borrow()
    }

    /// One log per TCP connection, in accept order (index = [`SessionLog::id`]).
    pub fn sessions(&self) -> Vec<SessionLog> {
        lock(&self.shared.records).sessions.clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        lock(&self.shared.records).sessions.len()
    }

    /// Waits until at least `n` messages were accepted; false on timeout.
    pub async fn wait_for_messages(&self, n: usize, timeout: Duration) -> bool {
        let mut accepted = self.shared.accepted.subscribe();
        tokio::time::timeout(timeout, accepted.wait_for(|count| *count >= n))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }

    /// Closes, from the server side and without a word, every session that
    /// is waiting for a command between transactions, as an idle timeout on
    /// a real server would. Sessions in the middle of a transaction, an AUTH
    /// exchange or a command line are left alone.
    pub fn close_idle_connections(&self) {
        let idle: Vec<IdleHandle> = lock(&self.shared.records).idle.clone();
        for ctl in idle {
            ctl.close_if_idle();
        }
    }

    /// Stops accepting, closes every connection and waits until they are
    /// gone. Records stay readable afterwards; calling it twice is harmless.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        // Aborting drops the session set, which aborts every session even if
        // the runtime never polls the accept loop again.
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            // The guard `wait_for` returns is not Send; drop it at once.
            () = async { drop(stop.wait_for(|stopped| *stopped).await) } => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => spawn_session(&mut sessions, &shared, tcp),
                Err(err) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin; the client will see its connect time out.
                    tracing::warn!(error = %err, "herald-testkit: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
        // Reap finished sessions so a long benchmark does not accumulate them.
        while sessions.try_join_next().is_some() {}
    }
    drop(listener);
    sessions.shutdown().await;
}

fn spawn_session(sessions: &mut JoinSet<()>, shared: &Arc<Shared>, tcp: TcpStream) {
    // Replies are batched by the session itself; Nagle would only add delay.
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(error = %err, "herald-testkit: set_nodelay failed");
    }
    let (id, ctl) = shared.open_session();
    sessions.spawn(session::run(Arc::clone(shared), id, tcp, ctl));
}
