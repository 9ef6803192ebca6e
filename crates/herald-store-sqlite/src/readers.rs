//! The read connections: a few read-only connections, opened when first
//! needed and kept, each lent to one question at a time on Tokio's
//! blocking threads (SQLite calls block; they must not stall the runtime).
//! WAL lets them read while the writer writes.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::codec::db;
use super::open::Location;
use herald_store::StoreError;

/// How long a question waits for a free read connection before the store
/// answers that it is unavailable (as a busy database would).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The pool; cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Readers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    location: Location,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection that may exist.
    permits: Arc<Semaphore>,
}

impl Readers {
    /// At most `size` connections to `location`.
    pub(super) fn new(location: Location, size: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                location,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(size)),
            }),
        }
    }

    /// Runs `question` on a read connection inside one read transaction,
    /// so everything it reads is of one instant.
    pub(super) async fn snapshot<T, F>(&self, question: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.with(|conn| {
            let tx = conn.transaction().map_err(db("begin read"))?;
            let answer = question(&tx)?;
            tx.commit().map_err(db("end read"))?;
            Ok(answer)
        })
        .await
    }

    /// Runs `work` with a connection of its own.
    pub(super) async fn with<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        // Held by the blocking task, not by this future: a caller that stops
        // waiting must not let more connections than permits exist.
        let permit = tokio::time::timeout(
            ACQUIRE_TIMEOUT,
            Arc::clone(&self.inner.permits).acquire_owned(),
        )
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!(
                "sqlite: no read connection free within {ACQUIRE_TIMEOUT:?}"
            ))
        })?
        .map_err(|_| StoreError::Unavailable("sqlite: the read pool is closed".into()))?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let idle = inner
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let mut conn = match idle {
                Some(conn) => conn,
                None => inner.location.open_reader()?,
            };
            let answer = work(&mut conn);
            // A connection left inside a transaction (a failed commit) is
            // not trusted with the next question.
            if conn.is_autocommit() {
                inner
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(conn);
            }
            answer
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("sqlite: read task failed: {e}")))?
    }

    /// Closes the idle connections (on a blocking thread: closing a
    /// connection is a SQLite call); later questions open new ones.
    pub(super) async fn close_idle(&self) {
        let idle = std::mem::take(
            &mut *self
                .inner
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if let Err(e) = tokio::task::spawn_blocking(move || drop(idle)).await {
            tracing::warn!(error = %e, "closing sqlite read connections");
        }
    }
}
