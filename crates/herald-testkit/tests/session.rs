//! Plain-text protocol behaviour: transactions, PIPELINING, dot-unstuffing,
//! HELO fallback, size limits and sequencing errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{WAIT, connect_greeted};
use herald_testkit::{Closer, ServerConfig, TestServer};

#[tokio::test]
async fn plain_session_with_two_messages_and_rset() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let mut c = connect_greeted(&server).await;
    let ehlo = c.ehlo().await;
    assert_eq!(ehlo.lines[0], "localhost");
    for cap in ["PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"] {
        assert!(ehlo.lines.iter().any(|l| l == cap), "{cap} in {ehlo:?}");
    }
    assert!(
        !ehlo
            .lines
            .iter()
            .any(|l| l.starts_with("AUTH") || l == "STARTTLS")
    );

    let first = c
        .send_message(
            "a@x.test",
            &["b@y.test", "c@y.test"],
            "Subject: 1\r\n\r\none\r\n",
        )
        .await;
    assert_eq!(first.code, 250);
    assert!(first.text().starts_with("2.0.0"), "{first:?}");

    // An abandoned transaction leaves no trace.
    assert_eq!(c.cmd("MAIL FROM:<dropped@x.test>").await.code, 250);
    assert_eq!(c.cmd("RCPT TO:<nobody@y.test>").await.code, 250);
    assert_eq!(c.cmd("RSET").await.code, 250);
    assert_eq!(c.cmd("RCPT TO:<nobody@y.test>").await.code, 503);

    let second = c.send_message("", &["d@y.test"], "two\r\n").await;
    assert_eq!(second.code, 250);
    assert_eq!(c.cmd("NOOP").await.code, 250);
    assert_eq!(c.cmd("QUIT").await.code, 221);
    c.expect_closed().await;

    let messages = server.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].mail_from, "a@x.test");
    assert_eq!(messages[0].rcpt_to, ["b@y.test", "c@y.test"]);
    assert_eq!(messages[0].data, b"Subject: 1\r\n\r\none\r\n");
    assert_eq!(messages[1].mail_from, "");
    assert_eq!(messages[1].data, b"two\r\n");
    assert_eq!(messages[1].session, 0);
    assert_eq!(server.message_count(), 2);
    assert_eq!(server.connections(), 1);

    assert!(server.wait_for_messages(2, WAIT).await);
    let sessions = server.sessions();
    assert_eq!(sessions.len(), 1);
    let log = &sessions[0];
    assert_eq!(
        log.verbs(),
        [
            "EHLO", "MAIL", "RCPT", "RCPT", "DATA", "MAIL", "RCPT", "RSET", "RCPT", "MAIL", "RCPT",
            "DATA", "NOOP", "QUIT"
        ]
    );
    assert_eq!(log.commands[1].line, "MAIL FROM:<a@x.test>");
    assert!(log.commands.iter().all(|c| !c.pipelined));
    assert_eq!(log.closed_by, Closer::Client);
    assert!(!log.tls);
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order_and_recorded() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let mut c = connect_greeted(&server).await;
    c.ehlo().await;
    c.send(concat!(
        "MAIL FROM:<a@x.test> SIZE=9 BODY=8BITMIME SMTPUTF8\r\n",
        "RCPT TO:<b@y.test>\r\n",
        "RCPT TO:<rcpt550@y.test>\r\n",
        "RCPT TO:<c@y.test>\r\n",
        "DATA\r\n",
    ))
    .await;
    let codes = [250, 250, 550, 250, 354];
    for code in codes {
        assert_eq!(c.reply().await.code, code);
    }
    // Body and the next transaction in one write, as a pipelining client may.
    c.send(concat!(
        "h\u{e9}llo\r\n.\r\n",
        "MAIL FROM:<a@x.test>\r\nRCPT TO:<d@y.test>\r\nDATA\r\n"
    ))
    .await;
    for code in [250, 250, 250, 354] {
        assert_eq!(c.reply().await.code, code);
    }
    assert_eq!(c.send_body("x\r\n").await.code, 250);

    let messages = server.messages();
    assert_eq!(messages[0].rcpt_to, ["b@y.test", "c@y.test"]);
    assert_eq!(messages[0].data, "h\u{e9}llo\r\n".as_bytes());
    assert!(messages[0].smtputf8 && messages[0].body_8bit);
    assert_eq!(messages[0].size_param, Some(9));
    assert!(!messages[1].smtputf8 && !messages[1].body_8bit);
    assert_eq!(messages[1].size_param, None);

    let log = &server.sessions()[0];
    let flags: Vec<(&str, bool)> = log
        .commands
        .iter()
        .map(|c| (c.verb.as_str(), c.pipelined))
        .collect();
    assert_eq!(
        flags,
        [
            ("EHLO", false),
            ("MAIL", true),
            ("RCPT", true),
            ("RCPT", true),
            ("RCPT", true),
            ("DATA", false),
            ("MAIL", true),
            ("RCPT", true),
            ("DATA", false),
        ]
    );
}

