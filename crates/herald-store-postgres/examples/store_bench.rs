//! How many durable enqueues per second the PostgreSQL store takes with 1,
//! 16 and 64 concurrent callers (and how many transactions that cost: the
//! gain of group commit), then how many claim + record_attempt cycles per
//! second its workers get through. Messages of 2 KB for one recipient.
//!
//! `cargo run --release -p herald-store-postgres --example store_bench [SECONDS]`
//!
//! The server is `HERALD_BENCH_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); each run works in a schema
//! of its own, dropped afterwards.

// A measurement tool: it times runs on the machine's clocks.
#![allow(clippy::disallowed_methods)]

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald_store::{
    AttemptOutcome, AttemptRecord, NewMessage, NextStep, RecipientResult, RecipientStatus, Store,
};
use herald_store_postgres::{Clock, PgOptions, PgStore};
use time::OffsetDateTime;
use tokio_postgres::NoTls;

/// Workers claiming and recording at once, and how many each claims.
const WORKERS: usize = 8;
const CLAIM_BATCH: usize = 16;

fn server_url() -> String {
    std::env::var("HERALD_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A 2 KB message for one recipient, `seq` making its id unique.
fn message(seq: u64, now: OffsetDateTime) -> NewMessage {
    NewMessage {
        id: format!("01BENCH{seq:019}"),
        message_id: format!("<{seq}@bench.invalid>"),
        created_at: now,
        send_at: None,
        sender: Some("bench@example.com".to_owned()),
        recipients: vec!["a@example.com".to_owned()],
        rendered: vec![b'x'; 2048],
        smtputf8: false,
        tags: vec!["bench".to_owned()],
        metadata: Default::default(),
        trace_id: None,
        submitted_by: None,
        template: None,
        idempotency: None,
    }
}

/// A schema of its own for one run, dropped by [`Scratch::drop_it`] at the
/// end.
struct Scratch {
    admin: tokio_postgres::Client,
    name: String,
}

impl Scratch {
    async fn new(run: &str) -> Result<(Self, String), Box<dyn Error>> {
        let (admin, connection) = tokio_postgres::connect(&server_url(), NoTls).await?;
        tokio::spawn(connection);
        let name = format!("herald_bench_{}_{run}", std::process::id());
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .await?;
        let base = server_url();
        let joiner = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{joiner}options=-c%20search_path%3D{name}");
        Ok((Self { admin, name }, url))
    }

    async fn drop_it(self) -> Result<(), Box<dyn Error>> {
        self.admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .await?;
        Ok(())
    }
}

async fn open(url: &str) -> Result<Arc<PgStore>, Box<dyn Error>> {
    let options = PgOptions {
        clock: Clock::Database,
        ..PgOptions::default()
    };
    Ok(Arc::new(PgStore::open(url, options).await?))
}

/// `callers` enqueue loops for `length`: (enqueues, transactions, elapsed).
async fn enqueues(
    store: &Arc<PgStore>,
    callers: u64,
    length: Duration,
) -> Result<(u64, u64, Duration), Box<dyn Error>> {
    let next = Arc::new(AtomicU64::new(0));
    let before = store.commits();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (store, next) = (Arc::clone(store), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while start.elapsed() < length {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                store
                    .enqueue(message(seq, OffsetDateTime::now_utc()))
                    .await?;
                done += 1;
            }
            Ok::<u64, herald_store::StoreError>(done)
        }));
    }
    let mut done = 0;
    for task in tasks {
        done += task.await??;
    }
    Ok((done, store.commits() - before, start.elapsed()))
}

/// Workers claiming and delivering for `length`: (messages, elapsed).
async fn deliveries(
    store: &Arc<PgStore>,
    length: Duration,
) -> Result<(u64, Duration), Box<dyn Error>> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..WORKERS {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            let owner = format!("bench-{worker}");
            let mut done = 0u64;
            while start.elapsed() < length {
                let now = OffsetDateTime::now_utc();
                let claimed = store
                    .claim(&owner, CLAIM_BATCH, Duration::from_secs(60), now)
                    .await?;
                if claimed.is_empty() {
                    break;
                }
                for message in claimed {
                    let attempt = AttemptRecord {
                        started_at: now,
                        duration: Duration::from_millis(5),
                        relay: "bench".to_owned(),
                        outcome: AttemptOutcome::Delivered,
                        smtp_code: Some(250),
                        enhanced_code: Some("2.0.0".to_owned()),
                        detail: "250 2.0.0 OK".to_owned(),
                        recipients: message
                            .recipients
                            .iter()
                            .map(|address| RecipientResult {
                                address: address.clone(),
                                status: RecipientStatus::Delivered,
                                smtp_code: Some(250),
                                enhanced_code: Some("2.0.0".to_owned()),
                                response: Some("OK".to_owned()),
                                class: None,
                            })
                            .collect(),
                        class: None,
                        next: NextStep::GiveUp,
                        suppression: herald_store::SuppressionPolicy::default(),
                    };
                    store.record_attempt(&message.id, &owner, attempt).await?;
                    done += 1;
                }
            }
            Ok::<u64, herald_store::StoreError>(done)
        }));
    }
    let mut done = 0;
    for task in tasks {
        done += task.await??;
    }
    Ok((done, start.elapsed()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let seconds: u64 = std::env::args().nth(1).map_or(Ok(3), |s| s.parse())?;
    let mut scratches = Vec::new();
    let result = bench(Duration::from_secs(seconds), &mut scratches).await;
    // The schemas go whatever happened.
    for scratch in scratches {
        scratch.drop_it().await?;
    }
    result
}

async fn bench(length: Duration, scratches: &mut Vec<Scratch>) -> Result<(), Box<dyn Error>> {
    println!(
        "PostgreSQL store at {}, 2 KB messages for one recipient, {} s per run",
        herald_store::redact_url(&server_url()),
        length.as_secs()
    );
    println!(
        "{:>8} {:>10} {:>12} {:>13} {:>10}",
        "callers", "enqueues", "enqueues/s", "transactions", "msgs/tx"
    );
    let mut last = None;
    for callers in [1, 16, 64] {
        let (scratch, url) = Scratch::new(&callers.to_string()).await?;
        scratches.push(scratch);
        let store = open(&url).await?;
        let (done, transactions, elapsed) = enqueues(&store, callers, length).await?;
        println!(
            "{callers:>8} {done:>10} {:>12.0} {transactions:>13} {:>10.1}",
            done as f64 / elapsed.as_secs_f64(),
            done as f64 / transactions.max(1) as f64,
        );
        if let Some(store) = last.replace(store) {
            close(store).await;
        }
    }
    // Deliver what the last run queued.
    if let Some(store) = last {
        let queued = store.depth().await?;
        let (done, elapsed) = deliveries(&store, length).await?;
        println!(
            "claim + record_attempt: {done} messages in {:.1} s = {:.0}/s \
             ({WORKERS} workers claiming {CLAIM_BATCH} at a time, {queued} queued)",
            elapsed.as_secs_f64(),
            done as f64 / elapsed.as_secs_f64(),
        );
        close(store).await;
    }
    Ok(())
}

async fn close(store: Arc<PgStore>) {
    if let Ok(store) = Arc::try_unwrap(store) {
        store.close().await;
    }
}
