//! Relay limits end to end with testkit relays: a rate makes messages
//! wait for their slot (none is lost or failed), a daily quota sends the
//! rest through the next relay or defers it to the reset with an event
//! that says so, and nodes sharing a PostgreSQL store share one quota.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::pg::PgDatabase;
use common::{Herald, config_text, manual_clock, message, temp_dir};
use herald_api::{CircuitState, Event, EventKind, MessageStatus, Relays};
use herald_policy::Clock as _;
use herald_testkit::{ServerConfig, TestServer};

fn relay(name: &str, server: &TestServer, limits: &str) -> String {
    format!(
        "[[relays]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n{limits}\n",
        server.port()
    )
}

/// Waits until `servers` have accepted `n` messages between them.
async fn until_accepted(servers: &[&TestServer], n: usize, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let accepted: usize = servers.iter().map(|s| s.message_count()).sum();
        if accepted >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{accepted} of {n} accepted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_limited_to_20_a_second_takes_100_messages_in_5_seconds() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let dir = temp_dir();
    let relays = relay("slow", &server, "rate = \"20/s\"\nmax_connections = 4");
    let herald = Herald::start_in(dir.clone(), &config_text(&dir, None, &relays)).await;

    let started = tokio::time::Instant::now();
    let mut ids = Vec::new();
    for n in 0..100 {
        ids.push(
            herald
                .queue(message(&[&format!("r{n}@example.com")]))
                .await
                .id,
        );
    }
    until_accepted(&[&server], 100, Duration::from_secs(30)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(4_500),
        "100 at 20/s in {took:?}"
    );
    assert!(took < Duration::from_secs(15), "100 at 20/s in {took:?}");
    for id in &ids {
        let done = herald.wait_status(id, MessageStatus::Delivered).await;
        // Waiting for a slot spent no attempt.
        assert_eq!(done.attempts, 1, "{done:#?}");
    }
    assert_eq!(server.message_count(), 100);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_daily_quota_the_first_relay_hands_over_to_the_second() {
    let first = TestServer::start(ServerConfig::default()).await.unwrap();
    let second = TestServer::start(ServerConfig::default()).await.unwrap();
    let dir = temp_dir();
    let relays = relay("first", &first, "daily_quota = 30")
        + &relay("second", &second, "rate = \"1000/s\"\nburst = 5");
    let herald = Herald::start_in(dir.clone(), &config_text(&dir, None, &relays)).await;

    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(
            herald
                .queue(message(&[&format!("q{n}@example.com")]))
                .await
                .id,
        );
    }
    for id in &ids {
        let done = herald.wait_status(id, MessageStatus::Delivered).await;
        assert_eq!(done.attempts, 1, "{done:#?}");
    }
    assert_eq!(first.message_count(), 30);
    assert_eq!(second.message_count(), 20);

    // GET /v1/relays shows the quota spent, the limits and the circuits.
    let (status, body) = herald.get("/v1/relays").await;
    assert_eq!(status, 200, "{body:#}");
    let relays: Relays = common::typed(&body);
    let names: Vec<&str> = relays.relays.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["first", "second"]);
    let (one, two) = (&relays.relays[0], &relays.relays[1]);
    let quota = one.quota.as_ref().expect("first has a quota");
    assert_eq!((quota.limit, quota.used, quota.left), (30, 30, 0));
    assert_eq!(
        quota.resets_at - quota.period_start,
        time::Duration::days(1)
    );
    assert_eq!(one.rate, None);
    assert_eq!(one.circuit, CircuitState::Closed);
    assert_eq!(one.port, first.port());
    assert_eq!(two.quota, None);
    let rate = two.rate.as_ref().expect("second has a rate");
    assert_eq!((rate.limit.as_str(), rate.burst), ("1000/s", 5));
    assert!(two.pool.open <= two.pool.max, "{two:?}");
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_relay_past_its_quota_mail_waits_for_the_reset() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let dir = temp_dir();
    let relays = relay(
        "only",
        &server,
        "daily_quota = 30\nquota_reset = \"00:00 UTC\"",
    );
    let (clock, shared) = manual_clock();
    let herald =
        Herald::start_in_with_clock(dir.clone(), &config_text(&dir, None, &relays), shared).await;
    let start = clock.now();
    let reset = (start + time::Duration::days(1)).replace_time(time::Time::MIDNIGHT);

    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(
            herald
                .queue(message(&[&format!("d{n}@example.com")]))
                .await
                .id,
        );
    }
    let mut deferred = Vec::new();
    for id in &ids {
        let seen = herald
            .wait_for(id, Duration::from_secs(15), |m| {
                matches!(m.status, MessageStatus::Delivered | MessageStatus::Deferred)
            })
            .await;
        if seen.status == MessageStatus::Deferred {
            deferred.push(seen);
        }
    }
    assert_eq!(server.message_count(), 30);
    assert_eq!(deferred.len(), 20);
    for m in &deferred {
        assert_eq!(
            m.next_attempt_at,
            Some(reset),
            "retried at the reset: {m:#?}"
        );
        // A quota wait is not an attempt: nothing was tried, and
        // max_attempts is not spent on it.
        assert_eq!(m.attempts, 0, "{m:#?}");
        let events: Vec<&Event> = m.events.iter().flatten().collect();
        assert!(
            events.iter().all(|e| e.kind != EventKind::Attempt),
            "{events:#?}"
        );
        let wait = events
            .iter()
            .find(|e| e.kind == EventKind::Deferred)
            .expect("a deferred event");
        let detail = wait.detail.as_deref().unwrap_or_default();
        assert!(detail.contains("quota"), "{detail}");
        assert!(detail.contains(&common::rfc3339(reset)), "{detail}");
        assert_eq!(wait.relay.as_deref(), Some("only"));
    }

    // At the reset the quota starts again and the rest goes out, each on
    // its first attempt.
    clock.advance((reset - start).unsigned_abs() + Duration::from_secs(1));
    for m in &deferred {
        let done = herald.wait_status(&m.id, MessageStatus::Delivered).await;
        assert_eq!(done.attempts, 1, "{done:#?}");
    }
    assert_eq!(server.message_count(), 50);
    herald.stop().await.unwrap();
}

