//! The `Mailer` against the testkit SMTP server with scripted faults: what
//! each recipient came to, how many attempts it took, what the server
//! received, and the waits between attempts, taken on a manual clock (the
//! tests never wait for a retry).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use herald_mailer::{Error, Mailer, ManualSleeper, OnAmbiguous, Outcome, Report};
use herald_message::MessageRequest;
use herald_policy::{GiveUpReason, Jitter, ManualClock, RetryPolicy};
use herald_smtp::{ClientConfig, ErrorKind, Timeouts, TlsMode, tls_config_from_pem};
use herald_testkit::{Fault, FaultRule, Phase, ServerConfig, TestServer};
use time::macros::datetime;

fn relay(server: &TestServer) -> ClientConfig {
    let mut config = ClientConfig::new(
        "127.0.0.1",
        server.port(),
        TlsMode::None,
        tls_config_from_pem(server.ca_pem().as_bytes()).unwrap(),
    );
    config.helo_name = "herald.test".into();
    config.timeouts = Timeouts::uniform(Duration::from_secs(5));
    config
}

/// 1 s after the first failure, then 2 s, 4 s…; no jitter, so the waits
/// are exact.
fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        initial_delay: Duration::from_secs(1),
        multiplier: 2.0,
        max_delay: Duration::from_secs(60),
        min_delay: Duration::from_millis(100),
        max_attempts,
        max_age: Duration::from_secs(600),
        jitter: Jitter::None,
    }
}

struct Setup {
    mailer: Mailer,
    sleeper: Arc<ManualSleeper>,
}

fn mailer(server: &TestServer, policy: RetryPolicy, on_ambiguous: OnAmbiguous) -> Setup {
    mailer_with(relay(server), policy, on_ambiguous)
}

fn mailer_with(relay: ClientConfig, policy: RetryPolicy, on_ambiguous: OnAmbiguous) -> Setup {
    let clock = Arc::new(ManualClock::new(datetime!(2026-12-05 12:00 UTC)));
    let sleeper = Arc::new(ManualSleeper::new(clock.clone()));
    let mailer = Mailer::builder(relay)
        .retry(policy)
        .clock(clock)
        .sleeper(sleeper.clone())
        .on_ambiguous(on_ambiguous)
        .seed(7)
        .build()
        .unwrap();
    Setup { mailer, sleeper }
}

fn request(to: &[&str]) -> MessageRequest {
    MessageRequest {
        from: Some("App <app@example.com>".into()),
        to: to.iter().map(|s| s.to_string()).collect(),
        subject: Some("Your code".into()),
        text: Some("your code is 424242".into()),
        ..MessageRequest::default()
    }
}

fn outcome<'a>(report: &'a Report, address: &str) -> &'a herald_mailer::RecipientReport {
    report
        .recipient(address)
        .unwrap_or_else(|| panic!("{address} is in the report: {report:?}"))
}

#[tokio::test]
async fn transient_faults_are_retried_until_delivered_and_a_550_is_refused() {
    // The first connection gets 421 in its banner; the 451 recipient is
    // refused once; the 550 one always.
    let server = TestServer::start(ServerConfig {
        faults: vec![FaultRule::times(
            Phase::Banner,
            Fault::Reply(421, "4.3.2 busy, try later".into()),
            1,
        )],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let setup = mailer(&server, policy(5), OnAmbiguous::Report);
    let report = setup
        .mailer
        .send_request(&request(&[
            "ok@example.com",
            "rcpt451-once@example.com",
            "rcpt550@example.com",
        ]))
        .await
        .unwrap();

    assert_eq!(report.attempts, 3, "{report:?}");
    let ok = outcome(&report, "ok@example.com");
    assert!(matches!(ok.outcome, Outcome::Delivered(_)), "{ok:?}");
    assert_eq!(ok.attempts, 2, "the 421 attempt, then delivered");
    assert_eq!(ok.code(), Some(250));

    let late = outcome(&report, "rcpt451-once@example.com");
    assert!(matches!(late.outcome, Outcome::Delivered(_)), "{late:?}");
    assert_eq!(late.attempts, 3, "421, 451, then delivered");

    let refused = outcome(&report, "rcpt550@example.com");
    assert!(
        matches!(refused.outcome, Outcome::Refused(_)),
        "{refused:?}"
    );
    assert_eq!(
        refused.attempts, 2,
        "refused at its first RCPT, never again"
    );
    assert_eq!(refused.code(), Some(550));
    assert_eq!(
        refused.enhanced_code().map(|c| c.to_string()).as_deref(),
        Some("5.1.1")
    );
    assert!(!report.all_delivered());
    // In the envelope's order.
    let order: Vec<_> = report
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(
        order,
        [
            "ok@example.com",
            "rcpt451-once@example.com",
            "rcpt550@example.com"
        ]
    );

    // Each accepted recipient got the message exactly once: the retry went
    // only to the one still deferred.
    let messages = server.messages();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[0].rcpt_to, ["ok@example.com"]);
    assert_eq!(messages[1].rcpt_to, ["rcpt451-once@example.com"]);
    let body = String::from_utf8_lossy(&messages[1].data);
    assert!(body.contains("Subject: Your code"), "{body}");
    assert!(
        body.contains(&format!("Message-ID: {}", report.message_id)),
        "{body}"
    );
    // The policy's backoff, taken on the manual clock: 1 s, then 2 s.
    assert_eq!(
        setup.sleeper.waits(),
        [Duration::from_secs(1), Duration::from_secs(2)]
    );
    setup.mailer.close().await;
}

#[tokio::test]
async fn a_recipient_deferred_every_time_is_given_up_after_max_attempts() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let setup = mailer(&server, policy(3), OnAmbiguous::Report);
    let report = setup
        .mailer
        .send_request(&request(&["ok@example.com", "rcpt451@example.com"]))
        .await
        .unwrap();
    let deferred = outcome(&report, "rcpt451@example.com");
    assert!(
        matches!(
            deferred.outcome,
            Outcome::GaveUp {
                reason: GiveUpReason::MaxAttempts,
                ..
            }
        ),
        "{deferred:?}"
    );
    assert_eq!(deferred.attempts, 3);
    assert_eq!(deferred.code(), Some(451));
    assert_eq!(
        deferred.enhanced_code().map(|c| c.to_string()).as_deref(),
        Some("4.7.1")
    );
    assert_eq!(outcome(&report, "ok@example.com").attempts, 1);
    assert_eq!(server.message_count(), 1);
    assert_eq!(
        setup.sleeper.waits(),
        [Duration::from_secs(1), Duration::from_secs(2)]
    );
}

