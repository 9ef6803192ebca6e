//! Leases that heal, end to end: a delivery that takes longer than the
//! lease keeps its message (the heartbeat renews it), so nobody sends it a
//! second time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Herald, event_kinds, message};
use herald_api::{EventKind, MessageStatus};
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

    let id = &herald.queue(message(&["bob@example.com"])).await.id;
    let done = herald
        .wait_for(id, Duration::from_secs(20), |m| {
            m.status == MessageStatus::Delivered
        })
        .await;
    assert_eq!(
        event_kinds(&done),
        [EventKind::Queued, EventKind::Attempt, EventKind::Delivered],
        "{done:#?}"
    );
    let duration = done.events.as_ref().unwrap()[1].duration_ms.unwrap();
    assert!(duration >= 4_500, "the attempt took {duration} ms");
    assert_eq!(smtp.message_count(), 1, "sent more than once");
    herald.stop().await.unwrap();
}
