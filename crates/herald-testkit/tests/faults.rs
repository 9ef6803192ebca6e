//! Scripted faults: by recipient local part, by phase-wide rule, by
//! probability, and the slow-server delay.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Tests measure real time (deadlines, elapsed) on the machine's clocks.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::{Client, connect, connect_greeted};
use herald_testkit::{Closer, Fault, FaultRule, Phase, ServerConfig, TestServer};
use tokio::net::TcpStream;

/// Long enough to be sure a stalled reply is not merely late on a loaded
/// machine running tests in parallel, short enough to keep the suite fast.
const STALL: Duration = Duration::from_millis(300);

async fn ready(server: &TestServer) -> Client<TcpStream> {
    let mut c = connect_greeted(server).await;
    c.ehlo().await;
    c
}

async fn open_txn(c: &mut Client<TcpStream>, rcpt: &str) -> u16 {
    assert_eq!(c.cmd("MAIL FROM:<a@x.test>").await.code, 250);
    c.cmd(&format!("RCPT TO:<{rcpt}>")).await.code
}

#[tokio::test]
async fn rcpt451_once_fails_then_succeeds_on_a_second_session() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let mut first = ready(&server).await;
    assert_eq!(first.cmd("MAIL FROM:<a@x.test>").await.code, 250);
    let reply = first.cmd("RCPT TO:<rcpt451-once@y.test>").await;
    assert_eq!(reply.code, 451);
    assert!(reply.text().starts_with("4.7.1"), "{reply:?}");
    assert_eq!(first.cmd("QUIT").await.code, 221);

    let mut second = ready(&server).await;
    let reply = second
        .send_message("a@x.test", &["rcpt451-once@y.test"], "retry\r\n")
        .await;
    assert_eq!(reply.code, 250);
    assert_eq!(server.messages()[0].session, 1);

    // Plain codes fire every time; -twice fires twice.
    let mut c = ready(&server).await;
    assert_eq!(open_txn(&mut c, "rcpt550@y.test").await, 550);
    assert_eq!(c.cmd("RCPT TO:<rcpt550@y.test>").await.code, 550);
    assert_eq!(c.cmd("RCPT TO:<rcpt452-twice@y.test>").await.code, 452);
    assert_eq!(c.cmd("RCPT TO:<rcpt452-twice@y.test>").await.code, 452);
    assert_eq!(c.cmd("RCPT TO:<rcpt452-twice@y.test>").await.code, 250);
    assert_eq!(c.cmd("RCPT TO:<rcpt553@y.test>").await.code, 553);
}

#[tokio::test]
async fn stallrcpt_never_answers() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let mut c = ready(&server).await;
    // Pipelined: the MAIL reply must still arrive before the stall.
    c.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<stallrcpt@y.test>\r\nDATA\r\n")
        .await;
    assert_eq!(c.reply().await.code, 250);
    assert_eq!(c.reply_within(STALL).await, None);
    // The server keeps draining, and serves others meanwhile.
    c.send("NOOP\r\n").await;
    let mut other = ready(&server).await;
    assert_eq!(other.cmd("NOOP").await.code, 250);
    assert_eq!(c.reply_within(Duration::from_millis(50)).await, None);
    drop(c);
    for _ in 0..100 {
        if server.sessions()[0].closed_by == Closer::Client {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("stalled session did not notice the client leaving");
}

#[tokio::test]
async fn stalldata_and_stalldot_never_answer() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let mut c = ready(&server).await;
    assert_eq!(open_txn(&mut c, "stalldata@y.test").await, 250);
    c.send("DATA\r\n").await;
    assert_eq!(c.reply_within(STALL).await, None);

    let mut c = ready(&server).await;
    assert_eq!(open_txn(&mut c, "stalldot@y.test").await, 250);
    assert_eq!(c.cmd("DATA").await.code, 354);
    c.send("body\r\n.\r\n").await;
    assert_eq!(c.reply_within(STALL).await, None);
    assert_eq!(server.message_count(), 0);
}

#[tokio::test]
async fn disconnect_at_rcpt_sends_421_and_closes() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let mut c = ready(&server).await;
    assert_eq!(open_txn(&mut c, "b@y.test").await, 250);
    let reply = c.cmd("RCPT TO:<disconnect@y.test>").await;
    assert_eq!(reply.code, 421);
    assert!(reply.text().starts_with("4.4.2"));
    c.expect_closed().await;
    assert_eq!(server.sessions()[0].closed_by, Closer::Server);
}

#[tokio::test]
async fn close_at_rcpt_says_nothing() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let mut c = ready(&server).await;
    assert_eq!(c.cmd("MAIL FROM:<a@x.test>").await.code, 250);
    c.send("RCPT TO:<close@y.test>\r\n").await;
    c.expect_closed().await;
    assert_eq!(server.sessions()[0].closed_by, Closer::Server);
}

