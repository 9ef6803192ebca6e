//! Managing messages after the fact: cancel, retry, listing with filters
//! and cursors, and the health endpoints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

/// No address is suppressed by its bounce.
const NO_AUTO_SUPPRESSION: &str = "[suppression]\nauto = []\n";

use std::time::Duration;

use common::api::{Auth, all_ids, assert_problem, get_full, in_seconds, send};
use common::{Herald, event_kinds, message, typed};
use herald_api::{EventKind, Message, MessagePage, MessageStatus, RecipientStatus};
use herald_policy::Clock as _;
use herald_testkit::{ServerConfig, TestServer};
use serde_json::{Value, json};

async fn relay() -> TestServer {
    TestServer::start(ServerConfig::default()).await.unwrap()
}

async fn post_ok(herald: &Herald, body: Value) -> String {
    herald.queue(body).await.id
}

/// `POST /v1/messages/{id}/{action}`, which must succeed: the message.
async fn act(herald: &Herald, id: &str, action: &str) -> Message {
    let (status, answer) = herald
        .post(&format!("/v1/messages/{id}/{action}"), json!({}))
        .await;
    assert_eq!(status, 200, "{answer:#}");
    typed(&answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_scheduled_message_is_never_sent() {
    let smtp = relay().await;
    let (clock, shared) = common::manual_clock();
    let herald = Herald::start_with_clock(Some(&smtp), shared).await;
    let mut body = message(&["later@example.com"]);
    // The service's clock stands still: a minute ahead stays ahead.
    body["send_at"] = json!(common::rfc3339(clock.now() + time::Duration::minutes(1)));
    let created = herald.queue(body).await;
    assert_eq!(created.status, MessageStatus::Scheduled);
    let id = &created.id;
    let cancelled = act(&herald, id, "cancel").await;
    assert_eq!(&cancelled.id, id);
    assert_eq!(cancelled.status, MessageStatus::Cancelled);
    assert_ne!(
        cancelled.recipients[0].status,
        RecipientStatus::Pending,
        "{cancelled:#?}"
    );
    assert!(
        event_kinds(&cancelled).contains(&EventKind::Cancelled),
        "{cancelled:#?}"
    );
    // Cancelled is final: cancelling again, or retrying, is a conflict.
    for action in ["cancel", "retry"] {
        let answer = herald
            .request("POST", &format!("/v1/messages/{id}/{action}"), None, &[])
            .await;
        assert_eq!(assert_problem(&answer, 409).kind, "/problems/conflict");
    }
    // Past its send_at, a later message goes out and the cancelled one not
    // (the dispatcher claims every due message at once, the probe with it).
    clock.advance(Duration::from_secs(120));
    let probe = post_ok(&herald, message(&["probe@example.com"])).await;
    herald.wait_status(&probe, MessageStatus::Delivered).await;
    let after = herald.message(id).await;
    assert_eq!(after.status, MessageStatus::Cancelled, "{after:#?}");
    assert_eq!(after.attempts, 0);
    let sent: Vec<String> = smtp
        .messages()
        .into_iter()
        .flat_map(|m| m.rcpt_to)
        .collect();
    assert_eq!(sent, ["probe@example.com"]);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_messages_can_be_neither_cancelled_nor_retried() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let id = post_ok(&herald, message(&["bob@example.com"])).await;
    herald.wait_status(&id, MessageStatus::Delivered).await;
    for action in ["cancel", "retry"] {
        let answer = herald
            .request("POST", &format!("/v1/messages/{id}/{action}"), None, &[])
            .await;
        let problem = assert_problem(&answer, 409);
        assert_eq!(problem.kind, "/problems/conflict");
        assert!(problem.detail.contains("delivered"), "{problem:#?}");
    }
    assert_eq!(herald.message(&id).await.status, MessageStatus::Delivered);
    assert_eq!(smtp.message_count(), 1);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_message_can_be_retried() {
    let smtp = relay().await;
    // A dead address would be suppressed, and its retry not sent at all
    // (the suppression tests show that); here the retry itself is tested.
    let herald = Herald::start_with(Some(&smtp), NO_AUTO_SUPPRESSION).await;
    let id = post_ok(&herald, message(&["rcpt550@example.com"])).await;
    let failed = herald.wait_status(&id, MessageStatus::Failed).await;
    assert_eq!(failed.attempts, 1);
    let retried = act(&herald, &id, "retry").await;
    assert_eq!(retried.status, MessageStatus::Queued);
    assert_eq!(retried.attempts, 1, "the count is kept");
    let again = herald
        .wait_for(&id, Duration::from_secs(10), |m| {
            m.status == MessageStatus::Failed && m.attempts == 2
        })
        .await;
    assert_eq!(again.recipients[0].smtp_code, Some(550));
    assert!(
        event_kinds(&again).contains(&EventKind::Retried),
        "{again:#?}"
    );
    assert_eq!(smtp.message_count(), 0);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_a_partial_message_sends_only_to_the_failed_recipients() {
    let smtp = relay().await;
    let herald = Herald::start_with(Some(&smtp), NO_AUTO_SUPPRESSION).await;
    let id = post_ok(&herald, message(&["ok@example.com", "rcpt550@example.com"])).await;
    herald.wait_status(&id, MessageStatus::Partial).await;
    let retried = act(&herald, &id, "retry").await;
    assert_eq!(retried.status, MessageStatus::Queued);
    let again = herald
        .wait_for(&id, Duration::from_secs(10), |m| {
            m.status == MessageStatus::Partial && m.attempts == 2
        })
        .await;
    let statuses: Vec<_> = again.recipients.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [RecipientStatus::Delivered, RecipientStatus::Failed],
        "{again:#?}"
    );
    let sent: Vec<String> = smtp
        .messages()
        .into_iter()
        .flat_map(|m| m.rcpt_to)
        .collect();
    assert_eq!(
        sent,
        ["ok@example.com"],
        "the accepted recipient got one copy"
    );
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_cancel_of_an_unknown_id_are_404() {
    let herald = Herald::start(None).await;
    for action in ["retry", "cancel"] {
        let path = format!("/v1/messages/01ARZ3NDEKTSV4RRFFQ69G5FAV/{action}");
        let problem = assert_problem(&herald.request("POST", &path, None, &[]).await, 404);
        assert_eq!(problem.kind, "/problems/not-found");
        assert_eq!(problem.detail, "no message with that id");
    }
    herald.stop().await.unwrap();
}

/// The ids `GET /v1/messages?query` lists on its first page.
async fn listed(herald: &Herald, query: &str) -> Vec<String> {
    let (status, page) = herald.get(&format!("/v1/messages?{query}")).await;
    assert_eq!(status, 200, "{query}: {page:#}");
    let page: MessagePage = typed(&page);
    page.messages.into_iter().map(|m| m.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_filters_by_status_tag_recipient_and_time() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let tagged = |to: &str, tags: Value| {
        let mut body = message(&[to]);
        body["tags"] = tags;
        body
    };
    let mut ids = Vec::new();
    let mut later = tagged("c@example.com", json!(["alpha", "gamma"]));
    later["send_at"] = json!(in_seconds(3600));
    for body in [
        tagged("a@example.com", json!(["alpha"])),
        tagged("b@example.com", json!(["beta"])),
        later,
        tagged("rcpt550@example.com", json!([])),
    ] {
        ids.push(post_ok(&herald, body).await);
        // Distinct creation times (milliseconds), for since/until.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let [a, b, c, d] = [0, 1, 2, 3].map(|i| ids[i].as_str());
    herald.wait_status(a, MessageStatus::Delivered).await;
    herald.wait_status(b, MessageStatus::Delivered).await;
    herald.wait_status(d, MessageStatus::Failed).await;

    let mut delivered = listed(&herald, "status=delivered").await;
    delivered.sort();
    assert_eq!(delivered, [a, b]);
    assert_eq!(listed(&herald, "status=scheduled").await, [c]);
    assert_eq!(listed(&herald, "status=failed").await, [d]);
    assert!(listed(&herald, "status=queued").await.is_empty());

    assert_eq!(listed(&herald, "tag=alpha").await, [c, a]);
    assert_eq!(listed(&herald, "tag=gamma").await, [c]);
    assert!(listed(&herald, "tag=nope").await.is_empty());
    assert_eq!(listed(&herald, "tag=alpha&status=delivered").await, [a]);

    assert_eq!(listed(&herald, "recipient=b@example.com").await, [b]);
    assert_eq!(listed(&herald, "recipient=rcpt550@example.com").await, [d]);
    assert!(
        listed(&herald, "recipient=nobody@example.com")
            .await
            .is_empty()
    );

    let created_at = |id: &str| {
        let herald = &herald;
        let id = id.to_owned();
        async move {
            let created = herald.message(&id).await.created_at;
            created
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
                .replace('+', "%2B")
        }
    };
    let (at_b, at_c, at_d) = (
        created_at(b).await,
        created_at(c).await,
        created_at(d).await,
    );
    assert_eq!(listed(&herald, &format!("since={at_b}")).await, [d, c, b]);
    assert_eq!(listed(&herald, &format!("until={at_c}")).await, [b, a]);
    assert_eq!(
        listed(&herald, &format!("since={at_b}&until={at_d}")).await,
        [c, b]
    );
    assert!(
        listed(&herald, &format!("since={}", in_seconds(60)))
            .await
            .is_empty()
    );

    // Summaries carry no history; GET one does.
    let (_, page) = herald.get("/v1/messages").await;
    for summary in page["messages"].as_array().unwrap() {
        assert!(summary.get("events").is_none(), "{summary:#}");
        assert!(summary["recipients"].is_array(), "{summary:#}");
    }
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cursor_walks_every_message_once_newest_first() {
    let herald = Herald::start(None).await;
    let mut posted = Vec::new();
    for i in 0..7 {
        posted.push(post_ok(&herald, message(&[&format!("u{i}@example.com")])).await);
        // ids sort by creation time only across milliseconds.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut sizes = Vec::new();
    for _ in 0..3 {
        let path = match &cursor {
            Some(c) => format!("/v1/messages?limit=3&cursor={c}"),
            None => "/v1/messages?limit=3".to_owned(),
        };
        let (status, page) = herald.get(&path).await;
        assert_eq!(status, 200, "{page:#}");
        let messages = page["messages"].as_array().unwrap();
        sizes.push(messages.len());
        seen.extend(
            messages
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned()),
        );
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            assert!(
                page.get("next_cursor").is_some(),
                "next_cursor is present, as null"
            );
        }
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(cursor, None, "the last page has no next_cursor");
    posted.reverse();
    assert_eq!(seen, posted, "all seven, once each, newest first");
    assert_eq!(all_ids(&herald, "").await, posted);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_need_no_key() {
    let herald = Herald::start(None).await;
    for auth in [Auth::None, Auth::Key] {
        let (status, body, _) = send(&herald, "GET", "/healthz", auth, &[], None)
            .await
            .unwrap();
        assert_eq!((status, body), (200, json!("ok")));
        let (status, body, _) = send(&herald, "GET", "/readyz", auth, &[], None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, json!("ready"));
    }
    let (status, _, _) = get_full(&herald, "/healthz").await;
    assert_eq!(status, 200);
    herald.stop().await.unwrap();
}