#[tokio::test]
async fn the_deadline_ends_the_retries_on_the_manual_clock() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    // 1, 2, 4, 8 s… but nothing may start 10 s after the first attempt:
    // attempts at 0, 1, 3 and 7 s, then one at the deadline (10 s), then
    // no room is left.
    let setup = mailer(
        &server,
        RetryPolicy {
            max_age: Duration::from_secs(10),
            ..policy(100)
        },
        OnAmbiguous::Report,
    );
    let report = setup
        .mailer
        .send_request(&request(&["rcpt451@example.com"]))
        .await
        .unwrap();
    let deferred = outcome(&report, "rcpt451@example.com");
    assert!(
        matches!(
            deferred.outcome,
            Outcome::GaveUp {
                reason: GiveUpReason::MaxAge,
                ..
            }
        ),
        "{deferred:?}"
    );
    assert_eq!(deferred.attempts, 5);
    assert_eq!(
        setup.sleeper.waits(),
        [1, 2, 4, 3].map(Duration::from_secs),
        "the last wait is clamped to the deadline"
    );
}

#[tokio::test]
async fn no_answer_to_the_final_dot_is_reported_ambiguous_and_not_resent() {
    let server = TestServer::start(ServerConfig {
        faults: vec![FaultRule::times(Phase::DataDot, Fault::Stall, 1)],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut config = relay(&server);
    config.timeouts.data_dot = Duration::from_millis(300);
    let setup = mailer_with(config, policy(5), OnAmbiguous::Report);
    let report = setup
        .mailer
        .send_request(&request(&["a@example.com", "b@example.com"]))
        .await
        .unwrap();
    assert_eq!(report.attempts, 1);
    for address in ["a@example.com", "b@example.com"] {
        let r = outcome(&report, address);
        assert!(matches!(r.outcome, Outcome::Ambiguous(_)), "{r:?}");
        assert_eq!(r.attempts, 1);
        assert_eq!(r.error().map(|e| e.kind()), Some(ErrorKind::Timeout));
    }
    assert!(setup.sleeper.waits().is_empty(), "nothing was retried");
    assert_eq!(server.connections(), 1, "no second transaction");
    assert_eq!(server.message_count(), 0);
}

#[tokio::test]
async fn an_ambiguous_final_dot_is_retried_when_told_to() {
    let server = TestServer::start(ServerConfig {
        faults: vec![FaultRule::times(Phase::DataDot, Fault::Stall, 1)],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut config = relay(&server);
    config.timeouts.data_dot = Duration::from_millis(300);
    let setup = mailer_with(config, policy(5), OnAmbiguous::Retry);
    let report = setup
        .mailer
        .send_request(&request(&["a@example.com"]))
        .await
        .unwrap();
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(outcome(&report, "a@example.com").attempts, 2);
    assert_eq!(setup.sleeper.waits(), [Duration::from_secs(1)]);
    assert_eq!(server.message_count(), 1);
}

#[tokio::test]
async fn an_invalid_request_names_its_field_and_sends_nothing() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let setup = mailer(&server, policy(5), OnAmbiguous::Report);
    let mut bad = request(&["not an address"]);
    bad.subject = Some("x".into());
    let error = setup.mailer.send_request(&bad).await.unwrap_err();
    let Error::Invalid(errors) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(errors.first().field, "to[0]", "{error}");
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn a_policy_that_makes_no_sense_is_refused_when_built() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let error = Mailer::builder(relay(&server))
        .retry(RetryPolicy {
            max_attempts: 0,
            ..policy(1)
        })
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("max_attempts"), "{error}");
}
