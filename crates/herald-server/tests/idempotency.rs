//! `Idempotency-Key`: a client that retries a request it is unsure about
//! gets the first answer back, and the mail goes out once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::api::{
    Auth, all_ids, assert_invalid, assert_nothing_stored, assert_problem, post_with, send,
};
use common::{Herald, message, typed};
use herald_api::{Accepted, BatchAnswer, BatchResult, MessageStatus};
use herald_testkit::{ServerConfig, TestServer};
use serde_json::json;

async fn relay() -> TestServer {
    TestServer::start(ServerConfig::default()).await.unwrap()
}

/// Posts `body` with `Idempotency-Key: key`; asserts 202 and returns the
/// answer.
async fn post_keyed(herald: &Herald, key: &str, body: serde_json::Value) -> Accepted {
    let (status, created, _) =
        post_with(herald, "/v1/messages", body, &[("Idempotency-Key", key)]).await;
    assert_eq!(status, 202, "{created:#}");
    typed(&created)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_and_body_return_the_first_answer_and_send_once() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let body = message(&["bob@example.com"]);
    let first = post_keyed(&herald, "order-42-receipt", body.clone()).await;
    let id = first.id.as_str();
    let again = post_keyed(&herald, "order-42-receipt", body.clone()).await;
    assert_eq!(again, first);
    assert_eq!(all_ids(&herald, "").await, [id]);
    herald.wait_status(id, MessageStatus::Delivered).await;
    // A retry after delivery still answers with the same message.
    let late = post_keyed(&herald, "order-42-receipt", body).await;
    assert_eq!(
        late, first,
        "the first answer, word for word (status queued)"
    );
    assert_eq!(all_ids(&herald, "").await, [id]);
    assert_eq!(smtp.message_count(), 1);
    let (_, shown) = herald.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(shown["attempts"], 1, "{shown:#}");
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_request_spelled_differently_is_still_the_same() {
    let herald = Herald::start(None).await;
    let first = post_keyed(&herald, "k-1", message(&["bob@example.com"])).await;
    // Other key order, white space and escapes; an empty cc the same as none.
    let respelled = concat!(
        "{ \"text\" : \"424242\",\n  \"subject\": \"Your \\u0063ode\",",
        " \"to\": [\"bob@example.com\"], \"cc\": [], \"from\": \"App <app@example.com>\" }"
    );
    let (status, again, _) = herald
        .request(
            "POST",
            "/v1/messages",
            Some(json!(respelled)),
            &[("Idempotency-Key", "k-1")],
        )
        .await;
    assert_eq!(status, 202, "{again:#}");
    assert_eq!(typed::<Accepted>(&again).id, first.id);
    assert_eq!(all_ids(&herald, "").await.len(), 1);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_with_another_body_is_409() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let first = post_keyed(&herald, "k-2", message(&["bob@example.com"])).await;
    let id = first.id.as_str();
    let mut other = message(&["bob@example.com"]);
    other["subject"] = json!("Another subject");
    let answer = post_with(
        &herald,
        "/v1/messages",
        other.clone(),
        &[("Idempotency-Key", "k-2")],
    )
    .await;
    let problem = assert_problem(&answer, 409);
    assert_eq!(problem.kind, "/problems/conflict");
    assert!(problem.detail.contains("Idempotency-Key"), "{problem:#?}");
    herald.wait_status(id, MessageStatus::Delivered).await;
    // Still a conflict once the first message is final.
    let answer = post_with(
        &herald,
        "/v1/messages",
        other,
        &[("Idempotency-Key", "k-2")],
    )
    .await;
    assert_problem(&answer, 409);
    assert_eq!(all_ids(&herald, "").await, [id]);
    assert_eq!(smtp.message_count(), 1);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_keys_make_different_messages() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let body = message(&["bob@example.com"]);
    let a = post_keyed(&herald, "k-a", body.clone()).await;
    let b = post_keyed(&herald, "k-b", body.clone()).await;
    assert_ne!(a.id, b.id);
    assert_ne!(a.message_id, b.message_id);
    // Without a key, the same body twice is two messages too.
    let c = herald.queue(body.clone()).await;
    let d = herald.queue(body).await;
    assert_ne!(c.id, d.id);
    let ids = [a, b, c, d].map(|m| m.id);
    for id in &ids {
        herald.wait_status(id, MessageStatus::Delivered).await;
    }
    let mut listed = all_ids(&herald, "").await;
    listed.sort();
    let mut expected = ids.to_vec();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(smtp.message_count(), 4);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_alongside_keyed_messages_reuses_nothing() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let body = message(&["bob@example.com"]);
    let keyed = post_keyed(&herald, "k-batch", body.clone()).await;
    // The same message body in a batch is a new message, not a replay.
    let (status, batch) = herald
        .post(
            "/v1/messages/batch",
            json!({"messages": [body, message(&["carol@example.com"])]}),
        )
        .await;
    assert_eq!(status, 200, "{batch:#}");
    let results = typed::<BatchAnswer>(&batch).results;
    assert_eq!(results.len(), 2);
    let mut ids = vec![keyed.id.clone()];
    for result in results {
        let BatchResult::Accepted(accepted) = result else {
            panic!("refused: {batch:#}");
        };
        assert!(!ids.contains(&accepted.id), "{batch:#}");
        ids.push(accepted.id);
    }
    for id in &ids {
        herald.wait_status(id, MessageStatus::Delivered).await;
    }
    assert_eq!(all_ids(&herald, "").await.len(), 3);
    assert_eq!(smtp.message_count(), 3);
    // And the key still answers with its own message afterwards.
    let again = post_keyed(&herald, "k-batch", message(&["bob@example.com"])).await;
    assert_eq!(again.id, keyed.id);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_does_not_use_up_its_key() {
    let herald = Herald::start(None).await;
    let mut invalid = message(&["bob@example.com"]);
    invalid["to"] = json!(["not an address"]);
    let answer = post_with(
        &herald,
        "/v1/messages",
        invalid,
        &[("Idempotency-Key", "k-3")],
    )
    .await;
    assert_invalid(&answer, "to[0]");
    assert_nothing_stored(&herald).await;
    let first = post_keyed(&herald, "k-3", message(&["bob@example.com"])).await;
    let again = post_keyed(&herald, "k-3", message(&["bob@example.com"])).await;
    assert_eq!(first.id, again.id);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_key_is_400() {
    let herald = Herald::start(None).await;
    let long = "k".repeat(256);
    let body = serde_json::to_vec(&message(&["bob@example.com"])).unwrap();
    for key in [long.as_str(), "two words", "tab\there"] {
        let answer = send(
            &herald,
            "POST",
            "/v1/messages",
            Auth::Key,
            &[("Idempotency-Key", key)],
            Some(body.clone()),
        )
        .await
        .unwrap();
        let problem = assert_problem(&answer, 400);
        assert!(problem.detail.contains("Idempotency-Key"), "{problem:#?}");
    }
    assert_nothing_stored(&herald).await;
    // 255 visible characters are fine.
    post_keyed(&herald, &"k".repeat(255), message(&["bob@example.com"])).await;
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_with_one_key_store_one_message() {
    let smtp = relay().await;
    let herald = std::sync::Arc::new(Herald::start(Some(&smtp)).await);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let herald = herald.clone();
        tasks.push(tokio::spawn(async move {
            post_keyed(&herald, "k-race", message(&["bob@example.com"])).await
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    herald.wait_status(&ids[0], MessageStatus::Delivered).await;
    assert_eq!(all_ids(&herald, "").await, ids);
    assert!(!smtp.wait_for_messages(2, Duration::from_millis(200)).await);
    assert_eq!(smtp.message_count(), 1);
    std::sync::Arc::into_inner(herald)
        .unwrap()
        .stop()
        .await
        .unwrap();
}

/// Posts a batch with `Idempotency-Key: key`; returns status and answer.
async fn post_batch_keyed(
    herald: &Herald,
    key: &str,
    messages: Vec<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let (status, answer, _) = post_with(
        herald,
        "/v1/messages/batch",
        json!({ "messages": messages }),
        &[("Idempotency-Key", key)],
    )
    .await;
    (status, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_batch_repeated_is_answered_again_and_sent_once() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let mut invalid = message(&["x@example.com"]);
    invalid["to"] = json!(["not an address"]);
    let items = vec![
        message(&["a@example.com"]),
        invalid,
        message(&["b@example.com"]),
    ];
    let (status, first) = post_batch_keyed(&herald, "nightly-2026-12-01", items.clone()).await;
    assert_eq!(status, 200, "{first:#}");
    let ids: Vec<String> = [0, 2]
        .iter()
        .map(|&i| first["results"][i]["id"].as_str().unwrap().to_owned())
        .collect();
    for id in &ids {
        herald.wait_status(id, MessageStatus::Delivered).await;
    }

    // The client lost the answer and sends the same batch again.
    let (status, again) = post_batch_keyed(&herald, "nightly-2026-12-01", items.clone()).await;
    assert_eq!(status, 200, "{again:#}");
    assert_eq!(again, first, "the same answer, item by item");
    assert_eq!(all_ids(&herald, "").await.len(), 2);

    // Another batch under the key, even one with a new item, is 409 and
    // stores nothing.
    let mut other = items;
    other.push(message(&["c@example.com"]));
    other[0] = message(&["changed@example.com"]);
    let (status, conflict) = post_batch_keyed(&herald, "nightly-2026-12-01", other).await;
    assert_eq!(status, 409, "{conflict:#}");
    assert_eq!(conflict["type"], "/problems/conflict", "{conflict:#}");
    // Even one whose valid items sit where the first batch's did not.
    let mut shifted_invalid = message(&["y@example.com"]);
    shifted_invalid["to"] = json!(["still not an address"]);
    let shifted = vec![
        shifted_invalid,
        message(&["d@example.com"]),
        message(&["e@example.com"]),
    ];
    let (status, conflict) = post_batch_keyed(&herald, "nightly-2026-12-01", shifted).await;
    assert_eq!(status, 409, "{conflict:#}");
    assert_eq!(all_ids(&herald, "").await.len(), 2);
    assert_eq!(smtp.message_count(), 2, "each message went out once");

    // The batch's key does not answer for a single message, nor the
    // reverse: they are separate requests.
    let single = post_keyed(&herald, "nightly-2026-12-01", message(&["a@example.com"])).await;
    assert!(!ids.contains(&single.id));
    herald.stop().await.unwrap();
}
