//! The single writer, and with it group commit.
//!
//! SQLite lets one connection write at a time and makes every commit pay
//! an fsync (`synchronous=FULL`). So every change goes through one thread
//! that owns the write connection: it takes the first waiting operation,
//! drains whatever else has queued up meanwhile, runs them all in one
//! `BEGIN IMMEDIATE … COMMIT`, and only then answers each caller. Under
//! load, hundreds of enqueues share one fsync; alone, an enqueue pays one.
//! Each operation runs inside its own SAVEPOINT, so one that fails is
//! rolled back alone and the others still commit.
//!
//! The writer is an OS thread calling SQLite directly, not an async task:
//! SQLite's calls block, and a group is dozens of statements, each a few
//! microseconds in process, which a hand-off per statement to another
//! thread would multiply.
//!
//! Routing claims and attempt records through the same queue (rather than
//! a second connection contending for the lock) also keeps the dispatcher
//! from starving behind a stream of enqueues: the channel is first come,
//! first served, where SQLite's busy handler is not.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::Connection;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::{attempt, enqueue, lease, query};
use herald_store::{
    AttemptRecord, Claimed, Enqueued, Idempotency, MessageRecord, NewMessage, Recorded, StoreError,
};

/// Most messages (or other operations) committed together. Bounds the
/// latency one group adds to the next and the size of one transaction.
pub(super) const MAX_GROUP: usize = 256;

/// How many operations may wait for the writer before callers wait to
/// hand theirs over (backpressure instead of unbounded memory).
pub(super) const QUEUE: usize = 1024;

/// Where an operation's answer goes.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A change for the writer to make.
#[derive(Debug)]
pub(super) enum Op {
    Enqueue {
        messages: Vec<NewMessage>,
        /// The key and request hash of a keyed batch: the messages are then
        /// one request, replayed or conflicting as a whole.
        batch: Option<Idempotency>,
        reply: Reply<Vec<Result<Enqueued, StoreError>>>,
    },
    Claim {
        owner: String,
        limit: usize,
        lease: Duration,
        now: OffsetDateTime,
        /// The store's poison limit (see `StoreOptions`).
        max_lost: u32,
        reply: Reply<Vec<Claimed>>,
    },
    ExtendLease {
        id: String,
        owner: String,
        until: OffsetDateTime,
        reply: Reply<()>,
    },
    RecordAttempt {
        id: String,
        owner: String,
        attempt: Box<AttemptRecord>,
        reply: Reply<Recorded>,
    },
    Release {
        id: String,
        owner: String,
        reply: Reply<()>,
    },
    Cancel {
        id: String,
        now: OffsetDateTime,
        reply: Reply<MessageRecord>,
    },
    Retry {
        id: String,
        now: OffsetDateTime,
        reply: Reply<MessageRecord>,
    },
    /// Work off the message path (heartbeats, reclaims, retention,
    /// leadership), carrying its own reply.
    Job(Box<dyn Job>),
    /// Reads a setting of the write connection (diagnostics and tests:
    /// some pragmas, like `synchronous`, exist per connection only).
    Pragma {
        name: &'static str,
        reply: Reply<i64>,
    },
}

impl Op {
    /// Its share of a group: a batch weighs as many messages as it holds.
    fn weight(&self) -> usize {
        match self {
            Op::Enqueue { messages, .. } => messages.len().max(1),
            _ => 1,
        }
    }

    /// Whether the caller stopped waiting (its future was dropped): then
    /// nobody will learn the result, so the change is better not made.
    fn abandoned(&self) -> bool {
        match self {
            Op::Enqueue { reply, .. } => reply.is_closed(),
            Op::Claim { reply, .. } => reply.is_closed(),
            Op::ExtendLease { reply, .. } | Op::Release { reply, .. } => reply.is_closed(),
            Op::RecordAttempt { reply, .. } => reply.is_closed(),
            Op::Cancel { reply, .. } | Op::Retry { reply, .. } => reply.is_closed(),
            Op::Job(job) => job.abandoned(),
            Op::Pragma { reply, .. } => reply.is_closed(),
        }
    }

