//! A connection pool per relay: at most `max_connections` sessions, each
//! reused for up to `max_messages_per_connection` messages while it stays
//! fresh. A connection the server closed while idle is noticed before use
//! and replaced, so a message never fails because its connection went stale.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use herald_message::Envelope;
use tokio::sync::Semaphore;

use crate::config::ClientConfig;
use crate::connection::{Connection, Ctx, guard};
use crate::error::{Error, ErrorKind, Phase, Scope};
use crate::transaction::{RecipientOutcome, SendOptions};

/// Pool sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Sessions open at once, busy or idle (default 4).
    pub max_connections: usize,
    /// Messages one session carries before it is closed (default 100).
    pub max_messages_per_connection: usize,
    /// How long a session may sit idle before it is closed (default 30 s).
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 4,
            max_messages_per_connection: 100,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Counters, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Sessions open now (busy and idle), counting those still being
    /// opened (connect, banner, EHLO, TLS, AUTH).
    pub open: usize,
    /// Sessions idle now.
    pub idle: usize,
    /// Sessions opened since the pool was made.
    pub opened_total: usize,
    /// Times an idle session was reused.
    pub reused_total: usize,
    /// Idle sessions found closed by the server and replaced.
    pub stale_total: usize,
}

/// Sessions to one relay, shared by every sender.
#[derive(Debug)]
pub struct Pool {
    client: Arc<ClientConfig>,
    config: PoolConfig,
    permits: Semaphore,
    idle: Mutex<Vec<Connection>>,
    open: AtomicUsize,
    opened_total: AtomicUsize,
    reused_total: AtomicUsize,
    stale_total: AtomicUsize,
}

impl Pool {
    /// A pool for the relay `client` describes. No connection is opened
    /// until the first send.
    pub fn new(client: ClientConfig, config: PoolConfig) -> Self {
        let max = config.max_connections.max(1);
        Self {
            client: Arc::new(client),
            config,
            permits: Semaphore::new(max),
            idle: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            opened_total: AtomicUsize::new(0),
            reused_total: AtomicUsize::new(0),
            stale_total: AtomicUsize::new(0),
        }
    }

    /// The relay this pool talks to.
    pub fn client_config(&self) -> &ClientConfig {
        &self.client
    }

    /// Sends one message on a pooled session (see [`Connection::send`] for
    /// what `Ok` and `Err` mean). When a reused session turns out to be
    /// dead before the server accepted anything, the message is sent again
    /// on a fresh session instead of failing.
    pub async fn send(
        &self,
        envelope: &Envelope,
        message: &[u8],
        options: SendOptions,
        ctx: &Ctx,
    ) -> Result<Vec<RecipientOutcome>, Error> {
        let wait = self.client.timeouts.connect.max(self.client.timeouts.mail);
        let _permit = guard(Phase::Connect, wait, ctx, async {
            self.permits
                .acquire()
                .await
                .map_err(|_| Error::new(ErrorKind::Cancelled, Phase::Connect, "pool closed"))
        })
        .await?;

        let (mut conn, reused) = match self.take_idle() {
            Some(conn) => (conn, true),
            None => (self.connect(ctx).await?, false),
        };
        let mut result = conn.send(envelope, message, options, ctx).await;
        if reused
            && let Err(error) = &result
            && retry_on_fresh_connection(error)
        {
            tracing::debug!(error = %error, "reused smtp connection failed; retrying on a new one");
            self.discard(conn);
            conn = self.connect(ctx).await?;
            result = conn.send(envelope, message, options, ctx).await;
        }
        self.give_back(conn);
        result
    }

    /// Counters.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            open: self.open.load(Ordering::Relaxed),
            idle: self.idle.lock().map(|i| i.len()).unwrap_or(0),
            opened_total: self.opened_total.load(Ordering::Relaxed),
            reused_total: self.reused_total.load(Ordering::Relaxed),
            stale_total: self.stale_total.load(Ordering::Relaxed),
        }
    }

    /// Closes every idle session with QUIT, all at once: a relay that
    /// never answers QUIT costs one QUIT timeout, not one per connection.
    pub async fn close_idle(&self) {
        let idle: Vec<_> = self
            .idle
            .lock()
            .map(|mut i| std::mem::take(&mut *i))
            .unwrap_or_default();
        let mut quits = tokio::task::JoinSet::new();
        for conn in idle {
            self.open.fetch_sub(1, Ordering::Relaxed);
            quits.spawn(conn.quit());
        }
        while quits.join_next().await.is_some() {}
    }

    /// Opens a session. It counts as open from the first connect on, so
    /// that a worker waiting for a slow banner or handshake shows.
    async fn connect(&self, ctx: &Ctx) -> Result<Connection, Error> {
        /// Takes the count back unless the session opened, however the
        /// attempt ends (an error, or the future dropped mid-handshake).
        struct Opening<'a>(&'a AtomicUsize, bool);
        impl Drop for Opening<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        let mut opening = Opening(&self.open, false);
        let conn = Connection::open(self.client.clone(), ctx).await?;
        opening.1 = true;
        self.opened_total.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }

    /// The most recently used idle session that is still alive and fresh.
    fn take_idle(&self) -> Option<Connection> {
        loop {
            let mut conn = self.idle.lock().ok()?.pop()?;
            let idle_for = crate::connection::now().saturating_duration_since(conn.last_used);
            let expired = idle_for > self.config.idle_timeout;
            if expired || conn.peer_closed() {
                if !expired {
                    self.stale_total.fetch_add(1, Ordering::Relaxed);
                }
                self.discard(conn);
                continue;
            }
            self.reused_total.fetch_add(1, Ordering::Relaxed);
            return Some(conn);
        }
    }

    fn give_back(&self, mut conn: Connection) {
        let spent = conn.transactions() >= self.config.max_messages_per_connection;
        if !conn.is_usable() || spent {
            self.discard(conn);
            return;
        }
        conn.last_used = crate::connection::now();
        match self.idle.lock() {
            Ok(mut idle) => idle.push(conn),
            Err(_) => self.discard(conn),
        }
    }

    /// Closes a session in the background (QUIT if it is still sound).
    fn discard(&self, conn: Connection) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        if conn.is_usable() {
            tokio::spawn(conn.quit());
        }
    }
}

/// A reused session that failed before the server could have accepted the
/// message (network fault, 421, or a protocol error while sending the
/// envelope) is the pool's problem, not the message's.
fn retry_on_fresh_connection(error: &Error) -> bool {
    error.scope() == Scope::Connection
        && error.kind() != ErrorKind::Cancelled
        && !error.is_timeout()
        && matches!(error.phase(), Phase::Mail | Phase::Rcpt | Phase::Data)
}
