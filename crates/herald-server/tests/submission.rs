//! The SMTP submission listener over real sockets, driven by Python's
//! `smtplib` (a client herald did not write): STARTTLS and implicit TLS,
//! AUTH PLAIN and LOGIN with an API key, the refusals, size limits,
//! pipelining and the smuggling vectors; accepted mail delivered to the
//! testkit relay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Herald, KEY, temp_dir};
use herald_api::MessageStatus;
use herald_testkit::{ServerConfig, TestServer};
use serde_json::{Value, json};

/// The client side: one function per scenario, arguments and results as
/// JSON. Every reply the server gives is printed, so the Rust side checks
/// codes and texts.
const CLIENT: &str = include_str!("submission/client.py");

struct Setup {
    herald: Herald,
    /// The PostgreSQL database, dropped after the herald that uses it.
    _pg: Option<common::pg::PgDatabase>,
    relay: TestServer,
    dir: PathBuf,
    port: u16,
    tls_port: u16,
    ca: PathBuf,
    max: usize,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A self-signed certificate for `localhost` in `dir`: (cert, key).
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (cert_file, key_file)
}

async fn setup(max: usize) -> Setup {
    setup_with(max, true, false, "10s").await
}

/// With `relay` false, mail goes to the outbox: the bytes herald stored,
/// as they are.
/// A key that may read but not send.
const READER: &str = "reader-key-0123456789abcdef";

async fn setup_with(max: usize, relay_on: bool, postgres: bool, timeout: &str) -> Setup {
    let relay = TestServer::start(ServerConfig::default()).await.unwrap();
    let dir = temp_dir();
    let (cert, key) = certificate(&dir);
    let (port, tls_port) = (free_port(), free_port());
    let extra = format!(
        "[submission]\nlisten = \"127.0.0.1:{port}\"\nimplicit_tls_listen = \"127.0.0.1:{tls_port}\"\n\
         cert_file = \"{}\"\nkey_file = \"{}\"\nmax_message_bytes = {max}\nmax_recipients = 5\n\
         command_timeout = \"{timeout}\"\ndata_timeout = \"{timeout}\"\n\
         [[auth.keys]]\nname = \"reader\"\nkey = \"{READER}\"\nscopes = [\"read\"]\n",
        cert.display(),
        key.display()
    );
    let mut text = common::config_text(&dir, relay_on.then_some(&relay), &extra);
    let pg = postgres.then(|| common::pg::PgDatabase::create("submission"));
    if let Some(db) = &pg {
        let sqlite = format!("url = \"sqlite://{}/herald.db\"", dir.display());
        assert!(text.contains(&sqlite));
        text = text.replace(&sqlite, &format!("url = \"{}\"", db.url));
    }
    let herald = Herald::start_in(dir.clone(), &text).await;
    // serve() binds the SMTP listeners before it serves HTTP: once
    // /healthz answers, they accept connections.
    let (status, _) = herald.get("/healthz").await;
    assert_eq!(status, 200);
    Setup {
        herald,
        _pg: pg,
        relay,
        dir,
        port,
        tls_port,
        ca: cert,
        max,
    }
}

impl Setup {
    async fn client(&self, mode: &str, mut args: Value) -> Value {
        args["mode"] = json!(mode);
        args["port"] = json!(self.port);
        args["tls_port"] = json!(self.tls_port);
        args["ca"] = json!(self.ca.display().to_string());
        args["key"] = json!(KEY);
        args["max"] = json!(self.max);
        args["reader"] = json!(READER);
        let args = args.to_string();
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new("python3")
                .arg("-c")
                .arg(CLIENT)
                .arg(args)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "python failed: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(&stdout).unwrap()
    }
}

fn code(reply: &Value) -> u64 {
    reply[0].as_u64().unwrap()
}

fn queued_id(reply: &Value) -> String {
    assert_eq!(code(reply), 250, "{reply}");
    let text = reply[1].as_str().unwrap();
    text.strip_prefix("2.0.0 queued as ")
        .unwrap_or_else(|| panic!("{text}"))
        .to_owned()
}

