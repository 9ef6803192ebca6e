//! How many durable enqueues per second the SQLite store takes with 1, 16
//! and 64 concurrent callers, and how many commits (fsyncs) that cost:
//! the gain of group commit, in numbers.
//!
//! `cargo run --release -p herald-store --example enqueue_bench [DIR] [SECONDS]`
//!
//! DIR (default: the system's temporary directory) should be on the disk
//! you care about: fsync cost is the whole story.

// A measurement tool: it times runs on the machine's clocks.
#![allow(clippy::disallowed_methods)]

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald_store::{NewMessage, Store};
use herald_store_sqlite::SqliteStore;
use time::OffsetDateTime;

/// A 2 KB message for two recipients, `seq` making its id unique.
fn message(seq: u64, now: OffsetDateTime) -> NewMessage {
    NewMessage {
        id: format!("01BENCH{seq:019}"),
        message_id: format!("<{seq}@bench.invalid>"),
        created_at: now,
        send_at: None,
        sender: Some("bench@example.com".to_owned()),
        recipients: vec!["a@example.com".to_owned(), "b@example.org".to_owned()],
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

/// Runs `callers` enqueue loops against a fresh database for `length`;
/// returns (enqueues, commits, elapsed). The database is removed after.
async fn run(
    dir: &Path,
    callers: u64,
    length: Duration,
) -> Result<(u64, u64, Duration), Box<dyn Error>> {
    let path = dir.join(format!("herald-bench-{}-{callers}.db", std::process::id()));
    let result = measure(&path, callers, length).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    result
}

async fn measure(
    path: &Path,
    callers: u64,
    length: Duration,
) -> Result<(u64, u64, Duration), Box<dyn Error>> {
    let store = Arc::new(SqliteStore::open(path.to_str().ok_or("path is not UTF-8")?).await?);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (store, next) = (Arc::clone(&store), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < length {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                store
                    .enqueue(message(seq, OffsetDateTime::now_utc()))
                    .await?;
            }
            Ok::<(), herald_store::StoreError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = start.elapsed();
    let commits = store.commits();
    let done = store.depth().await?;
    if let Ok(store) = Arc::try_unwrap(store) {
        store.close().await;
    }
    Ok((done, commits, elapsed))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
    let seconds: u64 = args.next().map_or(Ok(3), |s| s.parse())?;
    println!(
        "SQLite store, WAL + synchronous=FULL, 2 KB messages, {seconds} s per run, in {}",
        dir.display()
    );
    println!(
        "{:>8} {:>10} {:>12} {:>9} {:>14}",
        "callers", "enqueues", "enqueues/s", "commits", "msgs/commit"
    );
    for callers in [1, 16, 64] {
        let (done, commits, elapsed) = run(&dir, callers, Duration::from_secs(seconds)).await?;
        println!(
            "{callers:>8} {done:>10} {:>12.0} {commits:>9} {:>14.1}",
            done as f64 / elapsed.as_secs_f64(),
            done as f64 / commits.max(1) as f64,
        );
    }
    Ok(())
}
