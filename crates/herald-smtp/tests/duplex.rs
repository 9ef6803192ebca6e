//! Protocol tests over an in-memory pipe: a scripted peer checks exactly
//! what the client writes and when, without sockets or timing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use herald_message::{EmailAddress, Envelope};
use herald_smtp::{
    ClientConfig, Connection, Ctx, ErrorKind, Phase, Scope, SendOptions, Timeouts, TlsMode,
    tls_config_from_pem,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};

fn config() -> Arc<ClientConfig> {
    // No TLS in these tests; any valid rustls config will do.
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let _ = tls_config_from_pem; // the PEM path is covered by the TLS tests
    let mut c = ClientConfig::new("mx.test", 25, TlsMode::None, Arc::new(tls));
    c.helo_name = "client.test".into();
    c.timeouts = Timeouts::uniform(Duration::from_secs(2));
    Arc::new(c)
}

fn envelope(rcpts: &[&str]) -> Envelope {
    Envelope::new(
        Some(EmailAddress::parse("from@example.com").unwrap()),
        rcpts.iter().map(|r| EmailAddress::parse(r).unwrap()),
    )
    .unwrap()
}

/// The server side of the pipe: reads what the client sends, a line or a
/// body at a time, and answers as scripted.
struct Peer {
    reader: BufReader<tokio::io::ReadHalf<DuplexStream>>,
    writer: tokio::io::WriteHalf<DuplexStream>,
}

impl Peer {
    async fn say(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).await.unwrap();
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).await.unwrap();
        assert!(line.ends_with("\r\n"), "{line:?}");
        line.trim_end().to_owned()
    }

    /// Whether more client bytes are already waiting (the client did not
    /// wait for our reply before sending them).
    async fn has_more_buffered(&mut self) -> bool {
        !self.reader.buffer().is_empty()
    }

    async fn body(&mut self) -> Vec<u8> {
        let mut data = Vec::new();
        loop {
            let mut line = Vec::new();
            self.reader.read_until(b'\n', &mut line).await.unwrap();
            if line == b".\r\n" {
                return data;
            }
            data.extend_from_slice(&line);
        }
    }

    async fn greet(&mut self, extensions: &[&str]) {
        self.say("220 mx.test ESMTP\r\n").await;
        assert_eq!(self.line().await, "EHLO client.test");
        let mut reply = String::from("250-mx.test\r\n");
        for (i, ext) in extensions.iter().enumerate() {
            let sep = if i + 1 == extensions.len() { ' ' } else { '-' };
            reply.push_str(&format!("250{sep}{ext}\r\n"));
        }
        if extensions.is_empty() {
            reply = "250 mx.test\r\n".into();
        }
        self.say(&reply).await;
    }
}

fn pipe() -> (Box<DuplexStream>, Peer) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let (r, w) = tokio::io::split(server);
    (
        Box::new(client),
        Peer {
            reader: BufReader::new(r),
            writer: w,
        },
    )
}