/// Delivers one message with a UTF-8 subject and an attachment; it must
/// reach the relay as sent, apart from the headers herald adds.
async fn delivers_byte_for_byte(via: &str, mech: &str, postgres: bool) {
    let setup = setup_with(1_000_000, true, postgres, "10s").await;
    let out = setup
        .client("deliver", json!({"via": via, "mech": mech}))
        .await;
    assert_eq!(code(&out["auth"]), 235, "{out}");
    let id = queued_id(&out["data"]);
    let done = setup
        .herald
        .wait_status(&id, MessageStatus::Delivered)
        .await;
    assert_eq!(done.tags, ["invoice", "smtp"]);
    assert!(
        setup
            .relay
            .wait_for_messages(1, Duration::from_secs(10))
            .await
    );
    let received = setup.relay.messages().remove(0);
    assert_eq!(received.mail_from, "app@example.com");
    assert_eq!(received.rcpt_to, ["bob@example.org"]);
    use base64::Engine as _;
    let sent = base64::engine::general_purpose::STANDARD
        .decode(out["sent"].as_str().unwrap())
        .unwrap();
    assert_eq!(done.submitted_by.as_deref(), Some("auth.api_keys[0]"));
    // What herald delivers: its Message-ID and Date, then what was sent
    // without the X-Herald-Tags header.
    let sent = String::from_utf8(sent).unwrap();
    let tags_line = "X-Herald-Tags: invoice, smtp\r\n";
    assert!(sent.contains(tags_line));
    let expected_tail = sent.replace(tags_line, "");
    let got = String::from_utf8(received.data.clone()).unwrap();
    let (added, rest) = got.split_at(got.len() - expected_tail.len());
    assert_eq!(rest, expected_tail, "the message changed in transit");
    let added: Vec<&str> = added.split_terminator("\r\n").collect();
    assert_eq!(added.len(), 2, "{added:?}");
    assert_eq!(added[0], format!("Message-ID: {}", done.message_id));
    assert!(added[1].starts_with("Date: "), "{added:?}");
    assert!(got.contains("Subject: =?utf-8?"), "{got}");
    let (_, metrics, _) = setup.herald.request("GET", "/metrics", None, &[]).await;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("herald_messages_accepted_total{source=\"smtp\"} 1"),
        "{metrics}"
    );
    setup.herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_over_starttls_with_auth_plain_delivers_byte_for_byte() {
    delivers_byte_for_byte("starttls", "PLAIN", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_delivers_on_postgres_too() {
    delivers_byte_for_byte("starttls", "PLAIN", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_over_implicit_tls_with_auth_login_delivers_byte_for_byte() {
    delivers_byte_for_byte("implicit", "LOGIN", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_needs_tls_and_mail_needs_auth() {
    let setup = setup(1_000_000).await;
    let out = setup.client("refusals", json!({})).await;
    let ehlo_plain = out["ehlo_plain"][1].as_str().unwrap();
    assert!(ehlo_plain.contains("STARTTLS"), "{ehlo_plain}");
    assert!(!ehlo_plain.contains("AUTH"), "{ehlo_plain}");
    for ext in [
        "PIPELINING",
        "SIZE 1000000",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(ehlo_plain.contains(ext), "{ext}: {ehlo_plain}");
    }
    assert_eq!(code(&out["auth_plain"]), 530, "{out}");
    assert_eq!(code(&out["mail_plain"]), 530, "{out}");
    let ehlo_tls = out["ehlo_tls"][1].as_str().unwrap();
    assert!(ehlo_tls.contains("AUTH PLAIN LOGIN"), "{ehlo_tls}");
    assert!(!ehlo_tls.contains("STARTTLS"), "{ehlo_tls}");
    assert_eq!(code(&out["mail_tls"]), 530, "{out}");
    assert_eq!(code(&out["rcpt_tls"]), 503, "{out}");
    let (_, list) = setup.herald.get("/v1/messages").await;
    assert_eq!(list["messages"], json!([]));
    setup.herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_get_535_then_the_address_is_locked_out() {
    let setup = setup(1_000_000).await;
    let out = setup.client("lockout", json!({})).await;
    let tries = out["tries"].as_array().unwrap();
    for t in &tries[..4] {
        assert_eq!(code(t), 535, "{out}");
    }
    assert_eq!(code(&tries[4]), 421, "{out}");
    assert_eq!(out["after"], "disconnected", "{out}");
    assert_eq!(code(&out["again"]), 421, "{out}");
    setup.herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_sent_in_the_clear_after_starttls_are_discarded() {
    let setup = setup(1_000_000).await;
    let out = setup.client("injection", json!({})).await;
    assert_eq!(
        out["starttls"],
        json!(["220 2.0.0 Ready to start TLS"]),
        "{out}"
    );
    // The first answer inside TLS is EHLO's, not the injected NOOP's.
    let first = out["first_after_tls"].as_array().unwrap();
    assert!(first[0].as_str().unwrap().starts_with("250-"), "{out}");
    assert!(first.iter().any(|l| l == "250 AUTH PLAIN LOGIN"), "{out}");
    setup.herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_past_the_limit_get_452_and_the_rest_are_sent() {
    let setup = setup(1_000_000).await;
    let out = setup.client("recipients", json!({})).await;
    let codes: Vec<u64> = out["rcpts"].as_array().unwrap().iter().map(code).collect();
    // max_recipients = 5 in this configuration.
    assert_eq!(codes, [250, 250, 250, 250, 250, 452], "{out}");
    let id = queued_id(&out["queued"]);
    let done = setup
        .herald
        .wait_status(&id, MessageStatus::Delivered)
        .await;
    assert_eq!(done.recipients.len(), 5, "{done:#?}");
    setup.herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_gets_421_after_the_timeouts_and_nothing_is_queued() {
    let setup = setup_with(1_000_000, true, false, "1s").await;
    let out = setup.client("idle", json!({})).await;
    assert_eq!(code(&out["idle"]), 421, "{out}");
    assert!(
        out["idle"][1].as_str().unwrap().starts_with("4.4.2"),
        "{out}"
    );
    assert_eq!(code(&out["data_idle"]), 421, "{out}");
    let (_, list) = setup.herald.get("/v1/messages").await;
    assert_eq!(list["messages"], json!([]), "{list}");
    setup.herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunking_with_bdat_queues_the_chunks_as_one_message() {
    let setup = setup_with(4096, false, false, "10s").await;
    let out = setup.client("bdat", json!({})).await;
    assert!(
        out["ehlo"][1].as_str().unwrap().contains("CHUNKING"),
        "{out}"
    );
    // BDAT without MAIL is refused, and its chunk ("QUIT\r\n") is not a
    // command: the NOOP after it is answered.
    let refused: Vec<u64> = out["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(code)
        .collect();
    assert_eq!(refused, [503, 250], "{out}");
    let sent: Vec<u64> = out["sent"].as_array().unwrap().iter().map(code).collect();
    assert_eq!(sent, [250, 250, 250, 250], "{out}");
    let id = queued_id(&out["sent"][3]);
    let codes: Vec<u64> = out["data_after_bdat"]
        .as_array()
        .unwrap()
        .iter()
        .map(code)
        .collect();
    assert_eq!(codes, [250, 250, 250, 503], "{out}");
    let codes: Vec<u64> = out["reset"].as_array().unwrap().iter().map(code).collect();
    assert_eq!(codes, [250, 250, 250], "{out}");
    assert_eq!(code(&out["big"]), 552, "{out}");
    assert_eq!(code(&out["after"]), 250, "{out}");
    setup
        .herald
        .wait_status(&id, MessageStatus::Delivered)
        .await;
    let stored = std::fs::read(setup.dir.join("outbox").join(format!("{id}.eml"))).unwrap();
    let text = String::from_utf8(stored).unwrap();
    assert!(
        text.ends_with("Subject: chunked\r\n\r\nline one\r\n.\r\nMAIL FROM:<x@example.com>\r\n"),
        "{text:?}"
    );
    let (_, list) = setup.herald.get("/v1/messages").await;
    assert_eq!(list["messages"].as_array().unwrap().len(), 1, "{list}");
    setup.herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_without_the_send_scope_cannot_submit() {
    let setup = setup(1_000_000).await;
    let out = setup.client("scope", json!({})).await;
    assert_eq!(code(&out["auth"]), 535, "{out}");
    assert!(
        out["auth"][1].as_str().unwrap().contains("send scope"),
        "{out}"
    );
    assert_eq!(code(&out["mail"]), 530, "{out}");
    setup.herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_mail_is_refused_at_mail_and_at_the_end_of_data() {
    let setup = setup(4096).await;
    let out = setup.client("size", json!({})).await;
    assert_eq!(code(&out["auth"]), 235, "{out}");
    assert_eq!(code(&out["mail_size"]), 552, "{out}");
    let big = out["big"].as_array().unwrap();
    assert_eq!(code(&big[2]), 354, "{out}");
    assert_eq!(code(&big[3]), 552, "{out}");
    // The session goes on: the next message fits and is queued.
    let small = out["small"].as_array().unwrap();
    let id = queued_id(&small[3]);
    setup
        .herald
        .wait_status(&id, MessageStatus::Delivered)
        .await;
    let (_, list) = setup.herald.get("/v1/messages").await;
    assert_eq!(list["messages"].as_array().unwrap().len(), 1);
    setup.herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commands_are_answered_in_order() {
    let setup = setup(1_000_000).await;
    let out = setup.client("pipeline", json!({})).await;
    let codes: Vec<u64> = out["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(code)
        .collect();
    assert_eq!(
        codes,
        [250, 250, 553, 250, 250, 354, 250, 250, 221],
        "{out}"
    );
    let id = queued_id(&out["replies"][6]);
    let done = setup
        .herald
        .wait_status(&id, MessageStatus::Delivered)
        .await;
    let rcpts: Vec<&str> = done.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(rcpts, ["bob@example.org", "carol@example.org"], "{done:#?}");
    setup.herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_vectors_do_not_split_a_message() {
    // The outbox shows the bytes herald stored, with no SMTP client of
    // herald's own in between to tidy them.
    let setup = setup_with(1_000_000, false, false, "10s").await;
    let out = setup.client("smuggle", json!({})).await;
    let sends = out["sends"].as_array().unwrap();
    assert_eq!(sends.len(), 3);
    let mut ids = Vec::new();
    for send in sends {
        let replies = send.as_array().unwrap();
        assert_eq!(code(&replies[2]), 354, "{out}");
        ids.push(queued_id(&replies[3]));
    }
    assert_eq!(code(&out["after"]), 250, "{out}");
    let (_, list) = setup.herald.get("/v1/messages").await;
    assert_eq!(list["messages"].as_array().unwrap().len(), 3, "{list}");
    for id in ids {
        let done = setup
            .herald
            .wait_status(&id, MessageStatus::Delivered)
            .await;
        assert_eq!(done.recipients[0].address, "bob@example.org");
        let stored = std::fs::read(setup.dir.join("outbox").join(format!("{id}.eml"))).unwrap();
        let text = String::from_utf8(stored).unwrap();
        assert!(text.contains("Subject: smuggled"), "{text}");
        // The would-be commands are body text, with CRLF line endings.
        assert!(
            text.contains("before\r\n.\r\nMAIL FROM:<evil@example.com>\r\n"),
            "{text:?}"
        );
        assert!(text.ends_with("evil body\r\n"), "{text:?}");
        assert!(
            !text.replace("\r\n", "").contains(['\r', '\n']),
            "a bare line ending was stored: {text:?}"
        );
    }
    setup.herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_sessions_with_421_and_stops_listening() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let setup = setup(1_000_000).await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", setup.port))
        .await
        .unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let banner = lines.next_line().await.unwrap().unwrap();
    assert!(banner.starts_with("220 "), "{banner}");
    write.write_all(b"NOOP\r\n").await.unwrap();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "250 2.0.0 OK");
    // The session is idle, waiting for a command, when the service stops.
    // Well inside the session's 10 s command timeout: stopping must close
    // it, not wait for it to time out.
    let stopped = tokio::time::timeout(Duration::from_secs(3), setup.herald.stop())
        .await
        .expect("stop waited for the idle session's timeout");
    stopped.unwrap();
    let last = lines.next_line().await.unwrap().unwrap();
    assert!(last.starts_with("421 4.3.2"), "{last}");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", setup.port))
            .await
            .is_err(),
        "the listener is still open"
    );
}
