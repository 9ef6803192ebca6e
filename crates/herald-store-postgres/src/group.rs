//! Group commit for enqueues.
//!
//! Every enqueue is handed to a few committer tasks. A committer takes the
//! first waiting request, drains whatever else has queued up meanwhile,
//! and stores them all in one transaction (see [`super::enqueue`]): under
//! load, dozens of enqueues share one commit — one WAL flush, one
//! `NOTIFY`, and a handful of multi-row statements instead of a handful
//! each. Alone, an enqueue pays what it would have paid anyway.
//!
//! `NOTIFY` is why this matters more on PostgreSQL than it seems: a
//! transaction that notifies takes a database-wide lock while it commits,
//! so notifying transactions commit one at a time, and the server's own
//! grouping of WAL flushes cannot help them.
//!
//! If a group fails for a reason of its own (one request the database
//! refuses: a duplicate id, a NUL byte in a text), each request is tried
//! again alone, so that only the one at fault fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::Shared;
use super::enqueue::{self, Answer, Request};
use herald_store::StoreError;

/// Most messages stored in one transaction: bounds the latency one group
/// adds to the next and the size of one transaction.
const MAX_GROUP: usize = 256;

/// How many groups may be in flight at once (each on its own connection).
const COMMITTERS: usize = 2;

/// How many requests may wait before callers wait to hand theirs over.
const QUEUE: usize = 1024;

/// An enqueue request and where its answer goes.
#[derive(Debug)]
struct Job {
    request: Request,
    reply: oneshot::Sender<Answer>,
}

/// The committer tasks.
#[derive(Debug)]
pub(crate) struct Committer {
    jobs: mpsc::Sender<Job>,
    tasks: Vec<JoinHandle<()>>,
    commits: Arc<AtomicU64>,
}

impl Committer {
    /// Starts the committers.
    pub(crate) fn start(shared: Arc<Shared>) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        let commits = Arc::new(AtomicU64::new(0));
        let tasks = (0..COMMITTERS)
            .map(|_| {
                let (shared, queue, commits) = (
                    Arc::clone(&shared),
                    Arc::clone(&queue),
                    Arc::clone(&commits),
                );
                tokio::spawn(run(shared, queue, commits))
            })
            .collect();
        Self {
            jobs,
            tasks,
            commits,
        }
    }

    /// Enqueue transactions committed so far.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Stores `request` in the next group and waits for its answer.
    pub(crate) async fn submit(&self, request: Request) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { request, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Lets the committers finish the requests already handed over, then
    /// waits for them to stop.
    pub(crate) async fn close(self) {
        drop(self.jobs);
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "a postgres committer task ended abnormally");
            }
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("postgres: the store is closed".into())
}

/// One committer: a group at a time until the store closes.
async fn run(shared: Arc<Shared>, queue: Arc<Mutex<mpsc::Receiver<Job>>>, commits: Arc<AtomicU64>) {
    loop {
        let group = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut weight = enqueue::weight(&first.request);
            let mut group = vec![first];
            while weight < MAX_GROUP {
                match queue.try_recv() {
                    Ok(job) => {
                        weight += enqueue::weight(&job.request);
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        let committed = commit(&shared, group).await;
        commits.fetch_add(committed, Ordering::Relaxed);
    }
}

/// Stores a group and answers each of its callers; how many transactions
/// committed.
async fn commit(shared: &Shared, group: Vec<Job>) -> u64 {
    // A caller who stopped waiting will not hear the answer: better not
    // to store its messages.
    let (requests, replies): (Vec<Request>, Vec<_>) = group
        .into_iter()
        .filter(|job| !job.reply.is_closed())
        .map(|job| (job.request, job.reply))
        .unzip();
    if requests.is_empty() {
        return 0;
    }
    match enqueue::store(shared, &requests).await {
        Ok(stored) => {
            shared.depth.add(stored.messages);
            for (reply, answer) in replies.into_iter().zip(stored.answers) {
                let _ = reply.send(answer);
            }
            1
        }
        Err(e) if requests.len() > 1 && !e.is_transient() => {
            tracing::debug!(error = %e, "an enqueue group failed; storing its requests one by one");
            let mut committed = 0;
            for (request, reply) in requests.into_iter().zip(replies) {
                let answer = match enqueue::store(shared, std::slice::from_ref(&request)).await {
                    Ok(mut stored) => {
                        committed += 1;
                        shared.depth.add(stored.messages);
                        stored.answers.pop().unwrap_or_else(|| Err(stopped()))
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(answer);
            }
            committed
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(copy(&e)));
            }
            0
        }
    }
}

/// `error` again, for another caller of the same failed group.
fn copy(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unusable(text) => StoreError::Unusable(text.clone()),
        StoreError::Unavailable(text) => StoreError::Unavailable(text.clone()),
        other => StoreError::Unavailable(format!("postgres: {other}")),
    }
}
