//! Two herald nodes in one process on one PostgreSQL database: error
//! groups are the same on both (failures travel through the store's
//! feed), and an alert rule that only the two nodes' failures together
//! cross fires exactly once (one node at a time evaluates the rules).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::pg::PgDatabase;
use common::{Herald, message};
use herald_api::MessageStatus;
use herald_testkit::{ServerConfig, TestServer};

/// Node `name` on `db`, alerting to `hook` when the relay has failed 6
/// times within the window (each node alone will see 4).
async fn node(name: &str, db: &PgDatabase, smtp: &TestServer, hook: &str) -> Herald {
    let dir = common::temp_dir();
    let alerts = common::relay_alert_toml(hook, 6);
    let text = db.node_config(name, &dir, &common::config_text(&dir, Some(smtp), &alerts));
    Herald::start_in(dir, &text).await
}

/// The alert evaluations node `h` ran.
async fn evaluations(h: &Herald) -> f64 {
    h.metric("herald_alert_evaluations_total", &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_error_groups_and_send_one_alert() {
    let db = PgDatabase::create("cluster");
    let smtp = TestServer::start(ServerConfig::default()).await.unwrap();
    let (hook, alerts) = common::webhook_receiver().await;
    let a = node("node-a", &db, &smtp, &hook).await;
    let b = node("node-b", &db, &smtp, &hook).await;

    let mut ids = Vec::new();
    for i in 0..8 {
        let via = if i % 2 == 0 { &a } else { &b };
        let to = format!("rcpt550-{i}@example.com");
        ids.push(via.queue(message(&[&to])).await.id);
    }
    // Either node answers for every message.
    for id in &ids {
        b.wait_status(id, MessageStatus::Failed).await;
        let (status, _) = a.get(&format!("/v1/messages/{id}")).await;
        assert_eq!(status, 200);
    }

    // Both nodes come to show the one group with all 8 failures.
    for herald in [&a, &b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (status, errors) = herald.get("/v1/errors?window=15m").await;
            assert_eq!(status, 200, "{errors}");
            let groups = errors["groups"].as_array().unwrap();
            if groups.len() == 1 && groups[0]["count"] == 8 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the groups never added up: {errors:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while alerts.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no alert arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both nodes hold every failure: were both evaluating, each would
    // send its own copy at its next evaluation. Three more evaluations on
    // whichever node leads, and nothing pending on either.
    let from = evaluations(&a).await + evaluations(&b).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let done = evaluations(&a).await + evaluations(&b).await;
        let pending = a.metric("herald_alert_notifications_pending", &[]).await
            + b.metric("herald_alert_notifications_pending", &[]).await;
        if done >= from + 3.0 && pending == 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} of {from} + 3 evaluations, {pending} pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = alerts.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{received:#?}");
    assert!(received[0].to_string().contains("relay-failing"));

    a.stop().await.unwrap();
    b.stop().await.unwrap();
    drop(db);
}
