//! Error aggregation and alerting through the running service: identical
//! failures for different recipients become one group in `GET /v1/errors`,
//! a rule crossing its threshold posts one alert to a webhook, and a dead
//! webhook never holds up mail (and its lost alert shows in /metrics).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Herald, message, typed};
use herald_api::{ErrorGroups, FailureClass, MessageStatus};
use herald_testkit::{ServerConfig, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_failures_group_together_and_alert_once() {
    let smtp = TestServer::start(ServerConfig::default()).await.unwrap();
    let (url, alerts) = common::webhook_receiver().await;
    let herald = Herald::start_with(Some(&smtp), &common::relay_alert_toml(&url, 3)).await;

    let mut ids = Vec::new();
    for who in [
        "rcpt550-ann",
        "rcpt550-bob",
        "rcpt550-cy",
        "rcpt550-dee",
        "rcpt550-eve",
    ] {
        let to = format!("{who}@example.com");
        ids.push(herald.queue(message(&[&to])).await.id);
    }
    for id in &ids {
        herald.wait_status(id, MessageStatus::Failed).await;
    }

    let (status, errors) = herald.get("/v1/errors?window=15m").await;
    assert_eq!(status, 200, "{errors}");
    let errors: ErrorGroups = typed(&errors);
    assert_eq!(errors.window_seconds, 15 * 60);
    assert_eq!(errors.groups.len(), 1, "{errors:#?}");
    let group = &errors.groups[0];
    assert_eq!(group.count, 5);
    assert_eq!(group.window_count, 5);
    assert_eq!(group.relay, "test");
    assert_eq!(group.class, FailureClass::Permanent);
    assert_eq!(group.smtp_code, Some(550));
    assert_eq!(group.enhanced_code.as_deref(), Some("5.1.1"));
    assert!(ids.contains(&group.sample_message_id));
    assert!(!group.text.contains('@'), "{group:#?}");
    let (_, other) = herald.get("/v1/errors?relay=elsewhere").await;
    assert!(typed::<ErrorGroups>(&other).groups.is_empty());
    let (status, _) = herald.get("/v1/errors?window=soon").await;
    assert_eq!(status, 400);

    // One alert for the incident, however often the rules are evaluated.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while alerts.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no alert arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two more evaluations, and nothing left to send: still one alert.
    herald.alert_evaluations(2.0).await;
    let received = alerts.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{received:#?}");
    let text = received[0].to_string();
    assert!(text.contains("relay-failing"), "{text}");
    assert!(
        !text.contains("@example.com"),
        "a recipient leaked into the alert: {text}"
    );
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_does_not_hold_up_mail() {
    let smtp = TestServer::start(ServerConfig::default()).await.unwrap();
    // Nothing listens on this port: every alert delivery fails.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let herald = Herald::start_with(
        Some(&smtp),
        &common::relay_alert_toml(&format!("http://127.0.0.1:{port}/hook"), 3),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let to = format!("rcpt550-{i}@example.com");
        ids.push(herald.queue(message(&[&to])).await.id);
    }
    for i in 0..10 {
        let to = format!("ok{i}@example.com");
        ids.push(herald.queue(message(&[&to])).await.id);
    }
    for id in &ids[5..] {
        herald.wait_status(id, MessageStatus::Delivered).await;
    }
    assert_eq!(smtp.message_count(), 10);

    // The lost alert shows in /metrics: failed after every try, none sent.
    let failed = [("channel", "hook"), ("outcome", "failed")];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while herald
        .metric("herald_alert_notifications_total", &failed)
        .await
        < 1.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failed alert never showed in /metrics"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    herald.alert_evaluations(1.0).await;
    let sent = [("channel", "hook"), ("outcome", "sent")];
    assert_eq!(
        herald
            .metric("herald_alert_notifications_total", &sent)
            .await,
        0.0
    );
    assert_eq!(
        herald
            .metric("herald_alert_notifications_total", &failed)
            .await,
        1.0
    );
    herald.stop().await.unwrap();
}
