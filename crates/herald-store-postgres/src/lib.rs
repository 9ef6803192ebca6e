//! The PostgreSQL backend: herald's queue in a database shared by any
//! number of nodes.
//!
//! - **Driver**: tokio-postgres, pooled by deadpool. The statements of a
//!   transaction are pipelined — sent together on one connection,
//!   `BEGIN` and `COMMIT` included — so a transaction costs one round trip
//!   per decision it has to wait for, not one per statement.
//! - **Enqueues** share transactions: a small group-commit task stores
//!   whatever enqueues are waiting in one transaction of multi-row inserts.
//! - **Claims** take their batch in one statement: the oldest due messages
//!   from a partial index, locked `FOR UPDATE SKIP LOCKED`, so nodes
//!   claiming at once never wait for each other nor share a message. A
//!   check for leases that ran out rides in the same pipeline; when there
//!   are some and the claim came back short, they are ended in a
//!   transaction of their own by the lost-lease rules
//!   ([`herald_store::lifecycle::after_lost_lease`]) and the rest of the
//!   batch is claimed.
//! - **Wake-ups**: changes that make work due (enqueue, retry, release,
//!   reclaim) `NOTIFY` the `herald_work` channel inside their transaction;
//!   [`PgStore::listen`] wakes a node on it.
//! - **Depth** comes from a ledger of status counts kept by statement
//!   triggers, read at most every 100 ms per node.
//! - **Clock**: leases and due times follow the database's `now()` by
//!   default ([`Clock`]), so nodes whose clocks disagree still agree on
//!   when a lease ends.
//! - **Schema**: versioned migrations in `herald_schema`, applied at open
//!   under an advisory lock; a newer schema than this herald knows is
//!   refused.
//! - **TLS**: rustls (ring), by the URL's `sslmode` with libpq's meanings.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod attempt;
mod codec;
mod contract;
mod depth;
mod enqueue;
mod group;
mod lease;
mod limits;
mod listen;
mod open;
pub use open::SCHEMA_VERSION;
mod pipeline;
mod query;
mod replay;
mod suppress;
mod template;
mod tls;
mod upkeep;
mod webhooks;

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use herald_policy::RateLimit;
use time::OffsetDateTime;
use tokio::task::AbortHandle;

use herald_store::{
    Added, AttemptRecord, Claimed, DisabledWebhook, Enqueued, EventRetention, FeedCursor,
    FeedEntry, FeedRecord, Idempotency, Leases, ListFilter, MessageRecord, NewMessage, NewTemplate,
    OutboxEvent, Page, Postponed, Purged, PurgedEvents, QueueStats, RateSlots, Recorded, Retention,
    Store, StoreError, StoreOptions, Suppression, SuppressionFilter, SuppressionPage,
    TemplateRecord, WebhookDelivery, WebhookDeliveryRecord,
};

use self::depth::Depth;
use self::open::Target;

/// Which clock decides leases and due times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Clock {
    /// PostgreSQL's `now()`: a claim's "now", the end of a lease, reclaims,
    /// heartbeats, leadership and retry times are the database's, whatever
    /// the calling node's clock says. Intervals the caller gives (a lease's
    /// length, the wait between an attempt's end and its retry, the time
    /// left on a lease being extended) are kept, counted from the
    /// database's now. The right choice for several nodes.
    #[default]
    Database,
    /// The `now` arguments as the caller gives them (the conformance suite's
    /// fixed instants; a single node whose clock is the reference).
    Caller,
}

/// How to run a [`PgStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgOptions {
    /// Most connections the pool keeps open (default 16). One more is
    /// opened for each [`PgStore::listen`].
    pub pool_size: usize,
    /// Settings every backend applies.
    pub store: StoreOptions,
    /// Which clock decides leases and due times.
    pub clock: Clock,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            store: StoreOptions::default(),
            clock: Clock::Database,
        }
    }
}