#[tokio::test]
async fn data_faults_reply_after_the_dot_first_one_wins() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let mut c = ready(&server).await;
    assert_eq!(open_txn(&mut c, "ok@y.test").await, 250);
    assert_eq!(c.cmd("RCPT TO:<data554@y.test>").await.code, 250);
    assert_eq!(c.cmd("RCPT TO:<data451@y.test>").await.code, 250);
    assert_eq!(c.cmd("DATA").await.code, 354);
    let reply = c.send_body("x\r\n").await;
    assert_eq!(reply.code, 554);
    assert!(reply.text().starts_with("5.6.0"));

    let reply = c
        .send_message("a@x.test", &["data451@y.test"], "x\r\n")
        .await;
    assert_eq!(reply.code, 451);
    assert!(reply.text().starts_with("4.3.0"));
    let reply = c
        .send_message("a@x.test", &["data451-once@y.test"], "x\r\n")
        .await;
    assert_eq!(reply.code, 451);
    let reply = c
        .send_message("a@x.test", &["data451-once@y.test"], "x\r\n")
        .await;
    assert_eq!(reply.code, 250);
    assert_eq!(server.message_count(), 1);
}

#[tokio::test]
async fn dropdata_closes_mid_body() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let mut c = ready(&server).await;
    assert_eq!(open_txn(&mut c, "dropdata@y.test").await, 250);
    assert_eq!(c.cmd("DATA").await.code, 354);
    c.send("first chunk\r\n").await;
    c.expect_closed().await;
    assert_eq!(server.message_count(), 0);
    assert_eq!(server.sessions()[0].closed_by, Closer::Server);
}

#[tokio::test]
async fn slow_rcpt_is_late_but_correct() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let mut c = ready(&server).await;
    assert_eq!(c.cmd("MAIL FROM:<a@x.test>").await.code, 250);
    let start = Instant::now();
    assert_eq!(c.cmd("RCPT TO:<slow150@y.test>").await.code, 250);
    assert!(start.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn phase_rules_fire_the_given_number_of_times() {
    let server = TestServer::start(ServerConfig {
        faults: vec![
            FaultRule::times(Phase::Mail, Fault::Reply(451, "4.3.2 busy".into()), 1),
            FaultRule::times(Phase::DataDot, Fault::DropMidData, 1),
            // A rule takes precedence over the address script.
            FaultRule::always(Phase::Rcpt, Fault::Delay(Duration::from_millis(1))),
        ],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut c = ready(&server).await;
    let busy = c.cmd("MAIL FROM:<a@x.test>").await;
    assert_eq!((busy.code, busy.text()), (451, "4.3.2 busy"));
    assert_eq!(open_txn(&mut c, "rcpt550@y.test").await, 250);
    assert_eq!(c.cmd("DATA").await.code, 354);
    c.send("partial").await;
    c.expect_closed().await;

    let mut c = ready(&server).await;
    assert_eq!(
        c.send_message("a@x.test", &["b@y.test"], "ok\r\n")
            .await
            .code,
        250
    );
}

#[tokio::test]
async fn banner_fault_disconnects() {
    let server = TestServer::start(ServerConfig {
        faults: vec![FaultRule::times(Phase::Banner, Fault::Disconnect421, 1)],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut c = connect(&server).await;
    assert_eq!(c.reply().await.code, 421);
    c.expect_closed().await;
    let mut c = connect(&server).await;
    assert_eq!(c.reply().await.code, 220);

    let rejecting = TestServer::start(ServerConfig {
        faults: vec![FaultRule::always(
            Phase::Banner,
            Fault::Reply(554, "5.3.2 no service".into()),
        )],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut c = connect(&rejecting).await;
    assert_eq!(c.reply().await.code, 554);
    assert_eq!(c.cmd("EHLO client.test").await.code, 503);
    assert_eq!(c.cmd("QUIT").await.code, 221);
}

#[tokio::test]
async fn probability_faults_hit_every_or_no_recipient() {
    let always = TestServer::start(ServerConfig {
        fault_probability: Some((1.0, Fault::Reply(452, "4.5.3 slow down".into()), 7)),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut c = ready(&always).await;
    assert_eq!(open_txn(&mut c, "a@y.test").await, 452);
    assert_eq!(c.cmd("RCPT TO:<b@y.test>").await.code, 452);

    let never = TestServer::start(ServerConfig {
        fault_probability: Some((0.0, Fault::Close, 7)),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut c = ready(&never).await;
    assert_eq!(open_txn(&mut c, "a@y.test").await, 250);
}

#[tokio::test]
async fn reply_delay_slows_every_reply() {
    let server = TestServer::start(ServerConfig {
        reply_delay: Some(Duration::from_millis(40)),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let start = Instant::now();
    let mut c = connect_greeted(&server).await;
    c.ehlo().await;
    assert_eq!(c.cmd("NOOP").await.code, 250);
    assert!(start.elapsed() >= Duration::from_millis(120));
}
