//! The running evaluator and senders read the clock they are given, not
//! the machine's: failures recorded at a fake time long past fire an alert
//! when the clock stands at that time, and the alert says it was sent then.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Shared with alert_channels.rs, which uses the rest of it.
#[allow(dead_code)]
#[path = "alert_channels/support.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use herald_alerts::{Alerting, AlertsConfig, FailureClass, FailureSample};
use herald_policy::ManualClock;
use time::macros::datetime;
use tokio_util::sync::CancellationToken;

use support::Receiver;

#[tokio::test]
async fn the_evaluator_and_senders_run_on_the_clock_they_are_given() {
    let rx = Receiver::start().await;
    let config = AlertsConfig::from_toml_str(
        &format!(
            r#"
[alerts]
[[alerts.channels]]
name = "hook"
kind = "webhook"
url = "{}/hook"
[[alerts.rules]]
name = "relay-failing"
scope = "relay"
window = "5m"
tiers = [{{ min_count = 3, channels = ["hook"] }}]
"#,
            rx.base
        ),
        &|_| None,
    )
    .unwrap();
    let long_ago = datetime!(2001-02-03 04:05:06 UTC);
    let alerting = Arc::new(Alerting::new(config, Arc::new(ManualClock::new(long_ago))));
    for n in 0..3 {
        alerting.record_failure(FailureSample {
            relay: "primary".to_owned(),
            class: FailureClass::Permanent,
            smtp_code: Some(550),
            enhanced_code: Some("5.7.1".to_owned()),
            response: "rejected by policy".to_owned(),
            message_id: format!("m{n}"),
            at: long_ago,
        });
    }
    // By the machine's clock these failures are decades old: outside any
    // window, no alert. By the given clock they are now.
    let stop = CancellationToken::new();
    let evaluator =
        Arc::clone(&alerting).spawn_evaluator(Duration::from_millis(10), stop.clone(), None);
    let hook = rx.wait_for("/hook", 1).await;
    let alert = hook[0].json();
    assert_eq!(alert["status"], "firing", "{alert:#}");
    assert_eq!(alert["count"], 3, "{alert:#}");
    assert_eq!(alert["at"], "2001-02-03T04:05:06Z", "{alert:#}");
    assert_eq!(alert["sent_at"], "2001-02-03T04:05:06Z", "{alert:#}");
    assert_eq!(
        hook[0].header("X-Herald-Timestamp"),
        long_ago.unix_timestamp().to_string()
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), evaluator)
        .await
        .unwrap()
        .unwrap();
}
