//! `POST /v1/messages/batch`: one result per item, in order; the valid
//! items are queued (and delivered) even when others are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::api::{all_ids, assert_nothing_stored, assert_problem, post_raw, post_with};
use common::{Herald, message, typed};
use herald_api::{BatchAnswer, BatchResult, MessageStatus, Problem};
use herald_testkit::{ServerConfig, TestServer};
use serde_json::{Value, json};

async fn relay() -> TestServer {
    TestServer::start(ServerConfig::default()).await.unwrap()
}

/// Asserts that a batch item is an error (`{"error": <problem>}` and
/// nothing else) holding a problem with `status`; returns the problem.
#[track_caller]
fn item_problem(item: &Value, status: u16) -> Problem {
    let keys: Vec<_> = item.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["error"], "{item:#}");
    let BatchResult::Error { error: problem } = typed(item) else {
        panic!("not an error: {item:#}");
    };
    assert_eq!(problem.status, status, "{item:#}");
    assert!(problem.kind.starts_with("/problems/"), "{item:#}");
    assert!(!problem.title.is_empty() && !problem.detail.is_empty());
    problem
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_items_are_queued_and_invalid_ones_answered_in_place() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let mut invalid = message(&["x@example.com"]);
    invalid["to"] = json!(["x@example.com", "not an address"]);
    let mut not_schema = message(&["y@example.com"]);
    not_schema["to"] = json!("y@example.com");
    let batch = json!({"messages": [
        message(&["a@example.com"]),
        invalid,
        message(&["b@example.com"]),
        not_schema,
        message(&["c@example.com"]),
    ]});
    let (status, answer) = herald.post("/v1/messages/batch", batch).await;
    assert_eq!(status, 200, "{answer:#}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 5, "{answer:#}");
    let typed_results = typed::<BatchAnswer>(&answer).results;
    let mut ids = Vec::new();
    for i in [0, 2, 4] {
        let BatchResult::Accepted(item) = &typed_results[i] else {
            panic!("item {i}: {answer:#}");
        };
        assert_eq!(item.status, MessageStatus::Queued, "item {i}: {item:#?}");
        assert!(item.message_id.starts_with('<'), "{item:#?}");
        ids.push(item.id.clone());
    }
    let problem = item_problem(&results[1], 422);
    assert_eq!(problem.kind, "/problems/validation");
    assert_eq!(problem.errors[0].field, "to[1]", "{problem:#?}");
    let problem = item_problem(&results[3], 400);
    assert_eq!(problem.kind, "/problems/malformed");
    assert!(problem.detail.starts_with("messages[3]"), "{problem:#?}");

    // Exactly the valid ones are stored, each delivered to its recipient.
    let mut listed = all_ids(&herald, "").await;
    listed.sort();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
    for (id, to) in ids
        .iter()
        .zip(["a@example.com", "b@example.com", "c@example.com"])
    {
        let done = herald.wait_status(id, MessageStatus::Delivered).await;
        assert_eq!(done.recipients[0].address, to);
    }
    let mut delivered: Vec<String> = smtp
        .messages()
        .into_iter()
        .flat_map(|m| m.rcpt_to)
        .collect();
    delivered.sort();
    assert_eq!(
        delivered,
        ["a@example.com", "b@example.com", "c@example.com"]
    );
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_only_invalid_items_stores_nothing() {
    let herald = Herald::start(None).await;
    let batch = json!({"messages": [{"to": ["a@example.com"]}, [], "text", 42]});
    let (status, answer) = herald.post("/v1/messages/batch", batch).await;
    assert_eq!(status, 200, "{answer:#}");
    let results = answer["results"].as_array().unwrap();
    item_problem(&results[0], 422);
    for item in &results[1..] {
        item_problem(item, 400);
    }
    assert_nothing_stored(&herald).await;
    // An empty batch is fine and does nothing.
    let (status, answer) = herald
        .post("/v1/messages/batch", json!({"messages": []}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer, json!({"results": []}));
    assert_nothing_stored(&herald).await;
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_is_not_the_schema_is_400() {
    let herald = Herald::start(None).await;
    for raw in [
        "",
        "{",
        "[]",
        r#"{"messages": {}}"#,
        r#"{"items": []}"#,
        r#"{"messages": [], "extra": 1}"#,
    ] {
        let problem = assert_problem(&post_raw(&herald, "/v1/messages/batch", raw).await, 400);
        assert_eq!(problem.kind, "/problems/malformed", "{raw}");
    }
    assert_nothing_stored(&herald).await;
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_max_batch_is_413_and_stores_nothing() {
    let herald = Herald::start_with(None, "[limits]\nmax_batch = 3\n").await;
    let four: Vec<Value> = (0..4)
        .map(|i| message(&[&format!("u{i}@example.com")]))
        .collect();
    let answer = post_with(
        &herald,
        "/v1/messages/batch",
        json!({"messages": four}),
        &[],
    )
    .await;
    let problem = assert_problem(&answer, 413);
    assert_eq!(problem.kind, "/problems/too-large");
    assert_nothing_stored(&herald).await;
    let three = &four[..3];
    let (status, answer) = herald
        .post("/v1/messages/batch", json!({"messages": three}))
        .await;
    assert_eq!(status, 200, "{answer:#}");
    assert_eq!(all_ids(&herald, "").await.len(), 3);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_max_batch_is_1000() {
    let herald = Herald::start(None).await;
    let item = json!({"from": "a@example.com", "to": [], "text": "x"});
    let many: Vec<Value> = (0..1001).map(|_| item.clone()).collect();
    let answer = post_with(
        &herald,
        "/v1/messages/batch",
        json!({"messages": many}),
        &[],
    )
    .await;
    assert_problem(&answer, 413);
    // 1000 invalid items are within the limit: each is answered.
    let (status, answer) = herald
        .post("/v1/messages/batch", json!({"messages": many[..1000]}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(typed::<BatchAnswer>(&answer).results.len(), 1000);
    assert_nothing_stored(&herald).await;
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_refused_at_item_max_batch_plus_one_while_it_is_read() {
    let herald = Herald::start_with(None, "[limits]\nmax_batch = 3\n").await;
    // Four items, then what would be a parse error: the list is refused at
    // the fourth, before the rest is read.
    let item = message(&["u@example.com"]).to_string();
    let raw = format!("{{\"messages\": [{item}, {item}, {item}, {item}, not json at all");
    let answer = post_raw(&herald, "/v1/messages/batch", &raw).await;
    let problem = assert_problem(&answer, 413);
    assert!(problem.detail.contains("at most 3"), "{problem:#?}");
    assert_nothing_stored(&herald).await;
    herald.stop().await.unwrap();
}
