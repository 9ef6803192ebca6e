//! An endpoint with `concurrency = 4`: four POSTs are in flight at once
//! (never more), every event arrives, and the endpoint's cursor passes an
//! event only once every event before it is finished, so an event that
//! keeps failing does not hold the others back (those written after it
//! too), and after a restart it is sent again rather than skipped. A 410
//! disables the endpoint at once; what was in flight is sent once it is
//! enabled again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::{Herald, config_text, temp_dir, typed};
use herald_api::{DeliveryOutcome, WebhookDeliveryPage, WebhookList};
use serde_json::{Value, json};
use tokio::sync::Notify;

const CONCURRENCY: usize = 4;

/// What the receiver saw: each POST's `webhook-id`, the suppressed
/// address it is about, and the status it answered.
#[derive(Default)]
struct Receiver {
    seen: Mutex<Vec<(String, String, u16)>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    /// Answer 503 to events about this address while set.
    failing: Mutex<Option<String>>,
    /// Answer 410 to everything while set.
    gone: AtomicBool,
    /// The first this many POSTs are held until they are all in flight
    /// together (0: none).
    hold_first: AtomicUsize,
    arrivals: AtomicUsize,
    /// Set once that many were in flight together: the held ones go.
    released: AtomicBool,
    arrived: Notify,
}

