//! Failover between relays, end to end with two testkit relays: mail goes
//! through the second while the first is down or its circuit is open, the
//! breaker's probe brings traffic back to the first once it recovers, and
//! a message the first relay may already have accepted (no answer to the
//! final dot) is never sent through the second.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Herald, config_text, message, temp_dir};
use herald_api::{AttemptOutcome, Event, EventKind, Message, MessageStatus};
use herald_testkit::{Fault, FaultRule, Phase, ServerConfig, TestServer};

fn relay(name: &str, server: &TestServer, breaker: &str) -> String {
    format!(
        "[[relays]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n{breaker}\n",
        server.port()
    )
}

async fn send_one(herald: &Herald, to: &str) -> Message {
    let created = herald.queue(message(&[to])).await;
    herald
        .wait_status(&created.id, MessageStatus::Delivered)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_fails_over_while_the_first_relay_is_down_and_comes_back_with_it() {
    // The first relay refuses its first two sessions (421 at the banner),
    // then recovers.
    let first = TestServer::start(ServerConfig {
        faults: vec![FaultRule::times(Phase::Banner, Fault::Disconnect421, 2)],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let second = TestServer::start(ServerConfig::default()).await.unwrap();
    let breaker =
        "[relays.breaker]\nfailure_threshold = 2\nopen_for = \"300ms\"\nhalf_open_calls = 1\n";
    let relays = relay("first", &first, breaker) + &relay("second", &second, "");
    let dir = temp_dir();
    let herald = Herald::start_in(dir.clone(), &config_text(&dir, None, &relays)).await;

    // Two failures at the first relay (each message then goes through the
    // second within the same attempt) open its circuit; the third message
    // skips it.
    for n in 0..3 {
        let done = send_one(&herald, &format!("down-{n}@example.com")).await;
        assert_eq!(done.attempts, 1, "{done:#?}");
    }
    assert_eq!(first.message_count(), 0);
    assert_eq!(second.message_count(), 3);
    assert_eq!(
        first.connections(),
        2,
        "the open circuit kept the third away"
    );

    // Once the circuit's pause is over, a probe goes to the first relay,
    // which has recovered: traffic returns to it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut n = 0;
    while first.message_count() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never went back");
        send_one(&herald, &format!("probe-{n}@example.com")).await;
        n += 1;
    }
    let before = second.message_count();
    for n in 0..5 {
        send_one(&herald, &format!("back-{n}@example.com")).await;
    }
    assert_eq!(
        second.message_count(),
        before,
        "closed again: all to the first"
    );
    assert_eq!(first.message_count(), 6);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_to_the_final_dot_is_retried_later_and_never_sent_elsewhere() {
    // The first relay takes the whole message and never answers the dot
    // (once); the harness's data_timeout is 2 s.
    let first = TestServer::start(ServerConfig {
        faults: vec![FaultRule::times(Phase::DataDot, Fault::Stall, 1)],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let second = TestServer::start(ServerConfig::default()).await.unwrap();
    let relays = relay("first", &first, "") + &relay("second", &second, "");
    let dir = temp_dir();
    let herald = Herald::start_in(dir.clone(), &config_text(&dir, None, &relays)).await;

    let done = send_one(&herald, "once@example.com").await;
    // Not through the second relay right after the timeout: later, as a
    // retry, through the first (which answers this time).
    assert_eq!(second.message_count(), 0, "{done:#?}");
    assert_eq!(first.message_count(), 1, "{done:#?}");
    assert_eq!(done.attempts, 2, "{done:#?}");
    let attempts: Vec<&Event> = done
        .events
        .iter()
        .flatten()
        .filter(|e| e.kind == EventKind::Attempt)
        .collect();
    assert_eq!(attempts[0].relay.as_deref(), Some("first"));
    assert_eq!(attempts[0].outcome, Some(AttemptOutcome::Error));
    let detail = attempts[0].detail.as_deref().unwrap_or_default();
    assert!(detail.contains("may have accepted"), "{detail}");
    assert_eq!(attempts[1].relay.as_deref(), Some("first"));
    assert_eq!(attempts[1].outcome, Some(AttemptOutcome::Delivered));
    herald.stop().await.unwrap();
}
