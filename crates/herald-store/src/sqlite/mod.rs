//! The SQLite backend: one file, WAL journal, `synchronous=FULL` so that a
//! commit is on disk before anyone hears of it. Every change goes through
//! one writer task that commits concurrent operations together (see
//! [`writer`]); questions are answered by a small pool of read-only
//! connections, each in its own snapshot.

mod attempt;
mod codec;
mod enqueue;
mod lease;
mod query;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Sqlite, Transaction};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use self::codec::db;
use self::writer::{Op, Reply};
use crate::{
    AttemptRecord, Claimed, Enqueued, ListFilter, MessageRecord, MessageStatus, NewMessage, Page,
    QueueStats, Store, StoreError,
};

/// The schema, embedded in the binary and applied by [`SqliteStore::open`].
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a connection waits for a lock held by another process (a
/// `herald queue` command, a backup) before the operation fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read connections: enough for the API's questions on a small machine;
/// WAL lets them read while the writer writes.
const READERS: u32 = 4;

/// The queue in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    ops: mpsc::Sender<Op>,
    reads: SqlitePool,
    commits: Arc<AtomicU64>,
    writer: JoinHandle<()>,
}

impl SqliteStore {
    /// Opens (creating the file and its directory if missing) and migrates
    /// the database at `url`: `sqlite:///abs/path/herald.db`,
    /// `sqlite://relative.db`, `sqlite:relative.db`, `sqlite::memory:`, or
    /// a plain path. Must be called within a Tokio runtime, which then
    /// runs the writer task.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let base = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::Unavailable(format!("sqlite: bad url {url:?}: {e}")))?
        } else {
            // A plain path is taken as it is: no URL decoding of `%` or `?`.
            SqliteConnectOptions::new().filename(url)
        };
        let base = base.busy_timeout(BUSY_TIMEOUT).foreign_keys(true);
        if !memory {
            create_parent(base.get_filename()).await?;
        }

        let mut write_options = base
            .clone()
            .create_if_missing(true)
            .synchronous(SqliteSynchronous::Full);
        if !memory {
            write_options = write_options.journal_mode(SqliteJournalMode::Wal);
        }
        let mut conn = SqliteConnection::connect_with(&write_options)
            .await
            .map_err(db("open database"))?;
        MIGRATOR
            .run(&mut conn)
            .await
            .map_err(|e| StoreError::Unavailable(format!("sqlite: migrate: {e}")))?;

        // The file exists and is in WAL mode now, so readers can open it
        // read-only: a bug in a query path cannot write.
        let reads = SqlitePoolOptions::new()
            .max_connections(READERS)
            .min_connections(0)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(base.read_only(!memory))
            .await
            .map_err(db("open read pool"))?;

        let (ops, rx) = mpsc::channel(writer::QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let writer = tokio::spawn(writer::run(conn, rx, Arc::clone(&commits)));
        Ok(Self {
            ops,
            reads,
            commits,
            writer,
        })
    }

    /// Stops the writer after the operations already handed to it, and
    /// closes every connection. Dropping the store is also safe (every
    /// answered change is committed); this only waits for the files to be
    /// closed.
    pub async fn close(self) {
        drop(self.ops);
        if let Err(e) = self.writer.await {
            tracing::warn!(error = %e, "sqlite writer task ended abnormally");
        }
        self.reads.close().await;
    }

    /// Transactions the writer has committed (for tests and benchmarks of
    /// group commit).
    #[doc(hidden)]
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// The value of `PRAGMA name` on the write connection, where the
    /// durability settings (`synchronous`, `journal_mode`) live.
    #[doc(hidden)]
    pub async fn writer_pragma(&self, name: &'static str) -> Result<i64, StoreError> {
        self.write(|reply| Op::Pragma { name, reply }).await
    }

    /// Hands an operation to the writer and waits for its committed answer.
    async fn write<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.ops.send(op(reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// A read connection in a snapshot: a message, its recipients and its
    /// events are read as of one instant.
    async fn snapshot(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.reads.begin().await.map_err(db("begin read"))
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("sqlite: the writer task has stopped".to_owned())
}

async fn create_parent(file: &Path) -> Result<(), StoreError> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| StoreError::Unavailable(format!("sqlite: create {}: {e}", dir.display()))),
        _ => Ok(()),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn enqueue(&self, message: NewMessage) -> Result<Enqueued, StoreError> {
        let mut results = self
            .write(|reply| Op::Enqueue {
                messages: vec![message],
                reply,
            })
            .await?;
        results
            .pop()
            .unwrap_or_else(|| Err(StoreError::Unavailable("sqlite: no enqueue result".into())))
    }

    async fn enqueue_batch(
        &self,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|reply| Op::Enqueue { messages, reply }).await
    }

    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        now: OffsetDateTime,
    ) -> Result<Vec<Claimed>, StoreError> {
        let owner = owner.to_owned();
        self.write(|reply| Op::Claim {
            owner,
            limit,
            lease,
            now,
            reply,
        })
        .await
    }

    async fn extend_lease(
        &self,
        id: &str,
        owner: &str,
        until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.write(|reply| Op::ExtendLease {
            id,
            owner,
            until,
            reply,
        })
        .await
    }

    async fn record_attempt(
        &self,
        id: &str,
        owner: &str,
        attempt: AttemptRecord,
    ) -> Result<MessageStatus, StoreError> {
        let (id, owner, attempt) = (id.to_owned(), owner.to_owned(), Box::new(attempt));
        self.write(|reply| Op::RecordAttempt {
            id,
            owner,
            attempt,
            reply,
        })
        .await
    }

    async fn release(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.write(|reply| Op::Release { id, owner, reply }).await
    }

    async fn cancel(&self, id: &str, now: OffsetDateTime) -> Result<MessageRecord, StoreError> {
        let id = id.to_owned();
        self.write(|reply| Op::Cancel { id, now, reply }).await
    }

    async fn retry(&self, id: &str, now: OffsetDateTime) -> Result<MessageRecord, StoreError> {
        let id = id.to_owned();
        self.write(|reply| Op::Retry { id, now, reply }).await
    }

    async fn get(&self, id: &str) -> Result<Option<MessageRecord>, StoreError> {
        let mut tx = self.snapshot().await?;
        let record = query::get(&mut tx, id).await?;
        tx.commit().await.map_err(db("end read"))?;
        Ok(record)
    }

    async fn list(&self, filter: &ListFilter) -> Result<Page, StoreError> {
        let mut tx = self.snapshot().await?;
        let page = query::list(&mut tx, filter).await?;
        tx.commit().await.map_err(db("end read"))?;
        Ok(page)
    }

    async fn stats(&self, now: OffsetDateTime) -> Result<QueueStats, StoreError> {
        let mut tx = self.snapshot().await?;
        let stats = query::stats(&mut tx, now).await?;
        tx.commit().await.map_err(db("end read"))?;
        Ok(stats)
    }

    async fn depth(&self) -> Result<u64, StoreError> {
        let mut conn = self.reads.acquire().await.map_err(db("acquire reader"))?;
        query::depth(&mut conn).await
    }

    async fn reclaim_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.write(|reply| Op::ReclaimExpired { now, reply }).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.ops.is_closed() {
            return Err(stopped());
        }
        let mut conn = self.reads.acquire().await.map_err(db("acquire reader"))?;
        sqlx::query_scalar::<_, i64>("SELECT n FROM status_counts LIMIT 1")
            .fetch_one(&mut *conn)
            .await
            .map(drop)
            .map_err(db("ping"))
    }
}
