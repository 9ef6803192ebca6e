//! W3C trace context: a `traceparent` from the caller (or a new trace id)
//! stays with the message, comes back in the answer and the message view,
//! and travels in the sent mail as `X-Herald-Trace-Id`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::api::header;
use common::{Herald, message, typed};
use herald_api::{Accepted, BatchAnswer, BatchResult, MessageStatus};
use herald_testkit::{ServerConfig, TestServer};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_round_trips_into_the_message_and_the_mail() {
    let smtp = TestServer::start(ServerConfig::default()).await.unwrap();
    let herald = Herald::start(Some(&smtp)).await;
    let traceparent = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let (status, created, headers) = herald
        .request(
            "POST",
            "/v1/messages",
            Some(message(&["bob@example.com"])),
            &[("traceparent", &traceparent)],
        )
        .await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(header(&headers, "x-herald-trace-id"), Some(TRACE));
    let id = typed::<Accepted>(&created).id;
    let done = herald.wait_status(&id, MessageStatus::Delivered).await;
    assert_eq!(done.trace_id.as_deref(), Some(TRACE));
    let mail = String::from_utf8_lossy(&smtp.messages()[0].data).into_owned();
    assert!(
        mail.contains(&format!("X-Herald-Trace-Id: {TRACE}\r\n")),
        "{mail}"
    );
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_traceparent_a_new_trace_is_started() {
    let smtp = TestServer::start(ServerConfig::default()).await.unwrap();
    let herald = Herald::start(Some(&smtp)).await;
    let mut seen = Vec::new();
    for traceparent in [None, Some("00-nothex-00f067aa0ba902b7-01")] {
        let headers: Vec<(&str, &str)> = traceparent
            .map(|t| ("traceparent", t))
            .into_iter()
            .collect();
        let (status, created, answer) = herald
            .request(
                "POST",
                "/v1/messages",
                Some(message(&["bob@example.com"])),
                &headers,
            )
            .await;
        assert_eq!(status, 202);
        let trace = header(&answer, "x-herald-trace-id").unwrap().to_owned();
        assert_eq!(trace.len(), 32);
        assert!(trace.bytes().all(|b| b.is_ascii_hexdigit()));
        let id = typed::<Accepted>(&created).id;
        let done = herald.wait_status(&id, MessageStatus::Delivered).await;
        assert_eq!(done.trace_id.as_ref(), Some(&trace));
        seen.push(trace);
    }
    assert_ne!(seen[0], seen[1]);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_of_a_batch_carries_the_request_trace() {
    let herald = Herald::start(None).await;
    let traceparent = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let body =
        serde_json::json!({"messages": [message(&["a@example.com"]), message(&["b@example.com"])]});
    let (status, answer, _) = herald
        .request(
            "POST",
            "/v1/messages/batch",
            Some(body),
            &[("traceparent", &traceparent)],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    for result in typed::<BatchAnswer>(&answer).results {
        let BatchResult::Accepted(accepted) = result else {
            panic!("refused: {answer:#}");
        };
        let done = herald
            .wait_status(&accepted.id, MessageStatus::Delivered)
            .await;
        assert_eq!(done.trace_id.as_deref(), Some(TRACE));
    }
    herald.stop().await.unwrap();
}
