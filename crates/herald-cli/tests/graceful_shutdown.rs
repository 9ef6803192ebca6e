//! SIGTERM to `herald serve` while deliveries are in flight: the process
//! stops taking requests, finishes (or, past `server.drain_timeout`, gives
//! back) what it was sending, and exits 0, leaving nothing `sending`. A
//! request after the signal is refused, never answered `202` and lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// These tests run the binary in its own process: they wait on real time
// (for conditions, with deadlines), so they read the machine's clocks.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_testkit::{Fault, FaultRule, Phase, ServerConfig, TestServer};
use support::{Herald, Posted, Setup, TempDir};

const MESSAGES: usize = 50;
const CLIENTS: usize = 5;
const CONCURRENCY: usize = 8;
/// Long, so that a message wrongly left `sending` by the stopped node stays
/// stuck for the whole test instead of being taken over after a while.
const LEASE: &str = "30s";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn slow_relay(runtime: &tokio::runtime::Runtime, delay: Duration) -> TestServer {
    runtime
        .block_on(TestServer::start(ServerConfig {
            reply_delay: Some(delay),
            ..ServerConfig::default()
        }))
        .unwrap()
}

/// Posts messages `range` from `CLIENTS` threads; every one must be `202`.
fn post_all(base: &str, range: std::ops::Range<usize>) -> Vec<(String, String)> {
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let next = Arc::new(Mutex::new(range));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (acked, next, base) = (acked.clone(), next.clone(), base.to_owned());
            std::thread::spawn(move || {
                let agent = support::agent();
                loop {
                    let Some(n) = next.lock().unwrap().next() else {
                        break;
                    };
                    match support::post_message(&agent, &base, n) {
                        Posted::Accepted { id, message_id } => {
                            acked.lock().unwrap().push((id, message_id))
                        }
                        other => panic!("message {n}: {other:?}"),
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    acked.lock().unwrap().clone()
}

/// Waits until `log` contains `line` (or panics after 10 s).
fn wait_for_log(log: &Path, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(line)
    {
        assert!(Instant::now() < deadline, "{line:?} not logged within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Messages by status, read from the database file itself (the `sqlite3`
/// shell, read-only); `None` when the shell is not installed.
fn statuses_on_disk(db: &Path) -> Option<HashMap<String, usize>> {
    let output = Command::new("sqlite3")
        .arg("-readonly")
        .arg(db)
        .arg("SELECT status, count(*) FROM messages GROUP BY status")
        .output()
        .ok()?;
    assert!(
        output.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| l.split_once('|'))
            .map(|(status, n)| (status.to_owned(), n.parse().unwrap()))
            .collect(),
    )
}

#[test]
fn sigterm_drains_in_flight_deliveries_and_exits_0() {
    let runtime = runtime();
    let relay = slow_relay(&runtime, Duration::from_millis(100));
    let dir = TempDir::new("sigterm");
    let setup = Setup {
        http_port: support::free_port(),
        relay_port: relay.port(),
        concurrency: CONCURRENCY,
        lease: LEASE,
        drain_timeout: "10s",
        data_timeout: "5s",
    };
    let config = support::write_config(dir.path(), &setup);
    let log1 = dir.path().join("first.log");
    let mut herald = Herald::start(&config, setup.http_port, &log1);
    let base = herald.base.clone();

    let mut acked = post_all(&base, 0..MESSAGES);
    assert_eq!(acked.len(), MESSAGES);

    // A client keeps posting across the signal: whatever it is told `202`
    // must be delivered like the rest.
    let stop = Arc::new(AtomicBool::new(false));
    let racer = {
        let (stop, base) = (stop.clone(), base.clone());
        std::thread::spawn(move || {
            let agent = support::agent();
            let mut acked = Vec::new();
            let mut refusals = Vec::new();
            for n in MESSAGES..MESSAGES + 10_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match support::post_message(&agent, &base, n) {
                    Posted::Accepted { id, message_id } => acked.push((id, message_id)),
                    Posted::Refused(status, body) => {
                        assert_eq!(status, 503, "after SIGTERM: {body}");
                        refusals.push(status.to_string());
                    }
                    Posted::Failed(error) => {
                        refusals.push(error);
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (acked, refusals)
        })
    };

    // Deliveries are in flight: the first ones arrived, most have not.
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.message_count() < CONCURRENCY {
        assert!(
            Instant::now() < deadline,
            "the relay got nothing within 20 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let signalled = Instant::now();
    herald.terminate();
    wait_for_log(&log1, "SIGTERM received");
    wait_for_log(&log1, "HTTP listener closed");
    // The listener is gone (draining or exited): a new request is refused.
    let late = support::post_message(&support::agent(), &base, 99_999);
    assert!(
        matches!(late, Posted::Failed(_) | Posted::Refused(503, _)),
        "a request after SIGTERM was answered: {late:?}"
    );
    let status = herald
        .wait_exit(Duration::from_secs(10 + 5))
        .expect("herald did not exit within drain_timeout + 5 s");
    let took = signalled.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (raced, refusals) = racer.join().unwrap();
    let log = std::fs::read_to_string(&log1).unwrap();
    assert_eq!(status.code(), Some(0), "exit status {status}; log:\n{log}");
    assert!(!refusals.is_empty(), "the racing client was never refused");
    assert!(
        log.contains("draining in-flight deliveries"),
        "nothing was in flight:\n{log}"
    );
    assert!(
        !log.contains("drain timeout reached"),
        "the drain needed its timeout:\n{log}"
    );
    let relayed_at_exit = relay.message_count();
    assert!(
        relayed_at_exit < MESSAGES,
        "every message was delivered before the exit; the shutdown did not interrupt anything"
    );
    eprintln!(
        "SIGTERM → exit 0 in {:.0} ms; {relayed_at_exit} of {} relayed; {} acked while racing the signal; refused with {:?}",
        took.as_secs_f64() * 1000.0,
        MESSAGES + raced.len(),
        raced.len(),
        refusals.last()
    );
    acked.extend(raced);

    // Nothing is left `sending` on disk ...
    if let Some(statuses) = statuses_on_disk(&dir.path().join("herald.db")) {
        assert_eq!(
            statuses.get("sending"),
            None,
            "left sending after a clean exit: {statuses:?}"
        );
    }
    // ... and the rest is delivered after a restart, well within the lease
    // a forgotten `sending` message would be stuck behind.
    let log2 = dir.path().join("second.log");
    let herald = Herald::start(&config, setup.http_port, &log2);
    let agent = support::agent();
    let ids: Vec<String> = acked.iter().map(|(id, _)| id.clone()).collect();
    let left = support::wait_all_delivered(&agent, &herald.base, &ids, Duration::from_secs(20));
    assert!(left.is_empty(), "not delivered after the restart: {left:?}");
    let second = std::fs::read_to_string(&log2).unwrap();
    assert!(
        !second.contains("reclaimed"),
        "a clean stop left leases behind:\n{second}"
    );
    assert_exactly_once(&relay, &acked);
}

#[test]
fn past_the_drain_timeout_unfinished_deliveries_are_given_back() {
    let runtime = runtime();
    // Every reply takes 3 s: nothing finishes within the 1 s drain.
    let stalled = slow_relay(&runtime, Duration::from_secs(3));
    let dir = TempDir::new("drain");
    let mut setup = Setup {
        http_port: support::free_port(),
        relay_port: stalled.port(),
        concurrency: CONCURRENCY,
        lease: LEASE,
        drain_timeout: "1s",
        data_timeout: "10s",
    };
    let config = support::write_config(dir.path(), &setup);
    let log1 = dir.path().join("first.log");
    let mut herald = Herald::start(&config, setup.http_port, &log1);
    let acked = post_all(&herald.base.clone(), 0..20);
    // Wait until the dispatcher has claimed work (its connections are open).
    let deadline = Instant::now() + Duration::from_secs(10);
    while stalled.connections() < CONCURRENCY {
        assert!(Instant::now() < deadline, "no delivery started within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let signalled = Instant::now();
    herald.terminate();
    let status = herald
        .wait_exit(Duration::from_secs(1 + 5))
        .expect("herald did not exit within drain_timeout + 5 s");
    let took = signalled.elapsed();
    let log = std::fs::read_to_string(&log1).unwrap();
    assert_eq!(status.code(), Some(0), "exit status {status}; log:\n{log}");
    assert!(
        log.contains("drain timeout reached"),
        "the drain did not time out:\n{log}"
    );
    assert!(
        took < Duration::from_secs(4),
        "exit took {took:?}, not about the 1 s drain timeout"
    );
    assert_eq!(stalled.message_count(), 0);
    if let Some(statuses) = statuses_on_disk(&dir.path().join("herald.db")) {
        assert_eq!(
            statuses.get("sending"),
            None,
            "left sending after the drain: {statuses:?}"
        );
        assert_eq!(statuses.get("queued"), Some(&acked.len()), "{statuses:?}");
    }

    // Restart against a relay that answers: the given-back messages go at
    // once, not after the 30 s lease.
    let relay = slow_relay(&runtime, Duration::from_millis(1));
    setup.relay_port = relay.port();
    let config = support::write_config(dir.path(), &setup);
    let herald = Herald::start(&config, setup.http_port, &dir.path().join("second.log"));
    let ids: Vec<String> = acked.iter().map(|(id, _)| id.clone()).collect();
    let left = support::wait_all_delivered(
        &support::agent(),
        &herald.base,
        &ids,
        Duration::from_secs(15),
    );
    assert!(left.is_empty(), "not delivered after the restart: {left:?}");
    assert_exactly_once(&relay, &acked);
}

#[test]
fn a_relay_that_never_answers_quit_does_not_hold_up_the_exit() {
    let runtime = runtime();
    let relay = runtime
        .block_on(TestServer::start(ServerConfig {
            reply_delay: Some(Duration::from_millis(20)),
            faults: vec![FaultRule::always(Phase::Quit, Fault::Stall)],
            ..ServerConfig::default()
        }))
        .unwrap();
    let dir = TempDir::new("quit");
    let setup = Setup {
        http_port: support::free_port(),
        relay_port: relay.port(),
        concurrency: CONCURRENCY,
        lease: LEASE,
        drain_timeout: "2s",
        data_timeout: "5s",
    };
    let config = support::write_config(dir.path(), &setup);
    let log1 = dir.path().join("first.log");
    let mut herald = Herald::start(&config, setup.http_port, &log1);
    let acked = post_all(&herald.base.clone(), 0..MESSAGES);
    // Every connection has carried a message, so all are open (and go idle
    // in the pool once the drain is over).
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.message_count() < 2 * CONCURRENCY {
        assert!(
            Instant::now() < deadline,
            "the relay got too little within 20 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let signalled = Instant::now();
    herald.terminate();
    let status = herald
        .wait_exit(Duration::from_secs(2 + 20))
        .expect("herald did not exit within drain_timeout + 20 s");
    let took = signalled.elapsed();
    let log = std::fs::read_to_string(&log1).unwrap();
    assert_eq!(status.code(), Some(0), "exit status {status}; log:\n{log}");
    eprintln!(
        "exit {:.1} s after SIGTERM with {} connections open",
        took.as_secs_f64(),
        relay.connections()
    );
    assert!(
        took < Duration::from_secs(2 + 3),
        "exit took {took:?}: saying QUIT to unresponsive relays outlasted the 2 s drain timeout by far"
    );
    assert!(acked.len() == MESSAGES);
}

/// Every acknowledged message reached `relay` exactly once.
fn assert_exactly_once(relay: &TestServer, acked: &[(String, String)]) {
    let mut received: HashMap<String, usize> = HashMap::new();
    for message in relay.messages() {
        let id = support::message_id_of(&message.data).expect("a Message-ID");
        *received.entry(id).or_default() += 1;
    }
    for (id, message_id) in acked {
        assert_eq!(
            received.get(message_id),
            Some(&1),
            "message {id} ({message_id})"
        );
    }
    assert_eq!(
        received.len(),
        acked.len(),
        "relayed messages nobody was told about"
    );
}
