//! Several `herald serve` nodes on one PostgreSQL queue, as separate
//! processes delivering to one testkit relay: the work is shared, and when
//! one node gets `kill -9` nothing it accepted is lost — the others deliver
//! its leased messages once the leases expire, and the only price is a
//! bounded number of duplicates.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// These tests run the binary in its own process: they wait on real time
// (for conditions, with deadlines), so they read the machine's clocks.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Herald, PgDatabase, Posted, Setup};

/// Messages the clients try to post in all.
const MESSAGES: usize = 300;
/// Concurrent HTTP clients, spread over the living nodes.
const CLIENTS: usize = 6;
/// Each node's `delivery.concurrency`: the bound on the dead node's
/// duplicates.
const CONCURRENCY: usize = 8;
/// The node that is killed.
const VICTIM: usize = 1;

#[test]
fn three_nodes_share_one_queue_and_lose_nothing_to_a_kill_9() {
    let started = Instant::now();
    // Slow enough that every node has deliveries in flight.
    let (_runtime, relay) = support::slow_relay();
    let db = PgDatabase::create("nodes");
    let dir = support::TempDir::new("nodes");
    let nodes: Vec<(Herald, std::path::PathBuf)> = (0..3)
        .map(|n| {
            let setup = Setup {
                http_port: support::free_port(),
                relay_port: relay.port(),
                concurrency: CONCURRENCY,
                // Short, so the dead node's messages move within seconds;
                // heartbeats keep the living nodes' leases.
                lease: "3s",
                drain_timeout: "1s",
                data_timeout: "2s",
            };
            let config =
                support::write_config_on(dir.path(), &format!("node{n}.toml"), &setup, &db.url);
            let log = dir.path().join(format!("node{n}.log"));
            (Herald::start(&config, setup.http_port, &log), log)
        })
        .collect();
    let bases: Vec<String> = nodes.iter().map(|(h, _)| h.base.clone()).collect();

    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let victim_dead = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (acked, next, dead, bases) = (
                acked.clone(),
                next.clone(),
                victim_dead.clone(),
                bases.clone(),
            );
            std::thread::spawn(move || {
                let agent = support::agent();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= MESSAGES {
                        return;
                    }
                    let mut node = (c + n) % bases.len();
                    if node == VICTIM && dead.load(Ordering::Relaxed) {
                        node = (node + 1) % bases.len();
                    }
                    match support::post_message(&agent, &bases[node], n) {
                        Posted::Accepted { id, message_id } => {
                            acked.lock().unwrap().push((id, message_id))
                        }
                        Posted::Refused(status, body) => panic!("message {n}: {status} {body}"),
                        // Sent to the victim as it died: never promised.
                        Posted::Failed(_) => assert_eq!(node, VICTIM, "message {n}"),
                    }
                }
            })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < MESSAGES / 2 {
        assert!(Instant::now() < deadline, "half the posts took over 30 s");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut nodes = nodes;
    let (victim, _) = nodes.remove(VICTIM);
    victim.kill();
    victim_dead.store(true, Ordering::Relaxed);
    let relayed_at_kill = relay.message_count();
    for client in clients {
        client.join().unwrap();
    }
    let acked: Vec<(String, String)> = acked.lock().unwrap().clone();
    assert!(
        relayed_at_kill < acked.len(),
        "everything was relayed before the kill; nothing was tested"
    );

    // Any living node answers for the whole queue.
    let agent = support::agent();
    let ids: Vec<String> = acked.iter().map(|(id, _)| id.clone()).collect();
    let left = support::wait_all_delivered(&agent, &nodes[1].0.base, &ids, Duration::from_secs(60));
    assert!(left.is_empty(), "accepted but not delivered: {left:?}");

    let mut received: HashMap<String, usize> = HashMap::new();
    for message in relay.messages() {
        let id = support::message_id_of(&message.data).expect("a Message-ID");
        *received.entry(id).or_default() += 1;
    }
    let missing: Vec<_> = acked
        .iter()
        .filter(|(_, mid)| !received.contains_key(mid))
        .collect();
    assert!(
        missing.is_empty(),
        "accepted but never relayed: {missing:?}"
    );
    let duplicates = received.values().filter(|n| **n > 1).count();
    assert!(
        duplicates <= CONCURRENCY,
        "{duplicates} messages relayed twice; at most {CONCURRENCY} were in flight on the dead node"
    );

    // The dead node's leased messages were taken over after their leases
    // expired, and delivered by the others.
    let taken_over: Vec<&String> = ids
        .iter()
        .filter(|id| {
            support::get_message(&agent, &nodes[0].0.base, id)
                .events
                .iter()
                .flatten()
                .any(|e| e.kind == herald_api::EventKind::LeaseExpired)
        })
        .collect();
    assert!(
        (1..=CONCURRENCY).contains(&taken_over.len()),
        "{} messages record an expired lease; expected 1 to {CONCURRENCY}",
        taken_over.len()
    );
    // Every node delivered a share (the queue is shared, not partitioned).
    for (n, log) in [(0, &nodes[0].1), (2, &nodes[1].1)] {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(
            text.contains("delivery attempt"),
            "node {n} delivered nothing:\n{text}"
        );
    }
    let victim_log = std::fs::read_to_string(dir.path().join(format!("node{VICTIM}.log"))).unwrap();
    assert!(
        victim_log.contains("delivery attempt"),
        "the victim delivered nothing"
    );
    eprintln!(
        "3 nodes: {} acked, {} relayed at the kill, {} distinct relayed, {duplicates} duplicates, {} taken over; {:.1} s",
        acked.len(),
        relayed_at_kill,
        received.len(),
        taken_over.len(),
        started.elapsed().as_secs_f64()
    );
    drop(nodes);
    drop(relay);
    drop(db);
}