/// Node `name` on `db` with `relays`.
async fn node(name: &str, db: &PgDatabase, relays: &str) -> Herald {
    let dir = temp_dir();
    let text = db.node_config(name, &dir, &config_text(&dir, None, relays));
    Herald::start_in(dir, &text).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_quota() {
    let db = PgDatabase::create("quota");
    let first = TestServer::start(ServerConfig::default()).await.unwrap();
    let second = TestServer::start(ServerConfig::default()).await.unwrap();
    let relays = relay("first", &first, "daily_quota = 30") + &relay("second", &second, "");
    let a = node("node-a", &db, &relays).await;
    let b = node("node-b", &db, &relays).await;

    let mut ids = Vec::new();
    for n in 0..50 {
        let via = if n % 2 == 0 { &a } else { &b };
        ids.push(via.queue(message(&[&format!("s{n}@example.com")])).await.id);
    }
    for id in &ids {
        a.wait_status(id, MessageStatus::Delivered).await;
    }
    assert_eq!(first.message_count(), 30, "one quota for both nodes");
    assert_eq!(second.message_count(), 20);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// The `used` count `GET /v1/relays` shows for relay `name` on `node`.
async fn quota_used(node: &Herald, name: &str) -> u64 {
    let (status, body) = node.get("/v1/relays").await;
    assert_eq!(status, 200, "{body:#}");
    let relays: Relays = common::typed(&body);
    let relay = relays.relays.iter().find(|r| r.name == name).expect(name);
    relay.quota.as_ref().expect("a quota").used
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_taking_a_large_quota_in_blocks_give_back_what_they_hold() {
    // A quota of 5000 is taken five units at a time: while the nodes run,
    // the count includes what they hold; once they stop it is exactly
    // what was sent.
    let db = PgDatabase::create("quota_blocks");
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let relays = relay("big", &server, "daily_quota = 5000");
    let a = node("node-a", &db, &relays).await;
    let b = node("node-b", &db, &relays).await;

    let mut ids = Vec::new();
    for n in 0..41 {
        let via = if n % 2 == 0 { &a } else { &b };
        ids.push(via.queue(message(&[&format!("q{n}@example.com")])).await.id);
    }
    for id in &ids {
        a.wait_status(id, MessageStatus::Delivered).await;
    }
    assert_eq!(server.message_count(), 41);
    let held = quota_used(&a, "big").await;
    assert!(
        (41..=41 + 2 * 5).contains(&held),
        "sent 41, each node holds at most one block of 5: used {held}"
    );
    a.stop().await.unwrap();
    b.stop().await.unwrap();

    let c = node("node-c", &db, &relays).await;
    assert_eq!(
        quota_used(&c, "big").await,
        41,
        "the stopped nodes gave back their blocks"
    );
    c.stop().await.unwrap();
}
