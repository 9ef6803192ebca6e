//! Interoperability with SMTP servers we did not write: Python's aiosmtpd
//! (STARTTLS, AUTH PLAIN and LOGIN, SMTPUTF8) and Postfix's smtp-sink
//! (PIPELINING, many messages over pooled connections). `scripts/deps`
//! installs both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use herald_message::{EmailAddress, Envelope};
use herald_smtp::{
    ClientConfig, Connection, Credentials, Ctx, Mechanism, Pool, PoolConfig, SendOptions, Timeouts,
    TlsMode, tls_config_from_pem,
};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "herald-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child process killed when the test ends, pass or fail.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Aiosmtpd {
    _server: Server,
    port: u16,
    out: PathBuf,
    ca_pem: String,
}

fn aiosmtpd(tls_and_auth: bool) -> Aiosmtpd {
    let out = temp_dir("aiosmtpd");
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/aiosmtpd_server.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg("--port")
        .arg(port.to_string())
        .arg("--out")
        .arg(&out);
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let ca_pem = cert.cert.pem();
    if tls_and_auth {
        let cert_path = out.join("cert.pem");
        let key_path = out.join("key.pem");
        std::fs::write(&cert_path, &ca_pem).unwrap();
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        cmd.arg("--cert")
            .arg(cert_path)
            .arg("--key")
            .arg(key_path)
            .arg("--user")
            .arg("alice")
            .arg("--password")
            .arg("s3cret pässword");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with aiosmtpd (scripts/deps installs it)");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(
        ready.starts_with("READY"),
        "aiosmtpd did not start: {ready:?}"
    );
    Aiosmtpd {
        _server: Server(child),
        port,
        out,
        ca_pem,
    }
}

fn client(port: u16, tls: TlsMode, ca_pem: &str) -> ClientConfig {
    let mut config = ClientConfig::new(
        "127.0.0.1",
        port,
        tls,
        tls_config_from_pem(ca_pem.as_bytes()).unwrap(),
    );
    config.helo_name = "herald.test".into();
    config.timeouts = Timeouts::uniform(Duration::from_secs(10));
    config
}

fn envelope(rcpts: &[&str]) -> Envelope {
    Envelope::new(
        Some(EmailAddress::parse("sender@example.com").unwrap()),
        rcpts.iter().map(|r| EmailAddress::parse(r).unwrap()),
    )
    .unwrap()
}