/// The queue in a PostgreSQL database.
pub struct PgStore {
    shared: Arc<Shared>,
    group: group::Committer,
    listeners: Listeners,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.shared.pool.status();
        f.debug_struct("PgStore")
            .field("url", &self.shared.target.shown())
            .field("clock", &self.shared.clock)
            .field("connections", &status.size)
            .field("pool_size", &status.max_size)
            .finish_non_exhaustive()
    }
}

/// The listener tasks, stopped when the store goes.
#[derive(Debug, Default)]
struct Listeners(Mutex<Vec<AbortHandle>>);

impl Listeners {
    fn add(&self, task: AbortHandle) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }

    fn stop(&self) {
        let tasks = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        tasks.iter().for_each(AbortHandle::abort);
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What every operation needs, shared with the tasks the store spawns.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) pool: deadpool_postgres::Pool,
    pub(crate) target: Target,
    pub(crate) clock: Clock,
    pub(crate) max_lost: u32,
    pub(crate) depth: Depth,
}

impl Shared {
    /// The `now` a statement is given: the caller's, or NULL for the
    /// database's (`COALESCE($n, now())` in the SQL).
    pub(crate) fn now(&self, caller: OffsetDateTime) -> Option<OffsetDateTime> {
        match self.clock {
            Clock::Caller => Some(caller),
            Clock::Database => None,
        }
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host/db
    /// ?sslmode=…`; `sslmode` is one of disable, prefer (the default),
    /// require, verify-ca, verify-full, with `sslrootcert=path` or
    /// `sslrootcert=system` for the CA certificates to trust) and brings its
    /// schema up to date, holding an advisory lock so that nodes starting
    /// together migrate one at a time. A schema newer than this herald
    /// knows is refused, untouched.
    pub async fn open(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        let target = Target::parse(url)?;
        let scrub = target.clone();
        let opened = async move {
            let pool = target.pool(options.pool_size.max(1))?;
            open::migrate(&pool).await?;
            let shared = Arc::new(Shared {
                pool,
                target,
                clock: options.clock,
                max_lost: options.store.max_lost_leases,
                depth: Depth::default(),
            });
            let group = group::Committer::start(Arc::clone(&shared));
            Ok(Self {
                shared,
                group,
                listeners: Listeners::default(),
            })
        }
        .await;
        opened.map_err(|e| scrub.opening(e))
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        self.run(|shared| async move { open::schema_version(&shared.pool).await })
            .await
    }

    /// Enqueue transactions committed (for tests and benchmarks of group
    /// commit).
    #[doc(hidden)]
    pub fn commits(&self) -> u64 {
        self.group.commits()
    }

    /// Keeps one connection of its own listening on the `herald_work`
    /// channel and calls `wake` for every notification: work became due
    /// (an enqueue, a retry, a release or a reclaim, on any node). `wake`
    /// is also called each time the connection is (re)established, since
    /// notifications sent while it was down are lost; a dropped connection
    /// is reopened with growing pauses. Listening stops when the store is
    /// closed or dropped. Notifications are a hint: the caller still polls
    /// now and then.
    pub fn listen(&self, wake: impl Fn() + Send + Sync + 'static) {
        let task = listen::spawn(self.shared.target.clone(), Arc::new(wake));
        self.listeners.add(task);
    }

    /// Stops listening, waits for the enqueues already handed to the
    /// group-commit task, and closes every connection.
    pub async fn close(self) {
        self.listeners.stop();
        self.group.close().await;
        self.shared.pool.close();
    }

    /// Runs an operation on a task of its own, so that a caller who stops
    /// waiting cannot leave a transaction half done; errors are scrubbed of
    /// the URL's secrets.
    async fn run<T, F, Fut>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let task = tokio::spawn(operation(Arc::clone(&self.shared)));
        let result = match task.await {
            Ok(result) => result,
            Err(e) => Err(StoreError::Unavailable(format!(
                "postgres: task failed: {e}"
            ))),
        };
        result.map_err(|e| self.shared.target.scrub(e))
    }
}
