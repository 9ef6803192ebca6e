//! What `herald serve` and `herald check-config` print, and what they
//! leave on disk: no secret in any output even at `RUST_LOG=trace` (with
//! an alert sent and spans exported to a local receiver), files for the
//! owner only, and JSON log lines without a key given twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// These tests run the binary in its own process: they wait on real time
// (for conditions, with deadlines), so they read the machine's clocks.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use support::{API_KEY, Herald, Posted, TempDir};

const STORE_PASSWORD: &str = "STORE-PASS-s3cr3t";
const OTLP_PASSWORD: &str = "OTLP-PASS-s3cr3t";
const OTLP_HEADER: &str = "OTLP-HEADER-s3cr3t";
const HOOK_PATH_TOKEN: &str = "B0HOOKPATH9s3cr3t";
const HOOK_KEY: &str = "HOOK-KEY-s3cr3t";
const RELAY_PASSWORD: &str = "RELAY-PASS-s3cr3t";
const NAMED_KEY: &str = "NAMED-API-KEY-s3cr3t-0123";

const SECRETS: [&str; 8] = [
    STORE_PASSWORD,
    OTLP_PASSWORD,
    OTLP_HEADER,
    HOOK_PATH_TOKEN,
    HOOK_KEY,
    RELAY_PASSWORD,
    NAMED_KEY,
    API_KEY,
];

/// A local HTTP receiver that answers every request `200 {}` and counts
/// requests by path prefix.
struct Receiver {
    port: u16,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut stream = stream;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                        let mut length = 0usize;
                        loop {
                            let mut header = String::new();
                            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                                return;
                            }
                            if header == "\r\n" {
                                break;
                            }
                            if let Some((name, value)) = header.split_once(':')
                                && name.eq_ignore_ascii_case("content-length")
                            {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        seen.lock().unwrap().push(path);
                        let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
                        if stream.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Receiver { port, hits }
    }

    fn count(&self, prefix: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.starts_with(prefix))
            .count()
    }
}