#[tokio::test]
async fn pipelining_sends_the_envelope_in_one_go_and_keeps_per_recipient_results() {
    let (io, mut peer) = pipe();
    let server = tokio::spawn(async move {
        peer.greet(&["PIPELINING", "SIZE 100000", "ENHANCEDSTATUSCODES"])
            .await;
        let mail = peer.line().await;
        assert_eq!(mail, "MAIL FROM:<from@example.com> SIZE=21");
        assert!(
            peer.has_more_buffered().await,
            "RCPT not pipelined after MAIL"
        );
        assert_eq!(peer.line().await, "RCPT TO:<a@example.com>");
        assert_eq!(peer.line().await, "RCPT TO:<bad@example.com>");
        assert_eq!(peer.line().await, "RCPT TO:<c@example.com>");
        assert_eq!(peer.line().await, "DATA");
        peer.say(
            "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n250 2.1.5 ok\r\n354 go\r\n",
        )
        .await;
        let body = peer.body().await;
        peer.say("250 2.0.0 queued as X1\r\n").await;
        body
    });
    let mut conn = Connection::open_on(io, config(), &Ctx::default())
        .await
        .unwrap();
    assert!(conn.capabilities().pipelining);
    assert_eq!(conn.capabilities().size, Some(100_000));
    let outcomes = conn
        .send(
            &envelope(&["a@example.com", "bad@example.com", "c@example.com"]),
            b"Subject: x\r\n\r\nhello\r\n",
            SendOptions::default(),
            &Ctx::default(),
        )
        .await
        .unwrap();
    let body = server.await.unwrap();
    assert_eq!(body, b"Subject: x\r\n\r\nhello\r\n");
    let summary: Vec<_> = outcomes
        .iter()
        .map(|o| {
            (
                o.address.as_str(),
                o.result
                    .as_ref()
                    .map(|r| r.code())
                    .map_err(|e| e.smtp_code()),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("a@example.com", Ok(250)),
            ("bad@example.com", Err(Some(550))),
            ("c@example.com", Ok(250)),
        ]
    );
    let rejected = outcomes[1].result.as_ref().unwrap_err();
    assert_eq!(rejected.scope(), Scope::Recipient);
    assert!(rejected.is_permanent());
    assert_eq!(rejected.enhanced_code().unwrap().to_string(), "5.1.1");
    assert_eq!(outcomes[0].result.as_ref().unwrap().text(), "queued as X1");
    assert!(conn.is_usable());
}

#[tokio::test]
async fn without_pipelining_each_command_waits_for_its_reply() {
    let (io, mut peer) = pipe();
    let server = tokio::spawn(async move {
        peer.greet(&["8BITMIME"]).await;
        assert_eq!(peer.line().await, "MAIL FROM:<from@example.com>");
        assert!(
            !peer.has_more_buffered().await,
            "client pipelined without PIPELINING"
        );
        peer.say("250 ok\r\n").await;
        assert_eq!(peer.line().await, "RCPT TO:<a@example.com>");
        assert!(!peer.has_more_buffered().await);
        peer.say("451 4.7.1 greylisted\r\n").await;
        assert_eq!(peer.line().await, "RCPT TO:<b@example.com>");
        peer.say("250 ok\r\n").await;
        assert_eq!(peer.line().await, "DATA");
        peer.say("354 go\r\n").await;
        let body = peer.body().await;
        peer.say("250 ok\r\n").await;
        // Second message on the same connection: RSET first.
        assert_eq!(peer.line().await, "RSET");
        peer.say("250 ok\r\n").await;
        assert_eq!(peer.line().await, "MAIL FROM:<from@example.com>");
        peer.say("250 ok\r\n").await;
        assert_eq!(peer.line().await, "RCPT TO:<x@example.com>");
        peer.say("550 nope\r\n").await;
        // Nobody accepted: no DATA. The next thing is QUIT.
        assert_eq!(peer.line().await, "QUIT");
        peer.say("221 bye\r\n").await;
        body
    });
    let mut conn = Connection::open_on(io, config(), &Ctx::default())
        .await
        .unwrap();
    let first = conn
        .send(
            &envelope(&["a@example.com", "b@example.com"]),
            b"x\r\n",
            SendOptions::default(),
            &Ctx::default(),
        )
        .await
        .unwrap();
    assert!(first[0].result.as_ref().unwrap_err().is_transient());
    assert!(first[1].is_delivered());
    let second = conn
        .send(
            &envelope(&["x@example.com"]),
            b"y\r\n",
            SendOptions::default(),
            &Ctx::default(),
        )
        .await
        .unwrap();
    assert!(second[0].result.as_ref().unwrap_err().is_permanent());
    conn.quit().await;
    assert_eq!(server.await.unwrap(), b"x\r\n");
}

#[tokio::test]
async fn smuggling_vectors_are_stuffed_and_cannot_end_data_early() {
    let (io, mut peer) = pipe();
    let server = tokio::spawn(async move {
        peer.greet(&["PIPELINING"]).await;
        for _ in 0..3 {
            peer.line().await;
        }
        peer.say("250 ok\r\n250 ok\r\n354 go\r\n").await;
        // Read raw until the real terminator; nothing else may look like it.
        let mut raw = Vec::new();
        while !raw.ends_with(b"\r\n.\r\n") {
            let mut byte = [0u8; 1];
            peer.reader.read_exact(&mut byte).await.unwrap();
            raw.push(byte[0]);
        }
        peer.say("250 ok\r\n").await;
        raw
    });
    let body = b"Subject: s\r\n\r\na\n.\nMAIL FROM:<evil@x>\r\n.\r\nb\r.\rc\r\n..d\r\n.";
    let mut conn = Connection::open_on(io, config(), &Ctx::default())
        .await
        .unwrap();
    let out = conn
        .send(
            &envelope(&["a@example.com"]),
            body,
            SendOptions::default(),
            &Ctx::default(),
        )
        .await
        .unwrap();
    assert!(out[0].is_delivered());
    let raw = server.await.unwrap();
    assert_eq!(
        raw,
        b"Subject: s\r\n\r\na\r\n..\r\nMAIL FROM:<evil@x>\r\n..\r\nb\r\n..\r\nc\r\n...d\r\n..\r\n.\r\n"
    );
}

#[tokio::test]
async fn helo_fallback_when_ehlo_is_unknown() {
    let (io, mut peer) = pipe();
    let server = tokio::spawn(async move {
        peer.say("220 old.test\r\n").await;
        assert_eq!(peer.line().await, "EHLO client.test");
        peer.say("502 5.5.1 command not implemented\r\n").await;
        assert_eq!(peer.line().await, "HELO client.test");
        peer.say("250 old.test\r\n").await;
    });
    let conn = Connection::open_on(io, config(), &Ctx::default())
        .await
        .unwrap();
    server.await.unwrap();
    assert!(conn.capabilities().helo_only);
    assert!(!conn.capabilities().pipelining);
}

#[tokio::test]
async fn size_and_smtputf8_are_checked_before_sending() {
    let (io, mut peer) = pipe();
    let server = tokio::spawn(async move {
        peer.greet(&["SIZE 10", "PIPELINING"]).await;
        // Neither message may reach the wire.
        let mut rest = Vec::new();
        peer.reader.read_to_end(&mut rest).await.unwrap();
        rest
    });
    let mut conn = Connection::open_on(io, config(), &Ctx::default())
        .await
        .unwrap();
    let big = conn
        .send(
            &envelope(&["a@example.com"]),
            &[b'x'; 11],
            SendOptions::default(),
            &Ctx::default(),
        )
        .await
        .unwrap();
    let e = big[0].result.as_ref().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge);
    assert!(e.is_permanent() && e.scope() == Scope::Message);
    let utf8 = conn
        .send(
            &envelope(&["用户@例子.中国"]),
            b"x",
            SendOptions::default(),
            &Ctx::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        utf8[0].result.as_ref().unwrap_err().kind(),
        ErrorKind::Smtputf8Unavailable
    );
    drop(conn);
    assert_eq!(server.await.unwrap(), b"");
}

