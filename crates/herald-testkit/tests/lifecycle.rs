//! Connection lifecycle: idle closes, many concurrent sessions, shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{WAIT, connect_greeted};
use herald_testkit::{Closer, ServerConfig, TestServer};
use tokio::net::TcpStream;

#[tokio::test]
async fn close_idle_connections_closes_only_idle_sessions() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let mut idle = connect_greeted(&server).await;
    idle.ehlo().await;
    assert_eq!(
        idle.send_message("a@x.test", &["b@y.test"], "1\r\n")
            .await
            .code,
        250
    );
    let mut busy = connect_greeted(&server).await;
    busy.ehlo().await;
    assert_eq!(busy.cmd("MAIL FROM:<a@x.test>").await.code, 250);

    server.close_idle_connections();
    idle.expect_closed().await;

    // The session in a transaction is untouched and finishes its message.
    assert_eq!(busy.cmd("RCPT TO:<c@y.test>").await.code, 250);
    assert_eq!(busy.cmd("DATA").await.code, 354);
    assert_eq!(busy.send_body("2\r\n").await.code, 250);
    let sessions = server.sessions();
    assert_eq!(sessions[0].closed_by, Closer::Server);
    assert_eq!(sessions[1].closed_by, Closer::Unknown);

    // A new request reaches it now that it is idle.
    server.close_idle_connections();
    busy.expect_closed().await;
    assert_eq!(server.message_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_pipelined_sessions() {
    const CONNECTIONS: usize = 16;
    const PER_CONNECTION: usize = 25;
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let body = format!("Subject: load\r\n\r\n{}\r\n", "z".repeat(2000));
    let mut tasks = Vec::new();
    for n in 0..CONNECTIONS {
        let mut c = connect_greeted(&server).await;
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            c.ehlo().await;
            for i in 0..PER_CONNECTION {
                c.send(&format!(
                    "MAIL FROM:<s{n}@x.test>\r\nRCPT TO:<r{i}@y.test>\r\nDATA\r\n"
                ))
                .await;
                for code in [250, 250, 354] {
                    assert_eq!(c.reply().await.code, code);
                }
                assert_eq!(c.send_body(&body).await.code, 250);
            }
            assert_eq!(c.cmd("QUIT").await.code, 221);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = CONNECTIONS * PER_CONNECTION;
    assert!(server.wait_for_messages(total, WAIT).await);
    assert_eq!(server.connections(), CONNECTIONS);
    let messages = server.messages();
    assert_eq!(messages.len(), total);
    assert!(messages.iter().all(|m| m.data == body.as_bytes()));
    for n in 0..CONNECTIONS {
        let from = format!("s{n}@x.test");
        let mine: Vec<_> = messages.iter().filter(|m| m.mail_from == from).collect();
        assert_eq!(mine.len(), PER_CONNECTION);
        // Within one connection, messages keep their order.
        for (i, m) in mine.iter().enumerate() {
            assert_eq!(m.rcpt_to, [format!("r{i}@y.test")]);
        }
    }
}

#[tokio::test]
async fn wait_for_messages_times_out() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    assert!(server.wait_for_messages(0, Duration::ZERO).await);
    assert!(!server.wait_for_messages(1, Duration::from_millis(20)).await);
}

#[tokio::test]
async fn shutdown_closes_sessions_and_stops_listening() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let addr = server.addr();
    assert_eq!(server.port(), addr.port());
    assert!(addr.ip().is_loopback());
    let mut c = connect_greeted(&server).await;
    c.ehlo().await;
    server.shutdown().await;
    c.expect_closed().await;
    assert_eq!(server.sessions()[0].closed_by, Closer::Server);
    assert!(TcpStream::connect(addr).await.is_err());
    // Idempotent.
    server.shutdown().await;

    // Dropping the server closes connections too.
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let mut c = connect_greeted(&server).await;
    drop(server);
    c.expect_closed().await;
}
