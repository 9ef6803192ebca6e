//! A deliberately dumb raw SMTP client for driving the test server: it
//! writes exactly the bytes a test asks for and parses replies, so the
//! server is tested independently of herald's real client.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use herald_testkit::TestServer;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Generous bound for replies that must come; tests never wait this long.
pub const WAIT: Duration = Duration::from_secs(5);

/// One (possibly multi-line) SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// The text of the last line (after the code and separator).
    pub fn text(&self) -> &str {
        self.lines.last().map(String::as_str).unwrap_or("")
    }
}

pub struct Client<S> {
    pub stream: S,
    buf: Vec<u8>,
}

pub async fn connect(server: &TestServer) -> Client<TcpStream> {
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    Client::new(tcp)
}

/// Connects and reads the banner.
pub async fn connect_greeted(server: &TestServer) -> Client<TcpStream> {
    let mut client = connect(server).await;
    assert_eq!(client.reply().await.code, 220);
    client
}

pub fn tls_connector(server: &TestServer) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(server.ca_der())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

pub async fn tls_handshake(
    server: &TestServer,
    tcp: TcpStream,
    name: &str,
) -> TlsStream<TcpStream> {
    let name = ServerName::try_from(name.to_owned()).unwrap();
    tls_connector(server).connect(name, tcp).await.unwrap()
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Hands the stream over (for a TLS upgrade); nothing may be buffered.
    pub fn into_inner(self) -> S {
        assert!(self.buf.is_empty(), "unread bytes: {:?}", self.buf);
        self.stream
    }

    pub async fn send(&mut self, bytes: &str) {
        self.send_bytes(bytes.as_bytes()).await;
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    async fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = String::from_utf8(line).unwrap();
                return Some(line.trim_end_matches(['\r', '\n']).to_owned());
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads one reply; `None` if the connection closed first.
    pub async fn try_reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line().await?;
            assert!(line.len() >= 3, "short reply line {line:?}");
            let code: u16 = line[..3].parse().unwrap();
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_owned());
            if !more {
                return Some(Reply { code, lines });
            }
        }
    }

    /// Reads one reply, failing the test if none comes within [`WAIT`].
    pub async fn reply(&mut self) -> Reply {
        tokio::time::timeout(WAIT, self.try_reply())
            .await
            .expect("reply timed out")
            .expect("connection closed instead of replying")
    }

    /// A reply within `limit`, or `None` on timeout (a stalled server).
    pub async fn reply_within(&mut self, limit: Duration) -> Option<Reply> {
        tokio::time::timeout(limit, self.try_reply())
            .await
            .ok()
            .flatten()
    }

    pub async fn cmd(&mut self, line: &str) -> Reply {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await
    }

    /// Asserts the server closes the connection (EOF or reset) soon, with
    /// no further reply.
    pub async fn expect_closed(&mut self) {
        let next = tokio::time::timeout(WAIT, self.try_reply())
            .await
            .expect("connection still open");
        assert_eq!(next, None, "expected close, got a reply");
    }

    pub async fn ehlo(&mut self) -> Reply {
        let reply = self.cmd("EHLO client.test").await;
        assert_eq!(reply.code, 250, "{reply:?}");
        reply
    }

    /// MAIL, RCPT (each), DATA, body, dot; returns the final reply.
    pub async fn send_message(&mut self, from: &str, to: &[&str], body: &str) -> Reply {
        assert_eq!(self.cmd(&format!("MAIL FROM:<{from}>")).await.code, 250);
        for rcpt in to {
            assert_eq!(self.cmd(&format!("RCPT TO:<{rcpt}>")).await.code, 250);
        }
        assert_eq!(self.cmd("DATA").await.code, 354);
        self.send(body).await;
        self.send(".\r\n").await;
        self.reply().await
    }

    /// Body and final dot after a 354 the test already read.
    pub async fn send_body(&mut self, body: &str) -> Reply {
        self.send(&format!("{body}.\r\n")).await;
        self.reply().await
    }
}
