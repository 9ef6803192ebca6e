//! Event webhooks end to end: a receiver that fails for a while gets every
//! event afterwards, each signed (Standard Webhooks) and with its
//! `webhook-id` unchanged across retries; the tries are listed by the API;
//! and an endpoint that never answers does not slow delivery.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::webhook::{Seen, verify};
use common::{Herald, message, typed};
use herald_api::{DeliveryOutcome, MessageStatus, WebhookDeliveryPage};
use herald_testkit::{ServerConfig, TestServer};
use serde_json::Value;

/// A receiver that answers 503 (with `Retry-After: 0`) to its first
/// `failures` requests, then 204.
async fn receiver(failures: usize) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let record = seen.clone();
    let app = Router::new().route(
        "/events",
        post(move |headers: HeaderMap, body: String| {
            let (record, count) = (record.clone(), count.clone());
            async move {
                let failing = count.fetch_add(1, Ordering::SeqCst) < failures;
                let answered = if failing { 503 } else { 204 };
                record
                    .lock()
                    .unwrap()
                    .push(Seen::new(&headers, body, answered));
                let status = StatusCode::from_u16(answered).unwrap();
                (status, [("retry-after", "0")])
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn hook(url: &str, extra: &str) -> String {
    format!(
        "[[webhooks]]\nname = \"app\"\nurl = \"{url}\"\nsecret_env = \"WEBHOOK_SECRET\"\n\
         retry_initial_delay = \"50ms\"\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_fails_for_a_while_gets_every_event_signed_with_stable_ids() {
    let smtp = TestServer::start(ServerConfig::default()).await.unwrap();
    let (url, seen) = receiver(4).await;
    let herald = Herald::start_with(Some(&smtp), &hook(&url, "")).await;
    let (_, ok) = herald
        .post("/v1/messages", message(&["bob@example.com"]))
        .await;
    let (_, dead) = herald
        .post("/v1/messages", message(&["rcpt550.gone@example.com"]))
        .await;
    herald
        .wait_status(ok["id"].as_str().unwrap(), MessageStatus::Delivered)
        .await;
    herald
        .wait_status(dead["id"].as_str().unwrap(), MessageStatus::Failed)
        .await;

    // Three events: delivered, bounced, and the bounce's suppression.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let delivered = loop {
        let all = seen.lock().unwrap().clone();
        let done: Vec<Seen> = all.iter().filter(|s| s.answered == 204).cloned().collect();
        if done.len() >= 3 {
            break all;
        }
        assert!(tokio::time::Instant::now() < deadline, "got {all:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        delivered.iter().all(verify),
        "every request is signed: {delivered:#?}"
    );
    let failed: Vec<&Seen> = delivered.iter().filter(|s| s.answered == 503).collect();
    assert_eq!(failed.len(), 4);
    let first_success = delivered.iter().find(|s| s.answered == 204).unwrap();
    assert!(
        failed
            .iter()
            .all(|f| f.id == first_success.id && f.body == first_success.body),
        "retries carry the same webhook-id and body"
    );
    let mut kinds = BTreeMap::new();
    for s in delivered.iter().filter(|s| s.answered == 204) {
        let body: Value = serde_json::from_str(&s.body).unwrap();
        kinds.insert(body["type"].as_str().unwrap().to_owned(), body);
    }
    assert_eq!(
        kinds.keys().collect::<Vec<_>>(),
        ["message.bounced", "message.delivered", "suppression.added"]
    );
    let bounced = &kinds["message.bounced"]["data"];
    assert_eq!(bounced["id"], dead["id"]);
    assert_eq!(bounced["message_id"], dead["message_id"]);
    assert_eq!(bounced["address"], "rcpt550.gone@example.com");
    assert_eq!(bounced["smtp_code"], 550);
    assert_eq!(bounced["class"], "invalid_recipient");
    let ids: std::collections::BTreeSet<&str> = delivered
        .iter()
        .filter(|s| s.answered == 204)
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(ids.len(), 3, "one id per event");

    let (status, tries) = herald.get("/v1/webhooks/deliveries?limit=100").await;
    assert_eq!(status, 200, "{tries}");
    let tries = typed::<WebhookDeliveryPage>(&tries).deliveries;
    assert_eq!(tries.len(), 7, "{tries:#?}");
    assert_eq!(tries[0].outcome, DeliveryOutcome::Delivered);
    assert!(
        tries
            .iter()
            .any(|t| t.outcome == DeliveryOutcome::Retrying && t.http_status == Some(503))
    );
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_never_answers_does_not_slow_delivery() {
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", silent.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = silent.accept().await {
            keep.lock().unwrap().push(socket);
        }
    });
    let smtp = TestServer::start(ServerConfig::default()).await.unwrap();
    let herald = Herald::start_with(Some(&smtp), &hook(&url, "timeout = \"60s\"\n")).await;
    let (_, first) = herald
        .post("/v1/messages", message(&["first@example.com"]))
        .await;
    herald
        .wait_status(first["id"].as_str().unwrap(), MessageStatus::Delivered)
        .await;
    // Wait until the sender is stuck in a POST the endpoint never answers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while held.lock().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the endpoint was never called"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, created) = herald
            .post("/v1/messages", message(&[&format!("user{i}@example.com")]))
            .await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    // Each is delivered while that POST still hangs (its timeout is a
    // minute; the wait below gives up after 15 s).
    for id in &ids {
        herald.wait_status(id, MessageStatus::Delivered).await;
    }
    assert_eq!(smtp.message_count(), 6);
    herald.stop().await.unwrap();
}
