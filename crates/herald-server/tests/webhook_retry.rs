//! Retrying a webhook delivery by hand, and endpoints disabled by a 410:
//! `POST /v1/webhooks/deliveries/{id}/retry` sends the try's event again
//! with the same `webhook-id` and a fresh, valid signature; a 410 disables
//! the endpoint in the store, so that it stays disabled across a restart,
//! until a manual retry to it succeeds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::webhook::{Seen, verify};
use common::{Herald, config_text, message, temp_dir, typed};
use herald_api::{
    DeliveryOutcome, MessageStatus, WebhookDelivery, WebhookDeliveryPage, WebhookList,
};
use herald_testkit::{ServerConfig, TestServer};

/// A receiver answering whatever status `answer` holds at the time.
struct Receiver {
    url: String,
    answer: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    async fn start(status: u16) -> Self {
        let answer = Arc::new(AtomicU16::new(status));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (now, record) = (answer.clone(), seen.clone());
        let app = Router::new().route(
            "/events",
            post(move |headers: HeaderMap, body: String| {
                let (now, record) = (now.clone(), record.clone());
                async move {
                    let answered = now.load(Ordering::SeqCst);
                    record
                        .lock()
                        .unwrap()
                        .push(Seen::new(&headers, body, answered));
                    StatusCode::from_u16(answered).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, answer, seen }
    }

    fn answer(&self, status: u16) {
        self.answer.store(status, Ordering::SeqCst);
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests have arrived; returns them all.
    async fn wait_for(&self, n: usize) -> Vec<Seen> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let seen = self.seen();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited for {n} requests, got {seen:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A `[[webhooks]]` entry named `name` for `url`, only for delivered
/// messages, whose automatic retries wait an hour (so that only the
/// route sends an event again within a test).
fn hook(name: &str, url: &str) -> String {
    format!(
        "[[webhooks]]\nname = \"{name}\"\nurl = \"{url}\"\nsecret_env = \"WEBHOOK_SECRET\"\n\
         events = [\"message.delivered\"]\nretry_initial_delay = \"1h\"\n"
    )
}

/// Polls the delivery log until `done` holds for it.
async fn wait_tries(
    herald: &Herald,
    done: impl Fn(&[WebhookDelivery]) -> bool,
) -> Vec<WebhookDelivery> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = herald.get("/v1/webhooks/deliveries?limit=100").await;
        assert_eq!(status, 200, "{body}");
        let tries = typed::<WebhookDeliveryPage>(&body).deliveries;
        if done(&tries) {
            return tries;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "last seen: {tries:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `GET /v1/webhooks` until `done` holds for it.
async fn webhooks(herald: &Herald, done: impl Fn(&WebhookList) -> bool) -> WebhookList {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = herald.get("/v1/webhooks").await;
        assert_eq!(status, 200, "{body}");
        let list: WebhookList = typed(&body);
        if done(&list) {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "last seen: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn enabled(list: &WebhookList, name: &str) -> bool {
    list.webhooks.iter().any(|w| w.name == name && w.enabled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_retried_by_the_route_arrives_with_the_same_id_and_a_valid_signature() {
    let smtp = TestServer::start(ServerConfig::default()).await.unwrap();
    let receiver = Receiver::start(500).await;
    let dir = temp_dir();
    let text = config_text(&dir, Some(&smtp), &hook("app", &receiver.url));
    let herald = Herald::start_in(dir.clone(), &text).await;
    let queued = herald.queue(message(&["bob@example.com"])).await;
    herald
        .wait_status(&queued.id, MessageStatus::Delivered)
        .await;
    let tries = wait_tries(&herald, |t| !t.is_empty()).await;
    let failed = &tries[0];
    assert_eq!(failed.outcome, DeliveryOutcome::Retrying);
    assert_eq!(failed.http_status, Some(500));

    receiver.answer(204);
    let (status, body) = herald
        .post(
            &format!("/v1/webhooks/deliveries/{}/retry", failed.id),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let again: WebhookDelivery = typed(&body);
    assert!(again.id > failed.id, "{again:?}");
    assert_eq!(again.webhook, "app");
    assert_eq!(again.event_id, failed.event_id);
    assert_eq!(again.outcome, DeliveryOutcome::Delivered);
    assert_eq!(again.http_status, Some(204));
    assert_eq!(again.attempt, failed.attempt + 1);

    let seen = receiver.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!(seen[1].answered, 204);
    assert_eq!(seen[1].id, seen[0].id, "the same webhook-id");
    assert_eq!(seen[1].id, failed.event_id);
    assert_eq!(seen[1].body, seen[0].body, "the same event");
    assert!(verify(&seen[1]), "a valid signature: {:?}", seen[1]);
    let stamped = |s: &Seen| s.timestamp.parse::<i64>().unwrap();
    assert!(stamped(&seen[1]) >= stamped(&seen[0]));
    let newest = wait_tries(&herald, |t| t.len() == 2).await;
    assert_eq!(newest[0], again, "the log shows the retry first");

    // Ids that name no try: 404 problems, nothing sent.
    for unknown in [again.id + 1000, -1] {
        let (status, body) = herald
            .post(
                &format!("/v1/webhooks/deliveries/{unknown}/retry"),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["type"], "/problems/not-found");
    }
    let (status, _) = herald
        .post("/v1/webhooks/deliveries/abc/retry", serde_json::json!({}))
        .await;
    assert_eq!(status, 404);
    assert_eq!(receiver.seen().len(), 2);
    herald.stop().await.unwrap();

    // The endpoint renamed in the configuration: its old tries cannot be
    // sent again, and the problem names it.
    let text = config_text(&dir, Some(&smtp), &hook("billing", &receiver.url));
    let herald = Herald::start_in(dir.clone(), &text).await;
    let (status, body) = herald
        .post(
            &format!("/v1/webhooks/deliveries/{}/retry", failed.id),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("\"app\""),
        "{body}"
    );
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_disables_the_endpoint_across_a_restart_until_a_manual_retry_succeeds() {
    let smtp = TestServer::start(ServerConfig::default()).await.unwrap();
    let gone = Receiver::start(410).await;
    // A second endpoint that takes everything: once it has an event, the
    // disabled one has had its chance at it too.
    let witness = Receiver::start(204).await;
    let dir = temp_dir();
    let hooks = format!(
        "{}{}",
        hook("app", &gone.url),
        hook("witness", &witness.url)
    );
    let text = config_text(&dir, Some(&smtp), &hooks);
    let herald = Herald::start_in(dir.clone(), &text).await;
    let first = herald.queue(message(&["first@example.com"])).await;
    herald
        .wait_status(&first.id, MessageStatus::Delivered)
        .await;
    gone.wait_for(1).await;
    let tries = wait_tries(&herald, |t| {
        t.iter()
            .any(|t| t.webhook == "app" && t.outcome == DeliveryOutcome::Disabled)
    })
    .await;
    let disabling = tries.iter().find(|t| t.webhook == "app").unwrap().clone();
    assert_eq!(disabling.http_status, Some(410));
    let list = webhooks(&herald, |l| !enabled(l, "app")).await;
    let app = list.webhooks.iter().find(|w| w.name == "app").unwrap();
    let mark = app.disabled.as_ref().unwrap();
    assert_eq!(mark.delivery, Some(disabling.id));
    assert!(mark.reason.contains("410"), "{mark:?}");
    assert!(enabled(&list, "witness"), "{list:#?}");
    herald.stop().await.unwrap();

    // Restarted: still disabled, and sent nothing while the witness got
    // the new message's event.
    gone.answer(204);
    let herald = Herald::start_in(dir.clone(), &text).await;
    let second = herald.queue(message(&["second@example.com"])).await;
    herald
        .wait_status(&second.id, MessageStatus::Delivered)
        .await;
    witness.wait_for(2).await;
    assert_eq!(gone.seen().len(), 1, "{:#?}", gone.seen());
    let list = webhooks(&herald, |_| true).await;
    assert!(!enabled(&list, "app"), "{list:#?}");

    // A manual retry that succeeds enables it again; the sender then sends
    // what came meanwhile.
    let (status, body) = herald
        .post(
            &format!("/v1/webhooks/deliveries/{}/retry", disabling.id),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        typed::<WebhookDelivery>(&body).outcome,
        DeliveryOutcome::Delivered
    );
    let list = webhooks(&herald, |_| true).await;
    assert!(
        list.webhooks
            .iter()
            .any(|w| w.name == "app" && w.enabled && w.disabled.is_none()),
        "enabled at once by the retry: {list:#?}"
    );
    let seen = gone.wait_for(3).await;
    assert_eq!(seen[1].id, seen[0].id, "the manual retry");
    let body: serde_json::Value = serde_json::from_str(&seen[2].body).unwrap();
    assert_eq!(body["data"]["id"].as_str(), Some(second.id.as_str()));
    assert!(seen.iter().all(verify));
    herald.stop().await.unwrap();
}
