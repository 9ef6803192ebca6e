//! The connection pool against the testkit server: reuse, limits, and
//! connections the server closes while they sit idle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{MESSAGE, client, envelope};
use herald_smtp::{Ctx, Pool, PoolConfig, SendOptions, TlsMode};
use herald_testkit::{Closer, ServerConfig, TestServer};

fn pool(server: &TestServer, max_connections: usize, per_connection: usize) -> Arc<Pool> {
    Arc::new(Pool::new(
        client(server, TlsMode::None),
        PoolConfig {
            max_connections,
            max_messages_per_connection: per_connection,
            idle_timeout: Duration::from_secs(30),
        },
    ))
}

async fn send(pool: &Pool, rcpt: &str) {
    let out = pool
        .send(
            &envelope(&[rcpt]),
            MESSAGE,
            SendOptions::default(),
            &Ctx::default(),
        )
        .await
        .unwrap();
    assert!(out[0].is_delivered(), "{out:?}");
}

#[tokio::test]
async fn connections_are_reused_and_bounded() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let pool = pool(&server, 3, 1000);
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for j in 0..10 {
                    send(&pool, &format!("r{i}-{j}@example.com")).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(server.message_count(), 120);
    assert!(
        server.connections() <= 3,
        "{} connections",
        server.connections()
    );
    let stats = pool.stats();
    assert_eq!(stats.opened_total, server.connections());
    assert_eq!(stats.opened_total + stats.reused_total, 120);
}

#[tokio::test]
async fn pipelining_is_used_when_offered_and_not_otherwise() {
    for offered in [true, false] {
        let server = TestServer::start(ServerConfig {
            pipelining: offered,
            ..ServerConfig::default()
        })
        .await
        .unwrap();
        let pool = pool(&server, 1, 100);
        send(&pool, "a@example.com").await;
        send(&pool, "b@example.com").await;
        let session = &server.sessions()[0];
        let envelope_commands: Vec<_> = session
            .commands
            .iter()
            .filter(|c| ["MAIL", "RCPT", "RSET"].contains(&c.verb.as_str()))
            .collect();
        assert_eq!(envelope_commands.len(), 5, "{:?}", session.verbs());
        for c in envelope_commands {
            assert_eq!(c.pipelined, offered, "{} pipelined={}", c.line, c.pipelined);
        }
        // RSET between the two messages on the reused connection.
        let verbs = session.verbs();
        let second_mail = verbs.iter().rposition(|v| *v == "MAIL").unwrap();
        assert_eq!(verbs[second_mail - 1], "RSET", "{verbs:?}");
    }
}

/// Closes the server's one session once it waits for a command, and
/// returns when its socket is closed. Asking once right after a send could
/// come before the session is idle (and do nothing), and a fixed sleep
/// could end before the close: the test raced on both.
async fn close_the_idle_session(server: &TestServer) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.sessions()[0].closed_by != Closer::Server {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle session never closed: {:?}",
            server.sessions()[0]
        );
        server.close_idle_connections();
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_connection_closed_by_the_server_while_idle_is_replaced() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let pool = pool(&server, 1, 100);
    send(&pool, "a@example.com").await;
    close_the_idle_session(&server).await;
    // The message must not fail because its pooled connection went away.
    send(&pool, "b@example.com").await;
    assert_eq!(server.message_count(), 2);
    assert_eq!(server.connections(), 2);
    assert_eq!(pool.stats().stale_total, 1);
}

#[tokio::test]
async fn a_server_that_caps_messages_per_connection_is_handled() {
    let server = TestServer::start(ServerConfig {
        max_messages_per_connection: Some(2),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let pool = pool(&server, 1, 100);
    for i in 0..5 {
        send(&pool, &format!("r{i}@example.com")).await;
    }
    assert_eq!(server.message_count(), 5);
    assert!(server.connections() >= 3);
}

#[tokio::test]
async fn our_own_per_connection_limit_opens_fresh_sessions() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let pool = pool(&server, 1, 2);
    for i in 0..5 {
        send(&pool, &format!("r{i}@example.com")).await;
    }
    assert_eq!(server.connections(), 3);
}

#[tokio::test]
async fn a_session_waiting_for_its_banner_counts_as_open() {
    let server = TestServer::start(ServerConfig {
        faults: vec![herald_testkit::FaultRule::always(
            herald_testkit::Phase::Banner,
            herald_testkit::Fault::Stall,
        )],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let pool = pool(&server, 1, 100);
    let sending = tokio::spawn({
        let pool = pool.clone();
        async move {
            let _ = pool
                .send(
                    &envelope(&["a@example.com"]),
                    MESSAGE,
                    SendOptions::default(),
                    &Ctx::default(),
                )
                .await;
        }
    });
    // Wait until the server has the connection: the client now waits for
    // a banner that never comes.
    while server.connections() == 0 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(pool.stats().open, 1, "{:?}", pool.stats());
    assert_eq!(pool.stats().opened_total, 0);
    // Given up mid-handshake: no longer open, never opened.
    sending.abort();
    let _ = sending.await;
    assert_eq!(pool.stats().open, 0, "{:?}", pool.stats());
}
