//! Backpressure: when `limits.max_queue_depth` messages are not yet final,
//! new ones are refused with `429` and `Retry-After`, and nothing is stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::api::{Answer, all_ids, assert_problem, header, in_seconds, post_with};
use common::{Herald, message};
use herald_api::MessageStatus;
use herald_testkit::{Fault, FaultRule, Phase, ServerConfig, TestServer};
use serde_json::{Value, json};

const DEPTH_3: &str = "[limits]\nmax_queue_depth = 3\n";

/// A message that stays `scheduled` (not final) for the whole test.
fn scheduled(to: &str) -> Value {
    let mut body = message(&[to]);
    body["send_at"] = json!(in_seconds(3600));
    body
}

async fn post_ok(herald: &Herald, body: Value) -> String {
    let (status, created) = herald.post("/v1/messages", body).await;
    assert_eq!(status, 202, "{created:#}");
    created["id"].as_str().unwrap().to_owned()
}

/// Asserts the queue-full problem with a usable `Retry-After`.
#[track_caller]
fn assert_queue_full(answer: &Answer) {
    let problem = assert_problem(answer, 429);
    assert_eq!(problem.kind, "/problems/queue-full", "{problem:#?}");
    let retry_after = header(&answer.2, "retry-after").expect("Retry-After header");
    let seconds: u64 = retry_after.parse().expect("Retry-After in seconds");
    assert!(seconds >= 1, "Retry-After: {retry_after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_with_429_and_stores_nothing() {
    let herald = Herald::start_with(None, DEPTH_3).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(post_ok(&herald, scheduled(&format!("s{i}@example.com"))).await);
    }
    let refused = post_with(&herald, "/v1/messages", message(&["late@example.com"]), &[]).await;
    assert_queue_full(&refused);
    // A batch is refused as well, whole.
    let (status, body, headers) = post_with(
        &herald,
        "/v1/messages/batch",
        json!({"messages": [message(&["b@example.com"])]}),
        &[],
    )
    .await;
    assert_queue_full(&(status, body, headers));
    let mut listed = all_ids(&herald, "").await;
    listed.reverse();
    assert_eq!(listed, ids, "only the first three are stored");
    let (_, late) = herald.get("/v1/messages?recipient=late@example.com").await;
    assert_eq!(late["messages"], json!([]));

    // Room again once one of them is final.
    let (status, cancelled) = herald
        .post(&format!("/v1/messages/{}/cancel", ids[0]), json!({}))
        .await;
    assert_eq!(status, 200, "{cancelled:#}");
    post_ok(&herald, message(&["room@example.com"])).await;
    // The delivered one no longer counts either, the new scheduled ones do.
    let (_, page) = herald.get("/v1/messages?recipient=room@example.com").await;
    let room = page["messages"][0]["id"].as_str().unwrap().to_owned();
    herald.wait_status(&room, MessageStatus::Delivered).await;
    post_ok(&herald, scheduled("s3@example.com")).await;
    assert_queue_full(&post_with(&herald, "/v1/messages", scheduled("s4@example.com"), &[]).await);
    assert_eq!(all_ids(&herald, "").await.len(), 5);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_would_overfill_the_queue_is_refused_whole() {
    let herald = Herald::start_with(None, DEPTH_3).await;
    post_ok(&herald, scheduled("a@example.com")).await;
    post_ok(&herald, scheduled("b@example.com")).await;
    let two = json!({"messages": [scheduled("c@example.com"), scheduled("d@example.com")]});
    assert_queue_full(&post_with(&herald, "/v1/messages/batch", two, &[]).await);
    assert_eq!(
        all_ids(&herald, "").await.len(),
        2,
        "nothing of the batch stored"
    );
    let one = json!({"messages": [scheduled("c@example.com")]});
    let (status, results) = herald.post("/v1/messages/batch", one).await;
    assert_eq!(status, 200, "{results:#}");
    assert!(results["results"][0]["id"].is_string(), "{results:#}");
    assert_eq!(all_ids(&herald, "").await.len(), 3);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_stuck_at_a_stalled_relay_count_toward_the_depth() {
    let smtp = TestServer::start(ServerConfig {
        faults: vec![FaultRule::always(Phase::Rcpt, Fault::Stall)],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let herald = Herald::start_with(Some(&smtp), DEPTH_3).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(post_ok(&herald, message(&[&format!("u{i}@example.com")])).await);
    }
    // However far each has got (sending, deferred), none is final.
    assert_queue_full(
        &post_with(&herald, "/v1/messages", message(&["late@example.com"]), &[]).await,
    );
    assert_eq!(all_ids(&herald, "").await.len(), 3);
    for id in &ids {
        let (_, shown) = herald.get(&format!("/v1/messages/{id}")).await;
        assert!(
            ["queued", "sending", "deferred"].contains(&shown["status"].as_str().unwrap()),
            "{shown:#}"
        );
    }
    assert_eq!(smtp.message_count(), 0);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_of_an_answered_request_is_answered_even_when_the_queue_is_full() {
    let herald = Herald::start_with(None, DEPTH_3).await;
    let keyed = scheduled("keyed@example.com");
    let (status, first, _) = post_with(
        &herald,
        "/v1/messages",
        keyed.clone(),
        &[("Idempotency-Key", "signup-1")],
    )
    .await;
    assert_eq!(status, 202, "{first:#}");
    assert_eq!(first["status"], "scheduled");
    post_ok(&herald, scheduled("s1@example.com")).await;
    post_ok(&herald, scheduled("s2@example.com")).await;

    // The client did not hear the first answer and tries again: it gets
    // that answer, not 429, and nothing new is stored.
    let (status, again, _) = post_with(
        &herald,
        "/v1/messages",
        keyed.clone(),
        &[("Idempotency-Key", "signup-1")],
    )
    .await;
    assert_eq!(status, 202, "{again:#}");
    assert_eq!(again, first);
    // The same key with another body is still a conflict.
    let other = post_with(
        &herald,
        "/v1/messages",
        scheduled("other@example.com"),
        &[("Idempotency-Key", "signup-1")],
    )
    .await;
    assert_problem(&other, 409);
    // A new key is new work: refused while full.
    assert_queue_full(
        &post_with(
            &herald,
            "/v1/messages",
            keyed,
            &[("Idempotency-Key", "signup-2")],
        )
        .await,
    );
    assert_eq!(all_ids(&herald, "").await.len(), 3);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_of_an_answered_batch_is_answered_even_when_the_queue_is_full() {
    let herald = Herald::start_with(None, DEPTH_3).await;
    let batch = json!({"messages": [scheduled("b1@example.com"), scheduled("b2@example.com")]});
    let key = [("Idempotency-Key", "batch-7")];
    let (status, first, _) = post_with(&herald, "/v1/messages/batch", batch.clone(), &key).await;
    assert_eq!(status, 200, "{first:#}");
    post_ok(&herald, scheduled("s1@example.com")).await;

    let (status, again, _) = post_with(&herald, "/v1/messages/batch", batch.clone(), &key).await;
    assert_eq!(status, 200, "{again:#}");
    assert_eq!(again, first);
    let other = json!({"messages": [scheduled("b3@example.com")]});
    assert_queue_full(&post_with(&herald, "/v1/messages/batch", other, &[]).await);
    assert_eq!(all_ids(&herald, "").await.len(), 3);
    herald.stop().await.unwrap();
}
