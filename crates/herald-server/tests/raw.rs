//! `POST /v1/messages/raw`: a message the client rendered, with its
//! envelope, queued with the validation, idempotency and 202 of
//! `POST /v1/messages`, and delivered as given (plus the headers herald
//! adds).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::api::{all_ids, assert_invalid, assert_nothing_stored, assert_problem, post_with};
use common::{Herald, typed};
use herald_api::{Accepted, MessageStatus, RawRequest};
use herald_testkit::{ServerConfig, TestServer};
use serde_json::{Value, json};

const MESSAGE: &str = "From: App <app@example.com>\r\nTo: bob@example.org\r\n\
    Bcc: hidden@example.net\r\nX-Herald-Tags: receipt\r\n\
    Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nHello\r\n.dot line\r\n";

fn request(raw: &str) -> Value {
    let request = RawRequest {
        from: Some("app@example.com".into()),
        to: vec!["bob@example.org".into(), "hidden@example.net".into()],
        raw: Some(BASE64.encode(raw)),
        tags: vec!["api".into()],
        metadata: [("order".to_owned(), "42".to_owned())].into(),
        send_at: None,
    };
    serde_json::to_value(request).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_message_is_queued_and_delivered_as_given() {
    let smtp = TestServer::start(ServerConfig::default()).await.unwrap();
    let herald = Herald::start(Some(&smtp)).await;
    let (status, created, _) = post_with(&herald, "/v1/messages/raw", request(MESSAGE), &[]).await;
    assert_eq!(status, 202, "{created:#}");
    let created: Accepted = typed(&created);
    assert_eq!(created.status, MessageStatus::Queued);
    let done = herald
        .wait_status(&created.id, MessageStatus::Delivered)
        .await;
    assert_eq!(done.tags, ["api", "receipt"]);
    assert_eq!(
        done.metadata,
        [("order".to_owned(), "42".to_owned())].into()
    );
    assert_eq!(done.submitted_by.as_deref(), Some("auth.api_keys[0]"));
    assert_eq!(done.recipients.len(), 2);
    let sent = smtp.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].mail_from, "app@example.com");
    assert_eq!(sent[0].rcpt_to, ["bob@example.org", "hidden@example.net"]);
    let text = String::from_utf8(sent[0].data.clone()).unwrap();
    let message_id = &created.message_id;
    let expected_tail = MESSAGE
        .replace("Bcc: hidden@example.net\r\n", "")
        .replace("X-Herald-Tags: receipt\r\n", "");
    assert!(
        text.starts_with(&format!("Message-ID: {message_id}\r\nDate: ")),
        "{text}"
    );
    assert!(text.ends_with(&expected_tail), "{text}");
    assert_eq!(text.lines().count(), expected_tail.lines().count() + 2);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_replays_and_another_body_conflicts() {
    let herald = Herald::start(None).await;
    let key = [("Idempotency-Key", "raw-1")];
    let (status, first, _) = post_with(&herald, "/v1/messages/raw", request(MESSAGE), &key).await;
    assert_eq!(status, 202, "{first:#}");
    let first: Accepted = typed(&first);
    let (status, again, _) = post_with(&herald, "/v1/messages/raw", request(MESSAGE), &key).await;
    assert_eq!(status, 202, "{again:#}");
    assert_eq!(typed::<Accepted>(&again).id, first.id);
    let other = request("Subject: other\r\n\r\nbody\r\n");
    let answer = post_with(&herald, "/v1/messages/raw", other, &key).await;
    assert_problem(&answer, 409);
    assert_eq!(all_ids(&herald, "").await, [first.id]);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_store_nothing() {
    let herald = Herald::start_with(None, "[limits]\nmax_message_bytes = 2000\n").await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"to": ["b@example.org"], "raw": BASE64.encode(MESSAGE)}),
            "from",
        ),
        (
            json!({"from": "a@example.com", "raw": BASE64.encode(MESSAGE)}),
            "to",
        ),
        (
            json!({"from": "a@example.com", "to": ["nope"], "raw": BASE64.encode(MESSAGE)}),
            "to[0]",
        ),
        (
            json!({"from": "a@example.com", "to": ["b@example.org"]}),
            "raw",
        ),
        (
            json!({"from": "a@example.com", "to": ["b@example.org"], "raw": "%%%"}),
            "raw",
        ),
        (
            json!({"from": "a@example.com", "to": ["b@example.org"],
                   "raw": BASE64.encode("not a header\r\n\r\nbody")}),
            "raw",
        ),
        (
            json!({"from": "a@example.com", "to": ["b@example.org"],
                   "raw": BASE64.encode(MESSAGE), "tags": [""]}),
            "tags[0]",
        ),
    ];
    for (body, field) in cases {
        let answer = post_with(&herald, "/v1/messages/raw", body, &[]).await;
        assert_invalid(&answer, field);
    }
    let big = format!("Subject: big\r\n\r\n{}", "x\r\n".repeat(1000));
    let answer = post_with(&herald, "/v1/messages/raw", request(&big), &[]).await;
    assert_problem(&answer, 413);
    let answer = post_with(&herald, "/v1/messages/raw", json!({"zzz": 1}), &[]).await;
    assert_problem(&answer, 400);
    assert_nothing_stored(&herald).await;
    herald.stop().await.unwrap();
}