#[tokio::test]
async fn a_421_reply_closes_the_connection_and_is_transient() {
    let (io, mut peer) = pipe();
    tokio::spawn(async move {
        peer.greet(&["PIPELINING"]).await;
        peer.line().await;
        peer.say("421 4.7.0 too many connections, closing\r\n")
            .await;
    });
    let mut conn = Connection::open_on(io, config(), &Ctx::default())
        .await
        .unwrap();
    let err = conn
        .send(
            &envelope(&["a@example.com"]),
            b"x",
            SendOptions::default(),
            &Ctx::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.smtp_code(), Some(421));
    assert!(err.is_transient() && err.scope() == Scope::Connection);
    assert!(!conn.is_usable());
}

#[tokio::test]
async fn cancellation_stops_a_waiting_phase() {
    let (io, mut peer) = pipe();
    let _server = tokio::spawn(async move {
        peer.greet(&["PIPELINING"]).await;
        // Read the envelope and never answer.
        let mut sink = vec![0u8; 1024];
        let _ = peer.reader.read(&mut sink).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let mut conn = Connection::open_on(io, config(), &Ctx::default())
        .await
        .unwrap();
    let ctx = Ctx::default();
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    });
    let err = conn
        .send(
            &envelope(&["a@example.com"]),
            b"x",
            SendOptions::default(),
            &ctx,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert_eq!(err.phase(), Phase::Mail);
    assert!(!conn.is_usable());
    // Once cancelled, nothing further starts.
    let again = conn
        .send(
            &envelope(&["a@example.com"]),
            b"x",
            SendOptions::default(),
            &ctx,
        )
        .await
        .unwrap_err();
    assert!(matches!(
        again.kind(),
        ErrorKind::Cancelled | ErrorKind::Network
    ));
}
