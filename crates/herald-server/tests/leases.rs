//! Leases that heal, end to end: a delivery that takes longer than the
//! lease keeps its message (the heartbeat renews it), so nobody sends it a
//! second time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Herald, message};
use herald_testkit::{Fault, FaultRule, Phase, ServerConfig, TestServer};

/// The reply to the final dot comes after 4.5 s, longer than the 3 s lease:
/// without heartbeats the lease runs out mid-delivery, the node's own
/// dispatcher claims the message again and the relay receives it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_longer_than_the_lease_keeps_its_message() {
    let smtp = TestServer::start(ServerConfig {
        faults: vec![FaultRule::times(
            Phase::DataDot,
            Fault::Delay(Duration::from_millis(4_500)),
            1,
        )],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let dir = common::temp_dir();
    let text = common::config_text(&dir, Some(&smtp), "")
        .replace("lease = \"10s\"", "lease = \"3s\"")
        .replace("data_timeout = \"2s\"", "data_timeout = \"10s\"");
    assert!(text.contains("lease = \"3s\""), "{text}");
    let herald = Herald::start_in(dir, &text).await;

    let (status, created) = herald
        .post("/v1/messages", message(&["bob@example.com"]))
        .await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap();
    let done = herald
        .wait_for(id, Duration::from_secs(20), |m| m["status"] == "delivered")
        .await;
    let kinds: Vec<&str> = done["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["queued", "attempt", "delivered"], "{done:#}");
    let duration = done["events"][1]["duration_ms"].as_u64().unwrap();
    assert!(duration >= 4_500, "the attempt took {duration} ms");
    assert_eq!(smtp.message_count(), 1, "sent more than once");
    herald.stop().await.unwrap();
}