#[tokio::test]
async fn dot_stuffed_body_is_unstuffed() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let mut c = connect_greeted(&server).await;
    c.ehlo().await;
    // Leading stuffed dot on the first line, a stuffed lone dot, a stuffed
    // dot-dot line, and a bare-LF-dot that must not end the message.
    let wire = "..first\r\nline\r\n..\r\n...\r\nbare\n.\nstill\r\n";
    let reply = c.send_message("a@x.test", &["b@y.test"], wire).await;
    assert_eq!(reply.code, 250);
    // The body split across writes at every awkward point still works.
    assert_eq!(c.cmd("MAIL FROM:<a@x.test>").await.code, 250);
    assert_eq!(c.cmd("RCPT TO:<b@y.test>").await.code, 250);
    assert_eq!(c.cmd("DATA").await.code, 354);
    for part in ["ab\r", "\n.", ".c\r\n\r", "\n", ".", "\r", "\n"] {
        c.send(part).await;
        tokio::task::yield_now().await;
    }
    assert_eq!(c.reply().await.code, 250);
    // An empty message.
    assert_eq!(c.cmd("MAIL FROM:<a@x.test>").await.code, 250);
    assert_eq!(c.cmd("RCPT TO:<b@y.test>").await.code, 250);
    assert_eq!(c.cmd("DATA").await.code, 354);
    assert_eq!(c.cmd(".").await.code, 250);

    let messages = server.messages();
    assert_eq!(
        messages[0].data,
        b".first\r\nline\r\n.\r\n..\r\nbare\n.\nstill\r\n"
    );
    assert_eq!(messages[1].data, b"ab\r\n.c\r\n\r\n");
    assert_eq!(messages[2].data, b"");
}

