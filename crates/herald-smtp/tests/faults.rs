//! Failures the testkit server scripts: rejected recipients, disconnects,
//! a dropped DATA, and stalls in every phase, each classified correctly.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Tests measure real time (deadlines, elapsed) on the machine's clocks.
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{MESSAGE, client, envelope};
use herald_smtp::{Connection, Ctx, ErrorKind, Phase, Scope, SendOptions, Timeouts, TlsMode};
use herald_testkit::{Fault, FaultRule, Phase as ServerPhase, ServerConfig, TestServer};

async fn plain_server() -> TestServer {
    TestServer::start(ServerConfig::default()).await.unwrap()
}

#[tokio::test]
async fn mixed_recipients_get_their_own_outcomes_and_one_copy() {
    let server = plain_server().await;
    let mut conn = Connection::open(Arc::new(client(&server, TlsMode::None)), &Ctx::default())
        .await
        .unwrap();
    let out = conn
        .send(
            &envelope(&[
                "ok1@example.com",
                "rcpt451@example.com",
                "rcpt550@example.com",
                "ok2@example.com",
            ]),
            MESSAGE,
            SendOptions::default(),
            &Ctx::default(),
        )
        .await
        .unwrap();
    let summary: Vec<_> = out
        .iter()
        .map(|o| match &o.result {
            Ok(_) => "delivered",
            Err(e) if e.is_transient() => "transient",
            Err(_) => "permanent",
        })
        .collect();
    assert_eq!(
        summary,
        ["delivered", "transient", "permanent", "delivered"]
    );
    let e550 = out[2].result.as_ref().unwrap_err();
    assert_eq!(
        (e550.smtp_code(), e550.scope()),
        (Some(550), Scope::Recipient)
    );
    assert_eq!(e550.enhanced_code().unwrap().to_string(), "5.1.1");
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "exactly one copy");
    assert_eq!(messages[0].rcpt_to, ["ok1@example.com", "ok2@example.com"]);
    assert!(conn.is_usable());
}

#[tokio::test]
async fn a_failure_after_the_dot_applies_to_every_accepted_recipient() {
    let server = plain_server().await;
    let mut conn = Connection::open(Arc::new(client(&server, TlsMode::None)), &Ctx::default())
        .await
        .unwrap();
    for (rcpt, code, transient) in [
        ("data451@example.com", 451, true),
        ("data554@example.com", 554, false),
    ] {
        let out = conn
            .send(
                &envelope(&["a@example.com", rcpt]),
                MESSAGE,
                SendOptions::default(),
                &Ctx::default(),
            )
            .await
            .unwrap();
        for o in &out {
            let e = o.result.as_ref().unwrap_err();
            assert_eq!(
                (e.smtp_code(), e.phase(), e.scope()),
                (Some(code), Phase::DataDot, Scope::Message)
            );
            assert_eq!(e.is_transient(), transient);
        }
    }
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn disconnect_and_dropped_data_are_transient_connection_failures() {
    let server = plain_server().await;
    for (rcpt, phase, code) in [
        ("disconnect@example.com", Phase::Rcpt, Some(421)),
        ("dropdata@example.com", Phase::DataDot, None),
        ("close@example.com", Phase::Rcpt, None),
    ] {
        let mut conn = Connection::open(Arc::new(client(&server, TlsMode::None)), &Ctx::default())
            .await
            .unwrap();
        let err = conn
            .send(
                &envelope(&[rcpt]),
                &vec![b'x'; 200_000],
                SendOptions::default(),
                &Ctx::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.phase(), phase, "{rcpt}: {err}");
        assert_eq!(err.smtp_code(), code, "{rcpt}: {err}");
        assert!(
            err.is_transient() && err.scope() == Scope::Connection,
            "{rcpt}: {err}"
        );
        assert!(!conn.is_usable());
    }
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn a_stall_in_any_phase_fires_that_phase_timeout() {
    let timeout = Duration::from_millis(300);
    // (server phase to stall, client phase expected, recipient)
    let cases = [
        (Some(ServerPhase::Banner), Phase::Banner, "a@example.com"),
        (Some(ServerPhase::Ehlo), Phase::Ehlo, "a@example.com"),
        (Some(ServerPhase::Mail), Phase::Mail, "a@example.com"),
        (None, Phase::Rcpt, "stallrcpt@example.com"),
        (None, Phase::Data, "stalldata@example.com"),
        (None, Phase::DataDot, "stalldot@example.com"),
    ];
    for (stall, want, rcpt) in cases {
        let server = TestServer::start(ServerConfig {
            faults: stall
                .map(|p| FaultRule::always(p, Fault::Stall))
                .into_iter()
                .collect(),
            ..ServerConfig::default()
        })
        .await
        .unwrap();
        let mut config = client(&server, TlsMode::None);
        config.timeouts = Timeouts::uniform(timeout);
        let started = Instant::now();
        let result = async {
            let mut conn = Connection::open(Arc::new(config), &Ctx::default()).await?;
            conn.send(
                &envelope(&[rcpt]),
                MESSAGE,
                SendOptions::default(),
                &Ctx::default(),
            )
            .await
        }
        .await;
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{want}: {err}");
        assert_eq!(err.phase(), want, "{err}");
        assert!(err.is_transient());
        let took = started.elapsed();
        assert!(
            took >= timeout && took < timeout * 10,
            "{want}: took {took:?}"
        );
    }
}

#[tokio::test]
async fn a_deadline_cuts_a_long_phase_short_and_is_reported_as_cancelled() {
    let server = plain_server().await;
    let mut conn = Connection::open(Arc::new(client(&server, TlsMode::None)), &Ctx::default())
        .await
        .unwrap();
    let ctx = Ctx::with_timeout(Duration::from_millis(200));
    let err = conn
        .send(
            &envelope(&["stallrcpt@example.com"]),
            MESSAGE,
            SendOptions::default(),
            &ctx,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert_eq!(err.phase(), Phase::Rcpt);
}
