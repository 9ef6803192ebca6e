//! `kill -9` of `herald serve` right after it answered `250` to a message
//! submitted over SMTP: the message was committed, so the restarted node
//! delivers it. The relay does not exist until after the kill, so nothing
//! can have been delivered before it.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// These tests run the binary in its own process: they wait on real time
// (for conditions, with deadlines), so they read the machine's clocks.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use herald_testkit::{ServerConfig, TestServer};
use support::{Herald, Setup, TempDir};

/// Submits one message over implicit TLS and exits the moment the final
/// dot is answered (no QUIT): prints the reply to it.
const CLIENT: &str = r#"
import os, smtplib, ssl, sys
port, ca, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = smtplib.SMTP_SSL("localhost", port, timeout=10,
                     context=ssl.create_default_context(cafile=ca))
s.login("crash-test", key)
s.mail("app@example.com")
s.rcpt("bob@example.org")
code, text = s.data(b"Subject: survives kill -9\r\n\r\ncommitted before 250\r\n")
print(code, text.decode())
sys.stdout.flush()
os._exit(0)
"#;

/// The test configuration with a `[submission]` listener on `smtps_port`.
fn write_config(dir: &Path, setup: &Setup, smtps_port: u16) -> std::path::PathBuf {
    let path = support::write_config(dir, setup);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "\n[submission]\nimplicit_tls_listen = \"127.0.0.1:{smtps_port}\"\n\
         cert_file = \"{}\"\nkey_file = \"{}\"\n",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_message_answered_250_survives_kill_9() {
    let dir = TempDir::new("smtp-crash");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();

    let mut setup = Setup {
        http_port: support::free_port(),
        // Nothing listens here: every attempt before the kill fails.
        relay_port: support::free_port(),
        concurrency: 2,
        lease: "5m",
        drain_timeout: "1s",
        data_timeout: "1s",
    };
    let smtps_port = support::free_port();
    let config = write_config(dir.path(), &setup, smtps_port);
    let herald = Herald::start(&config, setup.http_port, &dir.path().join("first.log"));

    let output = Command::new("python3")
        .arg("-c")
        .arg(CLIENT)
        .arg(smtps_port.to_string())
        .arg(dir.path().join("cert.pem"))
        .arg(support::API_KEY)
        .output()
        .unwrap();
    herald.kill();
    let reply = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        output.status.success(),
        "{reply}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let id = reply
        .strip_prefix("250 2.0.0 queued as ")
        .unwrap_or_else(|| panic!("not queued: {reply}"))
        .to_owned();

    // The relay appears; the restarted node must deliver what it took.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let relay = runtime
        .block_on(TestServer::start(ServerConfig::default()))
        .unwrap();
    setup.relay_port = relay.port();
    let config = write_config(dir.path(), &setup, smtps_port);
    let herald = Herald::start(&config, setup.http_port, &dir.path().join("second.log"));
    let agent = support::agent();
    let left = support::wait_all_delivered(
        &agent,
        &herald.base,
        std::slice::from_ref(&id),
        Duration::from_secs(30),
    );
    assert!(left.is_empty(), "not delivered after the restart: {left:?}");
    let received = relay.messages();
    assert_eq!(received.len(), 1);
    let text = String::from_utf8_lossy(&received[0].data);
    assert!(text.contains("Subject: survives kill -9"), "{text}");
    assert!(text.ends_with("\r\n\r\ncommitted before 250\r\n"), "{text}");
    drop(herald);
}
