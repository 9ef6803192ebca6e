//! End to end over real sockets: HTTP in, SQLite in the middle, the testkit
//! SMTP server out. What happens to a message in each kind of weather.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Herald, message};
use herald_policy::Clock as _;
use herald_testkit::{Fault, FaultRule, Phase, ServerConfig, TestServer};

async fn relay() -> TestServer {
    TestServer::start(ServerConfig::default()).await.unwrap()
}

fn event_kinds(message: &serde_json::Value) -> Vec<String> {
    message["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_delivered_and_its_history_recorded() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let (status, created) = herald
        .post("/v1/messages", message(&["bob@example.com"]))
        .await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["status"], "queued");
    let id = created["id"].as_str().unwrap();
    let done = herald.wait_status(id, "delivered").await;
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["recipients"][0]["status"], "delivered");
    assert_eq!(done["recipients"][0]["smtp_code"], 250);
    assert_eq!(event_kinds(&done), ["queued", "attempt", "delivered"]);
    let attempt = &done["events"][1];
    assert_eq!(attempt["relay"], "test");
    assert_eq!(attempt["outcome"], "delivered");
    assert!(attempt["duration_ms"].is_u64());
    let sent = smtp.messages();
    assert_eq!(sent.len(), 1);
    let text = String::from_utf8_lossy(&sent[0].data);
    assert!(
        text.contains(created["message_id"].as_str().unwrap()),
        "{text}"
    );
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failure_is_deferred_then_delivered() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let (_, created) = herald
        .post("/v1/messages", message(&["rcpt451-once@example.com"]))
        .await;
    let id = created["id"].as_str().unwrap();
    let deferred = herald
        .wait_for(id, Duration::from_secs(10), |m| m["attempts"] == 1)
        .await;
    // Between the attempts it waits, with the next attempt scheduled.
    if deferred["status"] == "deferred" {
        assert!(deferred["next_attempt_at"].is_string(), "{deferred:#}");
        assert_eq!(deferred["recipients"][0]["status"], "deferred");
        assert_eq!(deferred["recipients"][0]["smtp_code"], 451);
    }
    let done = herald.wait_status(id, "delivered").await;
    assert_eq!(done["attempts"], 2);
    assert_eq!(
        event_kinds(&done),
        ["queued", "attempt", "deferred", "attempt", "delivered"]
    );
    assert_eq!(done["events"][1]["outcome"], "transient");
    assert_eq!(done["events"][1]["smtp_code"], 451);
    assert_eq!(smtp.message_count(), 1);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_fails_after_one_attempt() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let (_, created) = herald
        .post("/v1/messages", message(&["rcpt550@example.com"]))
        .await;
    let id = created["id"].as_str().unwrap();
    let done = herald.wait_status(id, "failed").await;
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["recipients"][0]["status"], "failed");
    assert_eq!(done["recipients"][0]["smtp_code"], 550);
    assert_eq!(done["recipients"][0]["enhanced_code"], "5.1.1");
    assert_eq!(smtp.message_count(), 0);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_recipients_end_partial_with_per_recipient_detail() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let (_, created) = herald
        .post(
            "/v1/messages",
            message(&[
                "ok@example.com",
                "rcpt550@example.com",
                "rcpt451-once@example.com",
            ]),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let done = herald.wait_status(id, "partial").await;
    let by_address: Vec<_> = done["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        by_address,
        [
            ("ok@example.com".to_owned(), "delivered".to_owned()),
            ("rcpt550@example.com".to_owned(), "failed".to_owned()),
            (
                "rcpt451-once@example.com".to_owned(),
                "delivered".to_owned()
            ),
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
        let (status, created) = herald
            .post("/v1/messages", message(&[&format!("u{i}@example.com")]))
            .await;
        assert_eq!(status, 202);
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        herald.wait_status(id, "delivered").await;
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
    let (_, created) = herald
        .post("/v1/messages", message(&["bob@example.com"]))
        .await;
    let id = created["id"].as_str().unwrap();
    let done = herald.wait_status(id, "delivered").await;
    assert_eq!(done["attempts"], 2);
    let first = &done["events"][1];
    // The relay failed as a whole (a timeout): the same word as the metric.
    assert_eq!(first["outcome"], "error");
    assert!(
        first["detail"].as_str().unwrap().contains("timed out"),
        "{first}"
    );
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_give_up_after_max_attempts() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let (_, created) = herald
        .post("/v1/messages", message(&["rcpt451@example.com"]))
        .await;
    let id = created["id"].as_str().unwrap();
    let done = herald.wait_status(id, "failed").await;
    assert_eq!(done["attempts"], 5);
    assert_eq!(done["recipients"][0]["status"], "failed");
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_relay_messages_go_to_the_file_outbox() {
    let herald = Herald::start(None).await;
    let (_, created) = herald
        .post("/v1/messages", message(&["bob@example.com"]))
        .await;
    let id = created["id"].as_str().unwrap();
    let done = herald.wait_status(id, "delivered").await;
    assert_eq!(done["events"][1]["relay"], "outbox");
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
    let (status, created) = herald.post("/v1/messages", body).await;
    assert_eq!(status, 202);
    assert_eq!(created["status"], "scheduled");
    let id = created["id"].as_str().unwrap();
    // A message due now goes out; the dispatcher's claim that took it left
    // the scheduled one waiting.
    let (_, probe) = herald
        .post("/v1/messages", message(&["now@example.com"]))
        .await;
    herald
        .wait_status(probe["id"].as_str().unwrap(), "delivered")
        .await;
    assert_eq!(smtp.message_count(), 1, "sent before send_at");
    let (_, waiting) = herald.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(waiting["status"], "scheduled", "{waiting:#}");
    // A second short of its time: still waiting, at the next claim too.
    clock.advance(Duration::from_secs(3599));
    let (_, probe) = herald
        .post("/v1/messages", message(&["now2@example.com"]))
        .await;
    herald
        .wait_status(probe["id"].as_str().unwrap(), "delivered")
        .await;
    let (_, waiting) = herald.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(waiting["status"], "scheduled", "{waiting:#}");
    // Its time comes: the next poll sends it.
    clock.advance(Duration::from_secs(1));
    herald.wait_status(id, "delivered").await;
    assert_eq!(smtp.message_count(), 3);
    herald.stop().await.unwrap();
}