#[tokio::test]
async fn record_data_off_still_counts_messages() {
    let server = TestServer::start(ServerConfig {
        record_data: false,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut c = connect_greeted(&server).await;
    c.ehlo().await;
    let body = "x".repeat(70_000) + "\r\n";
    assert_eq!(
        c.send_message("a@x.test", &["b@y.test"], &body).await.code,
        250
    );
    assert_eq!(server.message_count(), 1);
    let messages = server.messages();
    assert!(messages[0].data.is_empty());
    assert_eq!(messages[0].rcpt_to, ["b@y.test"]);
}

#[tokio::test]
async fn ehlo_unsupported_falls_back_to_helo() {
    let server = TestServer::start(ServerConfig {
        ehlo_supported: false,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut c = connect_greeted(&server).await;
    let ehlo = c.cmd("EHLO client.test").await;
    assert_eq!(ehlo.code, 502);
    assert!(ehlo.text().starts_with("5.5.1"));
    assert_eq!(c.cmd("MAIL FROM:<a@x.test>").await.code, 503);
    assert_eq!(c.cmd("HELO client.test").await.code, 250);
    // Extensions were never advertised, so their parameters are refused.
    assert_eq!(c.cmd("MAIL FROM:<a@x.test> BODY=8BITMIME").await.code, 555);
    assert_eq!(
        c.send_message("a@x.test", &["b@y.test"], "hi\r\n")
            .await
            .code,
        250
    );
    assert_eq!(server.message_count(), 1);
}

#[tokio::test]
async fn size_limit_is_advertised_and_enforced() {
    let server = TestServer::start(ServerConfig {
        size_limit: Some(100),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut c = connect_greeted(&server).await;
    let ehlo = c.ehlo().await;
    assert!(ehlo.lines.iter().any(|l| l == "SIZE 100"), "{ehlo:?}");

    let declared = c.cmd("MAIL FROM:<a@x.test> SIZE=101").await;
    assert_eq!(declared.code, 552);
    assert!(declared.text().starts_with("5.3.4"));

    // Undeclared but too big: read to the dot, then refused.
    assert_eq!(c.cmd("MAIL FROM:<a@x.test> SIZE=50").await.code, 250);
    assert_eq!(c.cmd("RCPT TO:<b@y.test>").await.code, 250);
    assert_eq!(c.cmd("DATA").await.code, 354);
    c.send(&("y".repeat(200) + "\r\n.\r\n")).await;
    let big = c.reply().await;
    assert_eq!(big.code, 552);
    assert!(big.text().starts_with("5.3.4"));

    // The session goes on; a small message fits.
    assert_eq!(
        c.send_message("a@x.test", &["b@y.test"], "small\r\n")
            .await
            .code,
        250
    );
    assert_eq!(server.message_count(), 1);
}

#[tokio::test]
async fn max_messages_per_connection_closes_with_421() {
    let server = TestServer::start(ServerConfig {
        max_messages_per_connection: Some(1),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut c = connect_greeted(&server).await;
    c.ehlo().await;
    assert_eq!(
        c.send_message("a@x.test", &["b@y.test"], "1\r\n")
            .await
            .code,
        250
    );
    let refused = c.cmd("MAIL FROM:<a@x.test>").await;
    assert_eq!(refused.code, 421);
    assert!(refused.text().starts_with("4.7.0"));
    c.expect_closed().await;
    assert_eq!(server.sessions()[0].closed_by, Closer::Server);
}

#[tokio::test]
async fn sequencing_and_syntax_errors() {
    let server = TestServer::start(ServerConfig {
        smtputf8: false,
        enhanced_status_codes: false,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut c = connect_greeted(&server).await;
    assert_eq!(c.cmd("MAIL FROM:<a@x.test>").await.code, 503);
    let ehlo = c.ehlo().await;
    assert!(
        !ehlo
            .lines
            .iter()
            .any(|l| l == "SMTPUTF8" || l == "ENHANCEDSTATUSCODES")
    );
    assert_eq!(c.cmd("FROB").await.code, 500);
    assert_eq!(c.cmd("DATA").await.code, 503);
    assert_eq!(c.cmd("MAIL FROM:<a@x.test> SMTPUTF8").await.code, 555);
    assert_eq!(c.cmd("MAIL FROM:<\u{e9}@x.test>").await.code, 553);
    let ok = c.cmd("MAIL FROM:<a@x.test>").await;
    // No enhanced codes when the extension is off.
    assert_eq!(ok.code, 250);
    assert!(ok.text().starts_with("sender"), "{ok:?}");
    assert_eq!(c.cmd("MAIL FROM:<a@x.test>").await.code, 503);
    assert_eq!(c.cmd("RCPT TO:<rcpt550@y.test>").await.code, 550);
    assert_eq!(c.cmd("DATA").await.code, 554);
    assert_eq!(c.cmd("RCPT TO:bad").await.code, 501);
    assert_eq!(c.cmd("STARTTLS").await.code, 502);
    assert_eq!(c.cmd("AUTH PLAIN AGFAYg==").await.code, 502);
}