impl Receiver {
    fn delivered(&self) -> BTreeSet<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(_, _, status)| *status == 204)
            .map(|(_, address, _)| address.clone())
            .collect()
    }

    fn ids_delivered(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(_, _, status)| *status == 204)
            .map(|(id, _, _)| id.clone())
            .collect()
    }

    /// Waits (at most 20 s) until events about every address in `want`
    /// were delivered.
    async fn wait_delivered(&self, want: &BTreeSet<String>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !want.is_subset(&self.delivered()) {
            let missing: Vec<_> = want.difference(&self.delivered()).cloned().collect();
            assert!(
                tokio::time::Instant::now() < deadline,
                "never delivered: {missing:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receiver() -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver::default());
    let shared = Arc::clone(&state);
    let app = Router::new().route(
        "/events",
        post(move |headers: HeaderMap, body: String| {
            let state = Arc::clone(&shared);
            async move {
                let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                state.most_in_flight.fetch_max(now, Ordering::SeqCst);
                state.arrived.notify_waiters();
                let hold = state.hold_first.load(Ordering::SeqCst);
                if state.arrivals.fetch_add(1, Ordering::SeqCst) < hold {
                    // The bound only keeps a broken sender from hanging
                    // the test (the assertion then fails).
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                    loop {
                        let arrived = state.arrived.notified();
                        if state.in_flight.load(Ordering::SeqCst) >= hold {
                            state.released.store(true, Ordering::SeqCst);
                        }
                        if state.released.load(Ordering::SeqCst)
                            || tokio::time::timeout_at(deadline, arrived).await.is_err()
                        {
                            break;
                        }
                    }
                }
                state.arrived.notify_waiters();
                let body: Value = serde_json::from_str(&body).unwrap();
                let address = body["data"]["address"].as_str().unwrap_or("").to_owned();
                let failing = state.failing.lock().unwrap().as_deref() == Some(address.as_str());
                let status = if state.gone.load(Ordering::SeqCst) {
                    410
                } else if failing {
                    503
                } else {
                    204
                };
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                state.seen.lock().unwrap().push((id, address, status));
                state.in_flight.fetch_sub(1, Ordering::SeqCst);
                (
                    StatusCode::from_u16(status).unwrap(),
                    [("retry-after", "0")],
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, state)
}

fn hook(url: &str) -> String {
    format!(
        "[[webhooks]]\nname = \"app\"\nurl = \"{url}\"\nsecret_env = \"WEBHOOK_SECRET\"\n\
         retry_initial_delay = \"50ms\"\nconcurrency = {CONCURRENCY}\n\
         events = [\"suppression.added\"]\n"
    )
}

/// Suppresses `addresses`: one `suppression.added` event each.
async fn suppress(herald: &Herald, addresses: &[String]) {
    let (status, answer) = herald
        .post(
            "/v1/suppressions",
            json!({"addresses": addresses, "reason": "manual"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
}

/// Waits (at most 20 s) until the delivery log holds `n` delivered tries:
/// each is recorded with the endpoint's cursor, so it has passed them.
async fn wait_recorded(herald: &Herald, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = herald.get("/v1/webhooks/deliveries?limit=100").await;
        let page: WebhookDeliveryPage = typed(&body);
        let delivered = page
            .deliveries
            .iter()
            .filter(|d| d.outcome == DeliveryOutcome::Delivered)
            .count();
        if delivered >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{delivered} of {n} recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn addresses(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("user{i}@example.com")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_posts_are_in_flight_at_once_and_every_event_arrives_once() {
    let (url, receiver) = receiver().await;
    receiver.hold_first.store(CONCURRENCY, Ordering::SeqCst);
    let dir = temp_dir();
    let text = config_text(&dir, None, &hook(&url));
    let herald = Herald::start_in(dir.clone(), &text).await;
    let first = addresses(0, 20);
    suppress(&herald, &first).await;
    receiver
        .wait_delivered(&first.iter().cloned().collect())
        .await;
    assert_eq!(
        receiver.most_in_flight.load(Ordering::SeqCst),
        CONCURRENCY,
        "the first four held together, and never more than four"
    );

    // The cursor passed all twenty: after a restart only the new event
    // comes, and no event arrived twice.
    wait_recorded(&herald, 20).await;
    herald.stop().await.unwrap();
    let herald = Herald::start_in(dir, &text).await;
    let next = addresses(20, 21);
    suppress(&herald, &next).await;
    receiver
        .wait_delivered(&next.iter().cloned().collect())
        .await;
    let ids = receiver.ids_delivered();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (21, 21), "{ids:?}");
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_keeps_failing_holds_the_cursor_but_not_the_others() {
    let (url, receiver) = receiver().await;
    let all = addresses(0, 10);
    *receiver.failing.lock().unwrap() = Some(all[0].clone());
    let dir = temp_dir();
    let text = config_text(&dir, None, &hook(&url));
    let herald = Herald::start_in(dir.clone(), &text).await;
    suppress(&herald, &all).await;
    // The nine others arrive while the first is still failing.
    receiver
        .wait_delivered(&all[1..].iter().cloned().collect())
        .await;
    assert!(!receiver.delivered().contains(&all[0]));
    let tried = receiver
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|(_, address, status)| *address == all[0] && *status == 503);
    assert!(tried, "the first was tried, and failed");

    // Stopped with the first undelivered: after the restart it is sent
    // again (the cursor never passed it), and now it is taken.
    herald.stop().await.unwrap();
    *receiver.failing.lock().unwrap() = None;
    let herald = Herald::start_in(dir, &text).await;
    receiver
        .wait_delivered(&all[..1].iter().cloned().collect())
        .await;
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_disables_at_once_and_what_was_in_flight_is_sent_once_enabled() {
    let (url, receiver) = receiver().await;
    receiver.gone.store(true, Ordering::SeqCst);
    let dir = temp_dir();
    let herald = Herald::start_in(dir.clone(), &config_text(&dir, None, &hook(&url))).await;
    let all = addresses(0, 10);
    suppress(&herald, &all).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let disabling = loop {
        let (_, body) = herald.get("/v1/webhooks").await;
        let list: WebhookList = typed(&body);
        if let Some(mark) = list.webhooks.iter().find_map(|w| w.disabled.clone()) {
            break mark.delivery.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never disabled: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let tried = receiver.seen.lock().unwrap().len();
    assert!(
        tried <= CONCURRENCY,
        "nothing handed out after the 410: {tried}"
    );

    receiver.gone.store(false, Ordering::SeqCst);
    let (status, body) = herald
        .post(
            &format!("/v1/webhooks/deliveries/{disabling}/retry"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    receiver
        .wait_delivered(&all.iter().cloned().collect())
        .await;
    herald.stop().await.unwrap();
}
