//! End to end over real sockets: HTTP in, SQLite in the middle, the testkit
//! SMTP server out. What happens to a message in each kind of weather.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Herald, event_kinds, message};
use herald_api::{AttemptOutcome, EventKind, MessageStatus, RecipientStatus};
use herald_policy::Clock as _;
use herald_testkit::{Fault, FaultRule, Phase, ServerConfig, TestServer};

async fn relay() -> TestServer {
    TestServer::start(ServerConfig::default()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_delivered_and_its_history_recorded() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let created = herald.queue(message(&["bob@example.com"])).await;
    assert_eq!(created.status, MessageStatus::Queued);
    let done = herald
        .wait_status(&created.id, MessageStatus::Delivered)
        .await;
    assert_eq!(done.attempts, 1);
    assert_eq!(done.recipients[0].status, RecipientStatus::Delivered);
    assert_eq!(done.recipients[0].smtp_code, Some(250));
    assert_eq!(
        event_kinds(&done),
        [EventKind::Queued, EventKind::Attempt, EventKind::Delivered]
    );
    let attempt = &done.events.as_ref().unwrap()[1];
    assert_eq!(attempt.relay.as_deref(), Some("test"));
    assert_eq!(attempt.outcome, Some(AttemptOutcome::Delivered));
    assert!(attempt.duration_ms.is_some());
    let sent = smtp.messages();
    assert_eq!(sent.len(), 1);
    let text = String::from_utf8_lossy(&sent[0].data);
    assert!(text.contains(&created.message_id), "{text}");
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failure_is_deferred_then_delivered() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let id = &herald
        .queue(message(&["rcpt451-once@example.com"]))
        .await
        .id;
    let deferred = herald
        .wait_for(id, Duration::from_secs(10), |m| m.attempts == 1)
        .await;
    // Between the attempts it waits, with the next attempt scheduled.
    if deferred.status == MessageStatus::Deferred {
        assert!(deferred.next_attempt_at.is_some(), "{deferred:#?}");
        assert_eq!(deferred.recipients[0].status, RecipientStatus::Deferred);
        assert_eq!(deferred.recipients[0].smtp_code, Some(451));
    }
    let done = herald.wait_status(id, MessageStatus::Delivered).await;
    assert_eq!(done.attempts, 2);
    assert_eq!(
        event_kinds(&done),
        [
            EventKind::Queued,
            EventKind::Attempt,
            EventKind::Deferred,
            EventKind::Attempt,
            EventKind::Delivered
        ]
    );
    let first = &done.events.as_ref().unwrap()[1];
    assert_eq!(first.outcome, Some(AttemptOutcome::Transient));
    assert_eq!(first.smtp_code, Some(451));
    assert_eq!(smtp.message_count(), 1);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_fails_after_one_attempt() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let id = &herald.queue(message(&["rcpt550@example.com"])).await.id;
    let done = herald.wait_status(id, MessageStatus::Failed).await;
    assert_eq!(done.attempts, 1);
    let recipient = &done.recipients[0];
    assert_eq!(recipient.status, RecipientStatus::Failed);
    assert_eq!(recipient.smtp_code, Some(550));
    assert_eq!(recipient.enhanced_code.as_deref(), Some("5.1.1"));
    assert_eq!(smtp.message_count(), 0);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_recipients_end_partial_with_per_recipient_detail() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let created = herald
        .queue(message(&[
            "ok@example.com",
            "rcpt550@example.com",
            "rcpt451-once@example.com",
        ]))
        .await;
    let done = herald
        .wait_status(&created.id, MessageStatus::Partial)
        .await;
    let by_address: Vec<_> = done
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), r.status))
        .collect();
    assert_eq!(
        by_address,
        [
            ("ok@example.com", RecipientStatus::Delivered),
            ("rcpt550@example.com", RecipientStatus::Failed),
            ("rcpt451-once@example.com", RecipientStatus::Delivered),
        ]
    );
    // Each accepted recipient got exactly one copy.
    let mut copies: Vec<String> = smtp
        .messages()
        .into_iter()
        .flat_map(|m| m.rcpt_to)
        .collect();
    copies.sort();
    assert_eq!(copies, ["ok@example.com", "rcpt451-once@example.com"]);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_is_down_for_a_while_gets_everything_when_it_returns() {
    // The relay refuses the first connections outright (421 at the
    // greeting), then recovers.
    let smtp = TestServer::start(ServerConfig {
        faults: vec![FaultRule::times(Phase::Banner, Fault::Disconnect421, 3)],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let herald = Herald::start(Some(&smtp)).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let to = format!("u{i}@example.com");
        ids.push(herald.queue(message(&[&to])).await.id);
    }
    for id in &ids {
        herald.wait_status(id, MessageStatus::Delivered).await;
    }
    assert_eq!(smtp.message_count(), 5);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_relay_times_out_and_the_message_is_retried() {
    let smtp = TestServer::start(ServerConfig {
        faults: vec![FaultRule::times(Phase::Rcpt, Fault::Stall, 1)],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let herald = Herald::start(Some(&smtp)).await;
    let id = &herald.queue(message(&["bob@example.com"])).await.id;
    let done = herald.wait_status(id, MessageStatus::Delivered).await;
    assert_eq!(done.attempts, 2);
    let first = &done.events.as_ref().unwrap()[1];
    // The relay failed as a whole (a timeout): the same word as the metric.
    assert_eq!(first.outcome, Some(AttemptOutcome::Error));
    assert!(
        first.detail.as_deref().unwrap_or("").contains("timed out"),
        "{first:?}"
    );
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_give_up_after_max_attempts() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let id = &herald.queue(message(&["rcpt451@example.com"])).await.id;
    let done = herald.wait_status(id, MessageStatus::Failed).await;
    assert_eq!(done.attempts, 5);
    assert_eq!(done.recipients[0].status, RecipientStatus::Failed);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_relay_messages_go_to_the_file_outbox() {
    let herald = Herald::start(None).await;
    let id = &herald.queue(message(&["bob@example.com"])).await.id;
    let done = herald.wait_status(id, MessageStatus::Delivered).await;
    assert_eq!(
        done.events.as_ref().unwrap()[1].relay.as_deref(),
        Some("outbox")
    );
    let eml = std::fs::read_to_string(herald.dir.join("outbox").join(format!("{id}.eml"))).unwrap();
    assert!(eml.contains("Subject: Your code"), "{eml}");
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_messages_wait_for_send_at() {
    let smtp = relay().await;
    let (clock, shared) = common::manual_clock();
    let herald = Herald::start_with_clock(Some(&smtp), shared).await;
    let at = clock.now() + time::Duration::hours(1);
    let mut body = message(&["later@example.com"]);
    body["send_at"] = common::rfc3339(at).into();
    let created = herald.queue(body).await;
    assert_eq!(created.status, MessageStatus::Scheduled);
    let id = created.id.clone();
    // A message due now goes out; the dispatcher's claim that took it left
    // the scheduled one waiting.
    let probe = herald.queue(message(&["now@example.com"])).await;
    herald
        .wait_status(&probe.id, MessageStatus::Delivered)
        .await;
    assert_eq!(smtp.message_count(), 1, "sent before send_at");
    let waiting = herald.message(&id).await;
    assert_eq!(waiting.status, MessageStatus::Scheduled, "{waiting:#?}");
    // A second short of its time: still waiting, at the next claim too.
    clock.advance(Duration::from_secs(3599));
    let probe = herald.queue(message(&["now2@example.com"])).await;
    herald
        .wait_status(&probe.id, MessageStatus::Delivered)
        .await;
    let waiting = herald.message(&id).await;
    assert_eq!(waiting.status, MessageStatus::Scheduled, "{waiting:#?}");
    // Its time comes: the next poll sends it.
    clock.advance(Duration::from_secs(1));
    herald.wait_status(&id, MessageStatus::Delivered).await;
    assert_eq!(smtp.message_count(), 3);
    herald.stop().await.unwrap();
}