    /// Answers with `reason` without running.
    fn fail(self, reason: &str) {
        let err = || StoreError::Unavailable(reason.to_owned());
        // A caller that went away does not need its answer.
        let _ = match self {
            Op::Enqueue { reply, .. } => reply.send(Err(err())).map_err(drop),
            Op::Claim { reply, .. } => reply.send(Err(err())).map_err(drop),
            Op::ExtendLease { reply, .. } | Op::Release { reply, .. } => {
                reply.send(Err(err())).map_err(drop)
            }
            Op::RecordAttempt { reply, .. } => reply.send(Err(err())).map_err(drop),
            Op::Cancel { reply, .. } | Op::Retry { reply, .. } => {
                reply.send(Err(err())).map_err(drop)
            }
            Op::Job(job) => {
                job.fail(reason);
                Ok(())
            }
            Op::Pragma { reply, .. } => reply.send(Err(err())).map_err(drop),
        };
    }
}

/// A change made by a closure on the write connection, with its reply
/// (see [`Op::Job`]).
pub(super) trait Job: Send {
    /// Whether its caller stopped waiting.
    fn abandoned(&self) -> bool;
    /// Answers with `reason` without running.
    fn fail(self: Box<Self>, reason: &str);
    /// Runs in the group's transaction (inside the op's savepoint).
    fn run(self: Box<Self>, conn: &Connection) -> (Pending, Option<String>);
}

impl std::fmt::Debug for dyn Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

/// A closure and where its answer goes.
pub(super) struct Closure<T, F> {
    pub(super) work: F,
    pub(super) reply: Reply<T>,
}

impl<T, F> Job for Closure<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn fail(self: Box<Self>, reason: &str) {
        let _ = self
            .reply
            .send(Err(StoreError::Unavailable(reason.to_owned())));
    }

    fn run(self: Box<Self>, conn: &Connection) -> (Pending, Option<String>) {
        let result = (self.work)(conn);
        settle(conn, self.reply, result)
    }
}

/// An operation that has run and waits for the commit before answering.
type Pending = Box<dyn FnOnce(Result<(), &str>) + Send>;

fn pending<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Pending {
    Box::new(move |commit| {
        let answer = match commit {
            Ok(()) => result,
            // Even a domain error is replaced: the caller must not think
            // anything about the group's fate but that it failed.
            Err(reason) => Err(StoreError::Unavailable(reason.to_owned())),
        };
        let _ = reply.send(answer);
    })
}

/// Hands an operation to the writer on `ops` and waits for its committed
/// answer.
pub(super) async fn submit<T>(
    ops: &mpsc::Sender<Op>,
    op: impl FnOnce(Reply<T>) -> Op,
) -> Result<T, StoreError> {
    let (reply, answer) = oneshot::channel();
    ops.send(op(reply)).await.map_err(|_| super::stopped())?;
    answer.await.map_err(|_| super::stopped())?
}

/// What the writer tells the rest of the store.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// Transactions committed (for tests and benchmarks of group commit).
    pub(super) commits: AtomicU64,
    /// Messages not yet final, as of the last commit: backpressure asks on
    /// every enqueue, and this answers without a query.
    pub(super) depth: AtomicU64,
    /// The latest version of each template, forgotten at each change.
    pub(super) templates: super::template::Latest,
}

/// Runs the writer until every sender is gone, then closes the
/// connection. Blocks: run it on a thread of its own.
pub(super) fn run(conn: Connection, mut rx: mpsc::Receiver<Op>, shared: &Shared) {
    while let Some(first) = rx.blocking_recv() {
        let mut weight = first.weight();
        let mut group = vec![first];
        while weight < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => {
                    weight += op.weight();
                    group.push(op);
                }
                Err(_) => break,
            }
        }
        if !run_group(&conn, group, shared) {
            // Stopping makes every later change fail at once (and
            // /readyz report it), rather than each one at BEGIN.
            tracing::error!(
                "the sqlite write connection is stuck inside a transaction; the writer stops"
            );
            break;
        }
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the sqlite write connection");
    }
}

