//! One vocabulary for an attempt: the outcome in the message's events is
//! the `outcome` label of `herald_delivery_attempts_total`, and an attempt
//! is counted under the relay it concerns — also when that relay's open
//! circuit kept the message from being tried at all.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Herald, config_text, message, temp_dir};
use herald_api::{AttemptOutcome, Event, EventKind, Message};

/// The value of the `herald_delivery_attempts_total` series with exactly
/// these `relay` and `outcome` labels (0 when absent).
fn attempts(scrape: &str, relay: &str, outcome: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with("herald_delivery_attempts_total{"))
        .filter(|l| {
            l.contains(&format!("relay=\"{relay}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum()
}

fn attempt_events(message: &Message) -> Vec<Event> {
    message
        .events
        .iter()
        .flatten()
        .filter(|e| e.kind == EventKind::Attempt)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_an_error_and_an_open_circuit_counts_under_its_relay() {
    // Nothing listens on this port: every connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relay = format!(
        "[[relays]]\nname = \"down\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         [relays.breaker]\nfailure_threshold = 1\nopen_for = \"1h\"\nmax_open_for = \"1h\"\n"
    );
    let dir = temp_dir();
    let herald = Herald::start_in(dir.clone(), &config_text(&dir, None, &relay)).await;
    let id = &herald.queue(message(&["a@example.com"])).await.id;
    let seen = herald
        .wait_for(id, Duration::from_secs(15), |m| {
            attempt_events(m).len() >= 2
        })
        .await;
    let events = attempt_events(&seen);

    // The refused connection: the relay failed as a whole, with no SMTP
    // code to show.
    assert_eq!(events[0].relay.as_deref(), Some("down"), "{events:#?}");
    assert_eq!(
        events[0].outcome,
        Some(AttemptOutcome::Error),
        "{events:#?}"
    );
    assert_eq!(events[0].smtp_code, None, "{events:#?}");
    // The circuit is now open: the retry is deferred untried, still the
    // relay's, and says why.
    assert_eq!(events[1].relay.as_deref(), Some("down"), "{events:#?}");
    assert_eq!(
        events[1].outcome,
        Some(AttemptOutcome::Transient),
        "{events:#?}"
    );
    assert!(
        events[1]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("circuit"),
        "{events:#?}"
    );

    let (status, body, _) = herald.request("GET", "/metrics", None, &[]).await;
    assert_eq!(status, 200);
    let scrape = body.as_str().unwrap();
    assert_eq!(attempts(scrape, "down", "error"), 1.0, "{scrape}");
    assert!(attempts(scrape, "down", "transient") >= 1.0, "{scrape}");
    for outcome in ["delivered", "partial", "transient", "permanent", "error"] {
        assert_eq!(attempts(scrape, "none", outcome), 0.0, "{scrape}");
    }
    herald.stop().await.unwrap();
}