const MESSAGE: &[u8] = b"From: sender@example.com\r\nTo: a@example.com\r\nSubject: interop\r\n\r\n\
line one\r\n.leading dot\r\n..two dots\r\n.\r\nafter a lone dot\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiosmtpd_starttls_with_auth_plain_and_login() {
    let server = aiosmtpd(true);
    for (n, mechanism) in [Mechanism::Plain, Mechanism::Login].into_iter().enumerate() {
        let mut config = client(server.port, TlsMode::StartTls, &server.ca_pem);
        config.credentials = Some(Credentials {
            mechanism: Some(mechanism),
            ..Credentials::password("alice", "s3cret pässword")
        });
        let mut conn = Connection::open(Arc::new(config), &Ctx::default())
            .await
            .unwrap();
        assert!(conn.tls_info().is_some());
        assert_eq!(conn.authenticated(), Some(mechanism));
        let out = conn
            .send(
                &envelope(&["a@example.com", "b@example.org"]),
                MESSAGE,
                SendOptions::default(),
                &Ctx::default(),
            )
            .await
            .unwrap();
        assert!(out.iter().all(|o| o.is_delivered()), "{out:?}");
        conn.quit().await;

        let saved = std::fs::read(server.out.join(format!("{}.eml", n + 1))).unwrap();
        assert_eq!(saved, MESSAGE, "body changed in transit");
        let meta: serde_json::Value = serde_json::from_slice(
            &std::fs::read(server.out.join(format!("{}.json", n + 1))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            meta["rcpt_tos"],
            serde_json::json!(["a@example.com", "b@example.org"])
        );
        assert_eq!(meta["tls"], true);
        assert_eq!(meta["authenticated"], true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiosmtpd_rejects_a_wrong_password_as_permanent() {
    let server = aiosmtpd(true);
    let mut config = client(server.port, TlsMode::StartTls, &server.ca_pem);
    config.credentials = Some(Credentials::password("alice", "wrong"));
    let err = Connection::open(Arc::new(config), &Ctx::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), herald_smtp::ErrorKind::AuthFailed);
    assert_eq!(err.smtp_code(), Some(535));
    assert!(err.is_permanent(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiosmtpd_plain_text_with_smtputf8() {
    let server = aiosmtpd(false);
    let config = client(server.port, TlsMode::None, &server.ca_pem);
    let mut conn = Connection::open(Arc::new(config), &Ctx::default())
        .await
        .unwrap();
    assert!(conn.capabilities().smtputf8);
    let body = "From: sender@example.com\r\nTo: 用户@例子.中国\r\nSubject: utf8\r\n\r\n你好\r\n";
    let out = conn
        .send(
            &envelope(&["用户@例子.中国"]),
            body.as_bytes(),
            SendOptions { smtputf8: true },
            &Ctx::default(),
        )
        .await
        .unwrap();
    assert!(out[0].is_delivered(), "{out:?}");
    conn.quit().await;
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(server.out.join("1.json")).unwrap()).unwrap();
    assert_eq!(meta["rcpt_tos"], serde_json::json!(["用户@例子.中国"]));
    assert!(
        meta["mail_options"].to_string().contains("SMTPUTF8"),
        "{meta}"
    );
    assert_eq!(
        std::fs::read(server.out.join("1.eml")).unwrap(),
        body.as_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_sink_takes_many_messages_over_pooled_pipelined_connections() {
    let dir = temp_dir("smtp-sink");
    let port = free_port();
    let template = dir.join("msg.%H%M%S");
    let sink = Server(
        Command::new("smtp-sink")
            .args(["-u", "root", "-d"])
            .arg(&template)
            .arg(format!("127.0.0.1:{port}"))
            .arg("64")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp-sink (Postfix; scripts/deps installs it)"),
    );
    // Wait until it listens.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pool = Arc::new(Pool::new(
        client(port, TlsMode::None, &rcgen_ca()),
        PoolConfig {
            max_connections: 4,
            max_messages_per_connection: 100,
            idle_timeout: Duration::from_secs(30),
        },
    ));
    let mut tasks = Vec::new();
    for task in 0..4 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..15 {
                let body = format!("Subject: n{task}-{i}\r\n\r\nmessage {task}-{i}\r\n.dot\r\n");
                let out = pool
                    .send(
                        &envelope(&["x@example.com", "y@example.com"]),
                        body.as_bytes(),
                        SendOptions::default(),
                        &Ctx::default(),
                    )
                    .await
                    .unwrap();
                assert!(out.iter().all(|o| o.is_delivered()), "{out:?}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = pool.stats();
    assert!(stats.opened_total <= 4, "{stats:?}");
    assert_eq!(stats.reused_total + stats.opened_total, 60, "{stats:?}");
    pool.close_idle().await;
    drop(sink);

    let mut bodies = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        bodies.push(
            String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap()).into_owned(),
        );
    }
    assert_eq!(
        bodies.len(),
        60,
        "smtp-sink dumped {} messages",
        bodies.len()
    );
    for task in 0..4 {
        for i in 0..15 {
            // smtp-sink stores lines with LF endings, dot-stuffing undone.
            let needle = format!("message {task}-{i}\n.dot\n");
            assert!(
                bodies.iter().any(|b| b.contains(&needle)),
                "missing {needle:?}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn rcgen_ca() -> String {
    rcgen::generate_simple_self_signed(vec!["localhost".into()])
        .unwrap()
        .cert
        .pem()
}