/// Every place a configuration holds a secret; `store` is the store URL.
fn config_with_secrets(dir: &Path, http_port: u16, receiver: u16, store: &str) -> String {
    let dead_relay = support::free_port();
    format!(
        r#"[server]
http_listen = "127.0.0.1:{http_port}"
drain_timeout = "5s"

[store]
url = "{store}"

[auth]
api_keys = ["{API_KEY}"]

[[auth.keys]]
name = "shop"
key = "{NAMED_KEY}"
scopes = ["send"]

[delivery]
connect_timeout = "1s"
poll_interval = "100ms"

[retry]
initial_delay = "1h"
max_attempts = 2

[outbox]
dir = "{outbox}"

[[relays]]
name = "primary"
host = "127.0.0.1"
port = {dead_relay}
tls = "none"
username = "herald"
password = "{RELAY_PASSWORD}"
allow_insecure_auth = true

[tracing]
otlp_endpoint = "http://collector:{OTLP_PASSWORD}@127.0.0.1:{receiver}"

[alerts]
evaluate_every = "1s"

[[alerts.channels]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:{receiver}/services/T0TEAM/{HOOK_PATH_TOKEN}/x?key={HOOK_KEY}"

[[alerts.rules]]
name = "any"
scope = "group"
tiers = [{{ min_count = 1, channels = ["hook"] }}]
"#,
        outbox = dir.join("outbox").display(),
    )
}

#[track_caller]
fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{what} shows {secret}:\n{}",
            text.lines()
                .filter(|l| l.contains(secret))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

fn wait_until(limit: Duration, what: &str, log: &Path, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {limit:?}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Serves on `store` at `RUST_LOG=trace` with a secret in every place a
/// configuration can hold one, has an alert and a span export sent, stops,
/// and checks the whole log for the secrets and for a message body.
fn serve_at_trace(dir: &TempDir, store: &str) -> Receiver {
    let receiver = Receiver::start();
    let port = support::free_port();
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        config_with_secrets(dir.path(), port, receiver.port, store),
    )
    .unwrap();
    let log = dir.path().join("herald.log");
    let otlp_headers = format!("authorization=Bearer {OTLP_HEADER}");
    let mut herald = Herald::start_env(
        &[],
        &[
            ("RUST_LOG", "trace"),
            ("OTEL_EXPORTER_OTLP_HEADERS", &otlp_headers),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
        &config,
        port,
        &log,
    );
    // A message through the dead relay fails, its error group fires the
    // alert rule, and the alert goes to the receiver.
    let agent = support::agent();
    let posted = agent
        .post(format!("{}/v1/messages", herald.base))
        .header("Authorization", &format!("Bearer {NAMED_KEY}"))
        .send_json(serde_json::json!({
            "from": "app@example.com", "to": ["user@example.com"], "text": BODY
        }))
        .unwrap();
    assert_eq!(posted.status(), 202);
    assert!(matches!(
        support::post_message(&agent, &herald.base, 1),
        Posted::Accepted { .. }
    ));
    wait_until(Duration::from_secs(20), "an alert", &log, || {
        receiver.count("/services/") >= 1
    });
    wait_until(Duration::from_secs(20), "a span export", &log, || {
        receiver.count("/v1/traces") >= 1
    });
    herald.terminate();
    assert!(herald.wait_exit(Duration::from_secs(20)).is_some());
    let output = std::fs::read_to_string(&log).unwrap();
    // herald's own debug lines are there: the level was let through.
    assert!(output.contains("DEBUG"), "not a debug log:\n{output}");
    assert_no_secret("herald serve's log", &output);
    assert!(!output.contains(BODY), "a message body reached the log");
    assert!(
        !output.contains("user@example.com"),
        "a recipient reached the log:\n{}",
        output
            .lines()
            .filter(|l| l.contains("user@example.com"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    receiver
}

/// The same on PostgreSQL, with the password in the store URL: neither
/// the driver's own log lines nor herald's show it, or a message.
#[test]
fn no_secret_or_message_is_logged_serving_postgres_at_trace() {
    let db = support::PgDatabase::create("secrets");
    let url = db
        .url
        .replace("postgres@", &format!("postgres:{STORE_PASSWORD}@"));
    let dir = TempDir::new("secrets-pg");
    serve_at_trace(&dir, &url);
    drop(db);
}

/// A message body that must never reach a log, whatever `RUST_LOG` says.
const BODY: &str = "BODY-private-424242";

#[test]
fn no_secret_is_logged_or_printed_even_at_trace() {
    let dir = TempDir::new("secrets");
    let store = format!("sqlite://{}", dir.path().join("herald.db").display());
    let receiver = serve_at_trace(&dir, &store);
    let port = support::free_port();
    // check-config, with a store password too (not served: PostgreSQL).
    let checked = dir.path().join("check.toml");
    std::fs::write(
        &checked,
        config_with_secrets(
            dir.path(),
            port,
            receiver.port,
            &format!("postgres://herald:{STORE_PASSWORD}@db.example:5432/herald"),
        ),
    )
    .unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("check-config")
        .arg(&checked)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "{shown}");
    assert_no_secret("check-config", &shown);
    for expected in [
        "postgres://herald:***@db.example:5432/herald",
        "http://collector:***@127.0.0.1",
        "/services/***/***/x?key=***",
        "shop [send]",
    ] {
        assert!(shown.contains(expected), "{expected} not in\n{shown}");
    }

    // A configuration error about the endpoint quotes it redacted.
    std::fs::write(
        &checked,
        format!("[tracing]\notlp_endpoint = \"ftp://u:{OTLP_PASSWORD}@h\"\n"),
    )
    .unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("check-config")
        .arg(&checked)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(!run.status.success());
    assert!(shown.contains("tracing.otlp_endpoint"), "{shown}");
    assert_no_secret("a configuration error", &shown);
}

#[test]
fn served_files_are_private_and_json_log_lines_have_unique_keys() {
    let dir = TempDir::new("files");
    let port = support::free_port();
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhttp_listen = \"127.0.0.1:{port}\"\n[store]\nurl = \"sqlite://{db}\"\n\
             [auth]\napi_keys = [\"{API_KEY}\"]\n[delivery]\npoll_interval = \"50ms\"\n\
             [outbox]\ndir = \"{outbox}\"\n",
            db = dir.path().join("herald.db").display(),
            outbox = dir.path().join("outbox").display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("herald.log");
    let mut herald = Herald::start_env(
        &["--log-format", "json"],
        &[("RUST_LOG", "debug")],
        &config,
        port,
        &log,
    );
    let agent = support::agent();
    let Posted::Accepted { id, .. } = support::post_message(&agent, &herald.base, 1) else {
        panic!("not accepted");
    };
    assert!(
        support::wait_all_delivered(
            &agent,
            &herald.base,
            std::slice::from_ref(&id),
            Duration::from_secs(15)
        )
        .is_empty()
    );
    for (path, mode) in [
        (dir.path().join("herald.db"), 0o600),
        (dir.path().join("herald.db-wal"), 0o600),
        (dir.path().join("outbox").join(format!("{id}.eml")), 0o600),
        (dir.path().join("outbox"), 0o700),
    ] {
        let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            meta.permissions().mode() & 0o777,
            mode,
            "{} is {:o}",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    herald.terminate();
    assert!(herald.wait_exit(Duration::from_secs(20)).is_some());

    let output = std::fs::read_to_string(&log).unwrap();
    let mut queued = 0;
    for line in output.lines().filter(|l| l.starts_with('{')) {
        let object: Strict =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e} in log line\n{line}"));
        if object.0.get("message").map(String::as_str) == Some("\"message queued\"") {
            assert_eq!(object.0.get("id"), Some(&format!("\"{id}\"")), "{line}");
            queued += 1;
        }
    }
    assert_eq!(queued, 1, "{output}");
}

/// A JSON object whose keys are each given once (recursively); top-level
/// values kept as their JSON text. serde_json's own maps keep the last of
/// two equal keys without a word.
struct Strict(BTreeMap<String, String>);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object without duplicate keys")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value: Checked = map.next_value()?;
            if out.insert(key.clone(), value.0).is_some() {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
        }
        Ok(Strict(out))
    }
}

/// Any JSON value, objects inside it checked for duplicate keys too.
struct Checked(String);

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Checked, E> {
        Ok(Checked(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Checked, E> {
        Ok(Checked(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Checked, E> {
        Ok(Checked(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Checked, E> {
        Ok(Checked(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Checked, E> {
        Ok(Checked(format!("{v:?}")))
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked("null".to_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked("[…]".to_owned()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Checked, A::Error> {
        StrictVisitor
            .visit_map(map)
            .map(|_| Checked("{…}".to_owned()))
    }
}

#[test]
fn the_strict_reader_catches_duplicate_keys() {
    assert!(serde_json::from_str::<Strict>(r#"{"a": 1, "b": {"c": 2}}"#).is_ok());
    assert!(serde_json::from_str::<Strict>(r#"{"message": "x", "message": "y"}"#).is_err());
    assert!(serde_json::from_str::<Strict>(r#"{"span": {"id": 1, "id": 2}}"#).is_err());
}
