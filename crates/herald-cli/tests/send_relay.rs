//! `herald send` and `herald relay-check` against the testkit SMTP server,
//! as a user runs them: retries with backoff, per-recipient outcomes, exit
//! statuses, JSON logs, and secrets kept out of every line.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// These tests run the binary in its own process: they wait on real time
// (for conditions, with deadlines), so they read the machine's clocks.
#![allow(clippy::disallowed_methods)]

use std::process::{Command, Output};

use herald_testkit::{Credentials, ServerConfig, TestServer, TlsMode};

async fn herald(args: Vec<String>, env: Vec<(&'static str, &'static str)>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(&args)
            .envs(env)
            .output()
            .expect("run herald")
    })
    .await
    .unwrap()
}

fn send_args(server: &TestServer, to: &[&str], extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--log-format",
        "json",
        "send",
        "--relay-host",
        "127.0.0.1",
        "--relay-port",
        &server.port().to_string(),
        "--tls",
        "none",
        "--from",
        "App <app@example.com>",
        "--subject",
        "code",
        "--text",
        "your code is 424242",
        "--initial-delay",
        "50ms",
        "--max-delay",
        "200ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for rcpt in to {
        args.push("--to".into());
        args.push(rcpt.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The JSON log lines on stderr that record delivery attempts.
fn attempts(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("every log line is JSON"))
        .filter(|v| v["message"] == "attempt")
        .collect()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failure_is_retried_with_backoff_then_delivered() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let out = herald(
        send_args(&server, &["rcpt451-once@example.com"], &[]),
        vec![],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).starts_with("rcpt451-once@example.com delivered 250"),
        "{}",
        stdout(&out)
    );
    let log = attempts(&out);
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0]["attempt"], 1);
    assert_eq!(log[0]["outcome"], "deferred");
    assert_eq!(log[0]["code"], 451);
    assert_eq!(log[0]["enhanced_code"], "4.7.1");
    assert_eq!(log[0]["phase"], "rcpt");
    assert_eq!(log[1]["attempt"], 2);
    assert_eq!(log[1]["outcome"], "delivered");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let retry: serde_json::Value = stderr
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["message"] == "retry scheduled")
        .expect("a retry line");
    assert!(retry["delay_ms"].as_u64().unwrap() <= 200, "{retry}");
    assert_eq!(server.message_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_is_not_retried_and_exits_3() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let out = herald(send_args(&server, &["rcpt550@example.com"], &[]), vec![]).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stdout(&out).starts_with("rcpt550@example.com failed 550 5.1.1"),
        "{}",
        stdout(&out)
    );
    assert_eq!(attempts(&out).len(), 1);
    assert_eq!(server.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_recipients_report_each_outcome_and_deliver_once_each() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let out = herald(
        send_args(
            &server,
            &[
                "ok@example.com",
                "rcpt550@example.com",
                "rcpt451-once@example.com",
            ],
            &[],
        ),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    let lines: Vec<_> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("ok@example.com delivered 250"));
    assert!(lines[1].starts_with("rcpt550@example.com failed 550"));
    assert!(lines[2].starts_with("rcpt451-once@example.com delivered 250"));
    let messages = server.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].rcpt_to, ["ok@example.com"]);
    assert_eq!(
        messages[1].rcpt_to,
        ["rcpt451-once@example.com"],
        "retry went only to the deferred recipient"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_exhausted_exits_4() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let out = herald(
        send_args(&server, &["rcpt451@example.com"], &["--max-attempts", "3"]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stdout(&out).starts_with("rcpt451@example.com deferred (retries exhausted) 451 4.7.1"),
        "{}",
        stdout(&out)
    );
    assert_eq!(attempts(&out).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_is_down_exhausts_the_deadline() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let mut args = send_args(
        &server,
        &["a@example.com"],
        &["--deadline", "500ms", "--max-attempts", "100"],
    );
    let at = args
        .iter()
        .position(|a| *a == server.port().to_string())
        .unwrap();
    args[at] = port.to_string(); // nothing listens there
    let out = herald(args, vec![]).await;
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("deferred (deadline reached)"),
        "{}",
        stdout(&out)
    );
    // A refused connection is the relay's error, in the service's words,
    // and has no SMTP code to show: the fields are absent, not 0 or "".
    let log = attempts(&out);
    assert!(!log.is_empty());
    for line in &log {
        assert_eq!(line["outcome"], "error", "{line}");
        assert_eq!(line["phase"], "connect", "{line}");
        assert!(line.get("code").is_none(), "{line}");
        assert!(line.get("enhanced_code").is_none(), "{line}");
    }
}

fn relay_check_args(server: &TestServer, ca: &std::path::Path) -> Vec<String> {
    [
        "relay-check",
        "--relay-host",
        "127.0.0.1",
        "--relay-port",
        &server.port().to_string(),
        "--tls",
        "starttls",
        "--ca-file",
        ca.to_str().unwrap(),
        "--user",
        "alice",
        "--password-env",
        "HERALD_TEST_PASSWORD",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_check_reports_banner_capabilities_tls_and_auth() {
    let server = TestServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        auth: Some(Credentials::new("alice", "pa55-word-secret")),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let ca = std::env::temp_dir().join(format!("herald-ca-{}.pem", server.port()));
    std::fs::write(&ca, server.ca_pem()).unwrap();

    let ok = herald(
        relay_check_args(&server, &ca),
        vec![("HERALD_TEST_PASSWORD", "pa55-word-secret")],
    )
    .await;
    let text = stdout(&ok);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(text.contains("banner      220"), "{text}");
    assert!(text.contains("capability  PIPELINING"), "{text}");
    assert!(text.contains("capability  AUTH"), "{text}");
    assert!(text.contains("tls         TLSv1."), "{text}");
    assert!(text.contains("certificate CN=localhost"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("expires     ") && l.ends_with('Z')),
        "{text}"
    );
    assert!(text.contains("auth        succeeded (PLAIN)"), "{text}");

    let bad = herald(
        relay_check_args(&server, &ca),
        vec![
            ("HERALD_TEST_PASSWORD", "wrong-secret"),
            ("RUST_LOG", "trace"),
        ],
    )
    .await;
    assert_ne!(bad.status.code(), Some(0));
    let all = format!("{}{}", stdout(&bad), String::from_utf8_lossy(&bad.stderr));
    assert!(all.contains("authentication failed: 535"), "{all}");
    assert!(!all.contains("wrong-secret"), "secret leaked: {all}");
    std::fs::remove_file(&ca).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs() {
    let server = TestServer::start(ServerConfig {
        tls: TlsMode::Implicit,
        auth: Some(Credentials::new("alice", "s3cret-value")),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let ca = std::env::temp_dir().join(format!("herald-ca2-{}.pem", server.port()));
    std::fs::write(&ca, server.ca_pem()).unwrap();
    let mut args = send_args(&server, &["a@example.com"], &[]);
    let tls = args.iter().position(|a| a == "none").unwrap();
    args[tls] = "implicit".into();
    args.extend(
        [
            "--ca-file",
            ca.to_str().unwrap(),
            "--user",
            "alice",
            "--password-env",
            "HERALD_TEST_PASSWORD",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let out = herald(
        args,
        vec![
            ("HERALD_TEST_PASSWORD", "s3cret-value"),
            ("RUST_LOG", "trace"),
        ],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("s3cret-value"), "secret leaked");
    // Nor its base64 form (AUTH PLAIN's payload).
    assert!(!all.contains("czNjcmV0LXZhbHVl"), "encoded secret leaked");
    std::fs::remove_file(&ca).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_takes_the_relay_and_retry_policy_from_a_config_file() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("herald-send-config-{}", server.port()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "[retry]\ninitial_delay = \"50ms\"\nmin_delay = \"10ms\"\nmax_delay = \"100ms\"\nmax_attempts = 2\n\n\
             [[relays]]\nname = \"other\"\nhost = \"127.0.0.1\"\nport = 1\ntls = \"none\"\n\n\
             [[relays]]\nname = \"test\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
            server.port()
        ),
    )
    .unwrap();
    let args: Vec<String> = [
        "--log-format",
        "json",
        "send",
        "--config",
        config.to_str().unwrap(),
        "--relay",
        "test",
        "--from",
        "a@example.com",
        "--to",
        "rcpt451@example.com",
        "--to",
        "ok@example.com",
        "--text",
        "x",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = herald(args, vec![]).await;
    // max_attempts = 2 from the file: the 451 recipient gives up after two.
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        attempts(&out)
            .iter()
            .filter(|a| a["recipient"] == "rcpt451@example.com")
            .count(),
        2
    );
    assert!(stdout(&out).contains("ok@example.com delivered"));
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_names_the_bad_field() {
    let dir = std::env::temp_dir().join(format!("herald-check-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[[relays]]\nname = \"primary\"\nhost = \"smtp.example.com\"\n",
    )
    .unwrap();
    let out = herald(
        vec!["check-config".into(), good.to_str().unwrap().into()],
        vec![],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("primary (smtp.example.com:587, tls starttls)"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("submission  off"), "{}", stdout(&out));

    let smtp = dir.join("submission.toml");
    std::fs::write(
        &smtp,
        "[submission]\nlisten = \"127.0.0.1:2587\"\nimplicit_tls_listen = \"127.0.0.1:2465\"\n\
         cert_file = \"/etc/herald/cert.pem\"\nkey_file = \"/etc/herald/key.pem\"\n\
         max_recipients = 7\n",
    )
    .unwrap();
    let out = herald(
        vec!["check-config".into(), smtp.to_str().unwrap().into()],
        vec![],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains(
            "submission  STARTTLS on 127.0.0.1:2587, implicit TLS on 127.0.0.1:2465 \
             (certificate /etc/herald/cert.pem, up to 26214400 bytes, 7 recipients)"
        ),
        "{}",
        stdout(&out)
    );

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[relays]]\nname = \"primary\"\nhost = \"smtp.example.com\"\ntls = \"ssl\"\n",
    )
    .unwrap();
    let out = herald(
        vec!["check-config".into(), bad.to_str().unwrap().into()],
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: relays[0].tls: unknown TLS mode \"ssl\""),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
