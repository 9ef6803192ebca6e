//! The single writer, and with it group commit.
//!
//! SQLite lets one connection write at a time and makes every commit pay
//! an fsync (`synchronous=FULL`). So every change goes through one task
//! that owns the write connection: it takes the first waiting operation,
//! drains whatever else has queued up meanwhile, runs them all in one
//! `BEGIN IMMEDIATE … COMMIT`, and only then answers each caller. Under
//! load, hundreds of enqueues share one fsync; alone, an enqueue pays one.
//! Each operation runs inside its own SAVEPOINT, so one that fails is
//! rolled back alone and the others still commit.
//!
//! Routing claims and attempt records through the same queue (rather than
//! a second connection contending for the lock) also keeps the dispatcher
//! from starving behind a stream of enqueues: the channel is first come,
//! first served, where SQLite's busy handler is not.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::{Connection, SqliteConnection};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::{attempt, enqueue, lease};
use crate::{
    AttemptRecord, Claimed, Enqueued, MessageRecord, MessageStatus, NewMessage, StoreError,
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
        reply: Reply<Vec<Result<Enqueued, StoreError>>>,
    },
    Claim {
        owner: String,
        limit: usize,
        lease: Duration,
        now: OffsetDateTime,
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
        reply: Reply<MessageStatus>,
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
    ReclaimExpired {
        now: OffsetDateTime,
        reply: Reply<u64>,
    },
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
            Op::ReclaimExpired { reply, .. } => reply.is_closed(),
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
            Op::ReclaimExpired { reply, .. } => reply.send(Err(err())).map_err(drop),
            Op::Pragma { reply, .. } => reply.send(Err(err())).map_err(drop),
        };
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

/// Runs the writer until every sender is gone.
pub(super) async fn run(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<Op>,
    commits: Arc<AtomicU64>,
) {
    while let Some(first) = rx.recv().await {
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
        run_group(&mut conn, group, &commits).await;
    }
    if let Err(e) = conn.close().await {
        tracing::warn!(error = %e, "closing the sqlite write connection");
    }
}

/// One transaction for the whole group; answers after the commit.
async fn run_group(conn: &mut SqliteConnection, group: Vec<Op>, commits: &AtomicU64) {
    let group: Vec<Op> = group.into_iter().filter(|op| !op.abandoned()).collect();
    if group.is_empty() {
        return;
    }
    if let Err(reason) = execute(conn, "BEGIN IMMEDIATE").await {
        group.into_iter().for_each(|op| op.fail(&reason));
        return;
    }
    let mut done: Vec<Pending> = Vec::with_capacity(group.len());
    let mut broken: Option<String> = None;
    for op in group {
        if let Some(reason) = &broken {
            op.fail(reason);
            continue;
        }
        let (answer, fault) = run_op(conn, op).await;
        done.push(answer);
        broken = fault;
    }
    let commit = match broken {
        Some(reason) => Err(reason),
        None => execute(conn, "COMMIT").await,
    };
    match &commit {
        Ok(()) => {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        Err(reason) => {
            tracing::error!(reason = %reason, "sqlite group transaction rolled back");
            // May fail if SQLite already rolled back on its own; either way
            // nothing of this group is on disk.
            let _ = execute(conn, "ROLLBACK").await;
        }
    }
    let commit = commit.as_ref().map(|_| ()).map_err(String::as_str);
    for answer in done {
        answer(commit);
    }
}

/// Runs one operation in its own savepoint. Returns its pending answer,
/// and a reason if the transaction can no longer be trusted (a savepoint
/// could not be set or undone), which fails the whole group.
async fn run_op(conn: &mut SqliteConnection, op: Op) -> (Pending, Option<String>) {
    if let Err(reason) = execute(conn, "SAVEPOINT op").await {
        op.fail(&reason);
        return (Box::new(|_| {}), Some(reason));
    }
    match op {
        Op::Enqueue { messages, reply } => {
            let result = enqueue::enqueue(conn, messages).await;
            settle(conn, reply, result).await
        }
        Op::Claim {
            owner,
            limit,
            lease,
            now,
            reply,
        } => {
            let result = lease::claim(conn, &owner, limit, lease, now).await;
            settle(conn, reply, result).await
        }
        Op::ExtendLease {
            id,
            owner,
            until,
            reply,
        } => {
            let result = lease::extend_lease(conn, &id, &owner, until).await;
            settle(conn, reply, result).await
        }
        Op::RecordAttempt {
            id,
            owner,
            attempt,
            reply,
        } => {
            let result = attempt::record_attempt(conn, &id, &owner, *attempt).await;
            settle(conn, reply, result).await
        }
        Op::Release { id, owner, reply } => {
            let result = lease::release(conn, &id, &owner).await;
            settle(conn, reply, result).await
        }
        Op::Cancel { id, now, reply } => {
            let result = attempt::cancel(conn, &id, now).await;
            settle(conn, reply, result).await
        }
        Op::Retry { id, now, reply } => {
            let result = attempt::retry(conn, &id, now).await;
            settle(conn, reply, result).await
        }
        Op::ReclaimExpired { now, reply } => {
            let result = lease::reclaim_expired(conn, now).await;
            settle(conn, reply, result).await
        }
        Op::Pragma { name, reply } => {
            let result = sqlx::query_scalar(&format!("PRAGMA {name}"))
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| StoreError::Unavailable(format!("sqlite: PRAGMA {name}: {e}")));
            settle(conn, reply, result).await
        }
    }
}

/// Keeps the operation's writes if it succeeded, undoes them if not.
async fn settle<T: Send + 'static>(
    conn: &mut SqliteConnection,
    reply: Reply<T>,
    result: Result<T, StoreError>,
) -> (Pending, Option<String>) {
    let fault = if result.is_ok() {
        execute(conn, "RELEASE op").await.err()
    } else {
        match execute(conn, "ROLLBACK TO op").await {
            Ok(()) => execute(conn, "RELEASE op").await.err(),
            Err(reason) => Some(reason),
        }
    };
    (pending(reply, result), fault)
}

/// Runs a transaction-control statement; the error names it. (A prepared
/// `query`, not `raw_sql`: the latter's future cannot be shown `Send`
/// inside the spawned writer task.)
async fn execute(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), String> {
    sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .map(drop)
        .map_err(|e| format!("sqlite: {sql}: {e}"))
}