/// One transaction for the whole group; answers after the commit.
/// Returns whether the connection is fit for the next group (it is not if
/// it is still inside a transaction that neither committed nor rolled
/// back).
fn run_group(conn: &Connection, group: Vec<Op>, shared: &Shared) -> bool {
    let group: Vec<Op> = group.into_iter().filter(|op| !op.abandoned()).collect();
    if group.is_empty() {
        return true;
    }
    if let Err(reason) = execute(conn, "BEGIN IMMEDIATE") {
        group.into_iter().for_each(|op| op.fail(&reason));
        return conn.is_autocommit();
    }
    let mut done: Vec<Pending> = Vec::with_capacity(group.len());
    let mut broken: Option<String> = None;
    for op in group {
        if let Some(reason) = &broken {
            op.fail(reason);
            continue;
        }
        let (answer, fault) = run_op(conn, op);
        done.push(answer);
        broken = fault;
    }
    let commit = match broken {
        Some(reason) => Err(reason),
        None => execute(conn, "COMMIT"),
    };
    match &commit {
        Ok(()) => {
            shared.commits.fetch_add(1, Ordering::Relaxed);
            refresh_depth(conn, shared);
        }
        Err(reason) => {
            tracing::error!(reason = %reason, "sqlite group transaction rolled back");
            // May fail if SQLite already rolled back on its own; either way
            // nothing of this group is on disk.
            let _ = execute(conn, "ROLLBACK");
        }
    }
    let commit = commit.as_ref().map(|_| ()).map_err(String::as_str);
    for answer in done {
        answer(commit);
    }
    conn.is_autocommit()
}

/// Reads the committed queue depth into `shared` (at open, and after each
/// commit: a few microseconds, on the one connection that changes it).
pub(super) fn refresh_depth(conn: &Connection, shared: &Shared) {
    match query::depth(conn) {
        Ok(depth) => shared.depth.store(depth, Ordering::Relaxed),
        Err(e) => tracing::warn!(error = %e, "reading the queue depth"),
    }
}

/// Runs one operation in its own savepoint. Returns its pending answer,
/// and a reason if the transaction can no longer be trusted (a savepoint
/// could not be set or undone), which fails the whole group.
fn run_op(conn: &Connection, op: Op) -> (Pending, Option<String>) {
    if let Err(reason) = execute(conn, "SAVEPOINT op") {
        op.fail(&reason);
        return (Box::new(|_| {}), Some(reason));
    }
    match op {
        Op::Enqueue {
            messages,
            batch,
            reply,
        } => {
            let result = match batch {
                None => enqueue::enqueue(conn, messages),
                Some(batch) => enqueue::enqueue_batch_once(conn, &batch, messages)
                    .map(|answers| answers.into_iter().map(Ok).collect()),
            };
            settle(conn, reply, result)
        }
        Op::Claim {
            owner,
            limit,
            lease,
            now,
            max_lost,
            reply,
        } => settle(
            conn,
            reply,
            lease::claim(conn, &owner, limit, lease, now, max_lost),
        ),
        Op::ExtendLease {
            id,
            owner,
            until,
            reply,
        } => settle(conn, reply, lease::extend_lease(conn, &id, &owner, until)),
        Op::RecordAttempt {
            id,
            owner,
            attempt,
            reply,
        } => settle(
            conn,
            reply,
            attempt::record_attempt(conn, &id, &owner, *attempt),
        ),
        Op::Release { id, owner, reply } => settle(conn, reply, lease::release(conn, &id, &owner)),
        Op::Cancel { id, now, reply } => settle(conn, reply, attempt::cancel(conn, &id, now)),
        Op::Retry { id, now, reply } => settle(conn, reply, attempt::retry(conn, &id, now)),
        Op::Job(job) => job.run(conn),
        Op::Pragma { name, reply } => {
            let result = conn
                .query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
                .map_err(|e| StoreError::Unavailable(format!("sqlite: PRAGMA {name}: {e}")));
            settle(conn, reply, result)
        }
    }
}

/// Keeps the operation's writes if it succeeded, undoes them if not.
fn settle<T: Send + 'static>(
    conn: &Connection,
    reply: Reply<T>,
    result: Result<T, StoreError>,
) -> (Pending, Option<String>) {
    let fault = if result.is_ok() {
        execute(conn, "RELEASE op").err()
    } else {
        match execute(conn, "ROLLBACK TO op") {
            Ok(()) => execute(conn, "RELEASE op").err(),
            Err(reason) => Some(reason),
        }
    };
    (pending(reply, result), fault)
}

/// Runs a transaction-control statement (prepared once, then from the
/// connection's cache); the error names it.
fn execute(conn: &Connection, sql: &'static str) -> Result<(), String> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .map(drop)
        .map_err(|e| format!("sqlite: {sql}: {e}"))
}
