//! `kill -9` of `herald serve` while clients post and deliveries are in
//! flight, then a restart on the same configuration: every message that was
//! answered `202` reaches the relay, and the only price is a bounded number
//! of duplicates (at most the deliveries in flight, `delivery.concurrency`),
//! and the restarted node takes back the leases it held at once: its
//! in-flight mail moves within seconds, not after the lease.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// These tests run the binary in its own process: they wait on real time
// (for conditions, with deadlines), so they read the machine's clocks.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Herald, PgDatabase, Posted, Setup};

/// Messages the clients try to post in all.
const MESSAGES: usize = 300;
/// Concurrent HTTP clients.
const CLIENTS: usize = 4;
/// `delivery.concurrency`: the bound on duplicates.
const CONCURRENCY: usize = 8;

/// The lease: far longer than the test may wait for the restarted node to
/// deliver, so mail that waited for the dead node's leases to expire would
/// fail the test.
const LEASE: &str = "5m";

/// How long the restarted node gets to deliver everything.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(30);

/// Where the queue is.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

#[test]
fn kill_9_after_50_acknowledgements_loses_nothing() {
    crash_and_recover(50, Backend::Sqlite);
}

#[test]
fn kill_9_after_200_acknowledgements_loses_nothing() {
    crash_and_recover(200, Backend::Sqlite);
}

/// On PostgreSQL the restarted node finds its leases by its node id (the
/// same host and port, so the same default id) and takes them back.
#[test]
fn kill_9_on_postgres_loses_nothing_and_the_restart_takes_its_leases_back() {
    crash_and_recover(100, Backend::Postgres);
}

fn crash_and_recover(kill_after: usize, backend: Backend) {
    let started = Instant::now();
    // Slow enough that deliveries are in flight when the kill comes.
    let (_runtime, relay) = support::slow_relay();

    let dir = support::TempDir::new("crash");
    let setup = Setup {
        http_port: support::free_port(),
        relay_port: relay.port(),
        concurrency: CONCURRENCY,
        lease: LEASE,
        drain_timeout: "1s",
        data_timeout: "1s",
    };
    let pg = matches!(backend, Backend::Postgres).then(|| PgDatabase::create("crash"));
    let config = match &pg {
        None => support::write_config(dir.path(), &setup),
        Some(db) => support::write_config_on(dir.path(), "herald.toml", &setup, &db.url),
    };
    let log1 = dir.path().join("first.log");
    let log2 = dir.path().join("second.log");
    let herald = Herald::start(&config, setup.http_port, &log1);
    let base = herald.base.clone();

    // Clients post until told to stop; every 202 is recorded.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (acked, next, stop, base) =
                (acked.clone(), next.clone(), stop.clone(), base.clone());
            std::thread::spawn(move || {
                let agent = support::agent();
                let mut failures = 0;
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= MESSAGES {
                        break;
                    }
                    match support::post_message(&agent, &base, n) {
                        Posted::Accepted { id, message_id } => {
                            acked.lock().unwrap().push((id, message_id))
                        }
                        Posted::Refused(status, body) => panic!("message {n}: {status} {body}"),
                        // After the kill: never acknowledged, so never promised.
                        Posted::Failed(_) => failures += 1,
                    }
                }
                failures
            })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < kill_after {
        assert!(
            Instant::now() < deadline,
            "{kill_after} acknowledgements took over 20 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let relayed_before_kill = relay.message_count();
    herald.kill();
    let acked_at_kill = acked.lock().unwrap().len();
    stop.store(true, Ordering::Relaxed);
    let failed_posts: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    let acked: Vec<(String, String)> = acked.lock().unwrap().clone();
    assert!(
        acked.len() < MESSAGES,
        "the kill came after every post was answered; nothing was tested"
    );
    assert!(
        relayed_before_kill < acked_at_kill,
        "everything was delivered before the kill ({relayed_before_kill} of {acked_at_kill}); the relay is too fast"
    );
    eprintln!(
        "killed after {acked_at_kill} acks ({} in all, {failed_posts} posts failed); {relayed_before_kill} relayed before the kill",
        acked.len()
    );

    let herald = Herald::start(&config, setup.http_port, &log2);
    let agent = support::agent();
    let ids: Vec<String> = acked.iter().map(|(id, _)| id.clone()).collect();
    let left = support::wait_all_delivered(&agent, &herald.base, &ids, DELIVERY_DEADLINE);
    assert!(
        left.is_empty(),
        "not delivered within {DELIVERY_DEADLINE:?} of the restart (the lease is {LEASE}): {left:?}"
    );

    // What the relay received, by Message-ID.
    let mut received: HashMap<String, usize> = HashMap::new();
    for message in relay.messages() {
        let id =
            support::message_id_of(&message.data).expect("every relayed message has a Message-ID");
        *received.entry(id).or_default() += 1;
    }
    let missing: Vec<&(String, String)> = acked
        .iter()
        .filter(|(_, mid)| !received.contains_key(mid))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never relayed: {missing:?}"
    );
    let duplicates: Vec<(&String, &usize)> = received.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.len() <= CONCURRENCY,
        "{} messages relayed more than once (at most {CONCURRENCY} were in flight): {duplicates:?}",
        duplicates.len()
    );
    assert!(
        duplicates.iter().all(|(_, n)| **n == 2),
        "one crash, yet a message was relayed three times or more: {duplicates:?}"
    );
    // Messages committed whose 202 was cut off by the kill are delivered
    // too; there can be no more of them than requests in flight.
    let acked_ids: HashSet<&String> = acked.iter().map(|(_, mid)| mid).collect();
    let unacked: Vec<&String> = received
        .keys()
        .filter(|mid| !acked_ids.contains(mid))
        .collect();
    assert!(
        unacked.len() <= CLIENTS,
        "{} relayed messages were never acknowledged, more than the {CLIENTS} requests in flight: {unacked:?}",
        unacked.len()
    );

    // The restarted node took its claims back at start-up: recorded in
    // the history of the messages it had in flight.
    let taken_over = ids
        .iter()
        .filter(|id| {
            support::get_message(&agent, &herald.base, id)
                .events
                .iter()
                .flatten()
                .any(|e| e.kind == herald_api::EventKind::LeaseReclaimed)
        })
        .count();
    assert!(
        (1..=CONCURRENCY).contains(&taken_over),
        "{taken_over} messages record a reclaimed lease; expected 1 to {CONCURRENCY}"
    );
    let second_log = std::fs::read_to_string(&log2).unwrap();
    assert!(
        second_log.contains("took back the leases this node held"),
        "the restarted node did not log taking its leases back:\n{second_log}"
    );
    eprintln!(
        "{backend:?} restart: {} acked, {} distinct relayed, {} duplicates, {} unacknowledged relayed, {taken_over} leases taken over; {:.1} s",
        acked.len(),
        received.len(),
        duplicates.len(),
        unacked.len(),
        started.elapsed().as_secs_f64()
    );
    drop(herald);
    drop(relay);
    drop(pg);
}
