//! `[tracing] otlp_endpoint`: `herald serve` exports its spans over
//! OTLP/HTTP (JSON) to a local receiver, in the trace of the `traceparent`
//! the message was posted with, and sends the last ones when SIGTERM stops
//! it. Without the section nothing is exported, whatever the `OTEL_*`
//! environment says.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// These tests run the binary in its own process: they wait on real time
// (for conditions, with deadlines), so they read the machine's clocks.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_testkit::{ServerConfig, TestServer};
use serde_json::{Value, json};
use support::{API_KEY, TempDir};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// A minimal OTLP/HTTP receiver on 127.0.0.1: answers every request `200
/// {}` and keeps it. Stops (and lets its threads end) on drop.
struct Receiver {
    base: String,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    /// Connections accepted, and passes of the accept loop that found
    /// none waiting.
    accepted: Arc<AtomicUsize>,
    idle_passes: Arc<AtomicUsize>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let idle_passes = Arc::new(AtomicUsize::new(0));
        let (kept, stopped) = (received.clone(), stop.clone());
        let (counted, passes) = (accepted.clone(), idle_passes.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let (kept, stopped) = (kept.clone(), stopped.clone());
                        std::thread::spawn(move || serve_connection(stream, &kept, &stopped));
                    }
                    Err(_) => {
                        passes.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        });
        Receiver {
            base,
            received,
            stop,
            accepted,
            idle_passes,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Connections ever accepted, once the accept loop has found the
    /// backlog empty after this call: a client that has exited cannot add
    /// any, and any it made are counted by then.
    fn connections_once_drained(&self) -> usize {
        let from = self.idle_passes.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.idle_passes.load(Ordering::SeqCst) < from + 2 {
            assert!(
                Instant::now() < deadline,
                "the receiver's accept loop stalled"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// HTTP/1.1 with keep-alive and `Content-Length` bodies, as ureq sends.
fn serve_connection(stream: TcpStream, kept: &Mutex<Vec<Received>>, stop: &AtomicBool) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) if !stop.load(Ordering::Relaxed) && request_line.is_empty() => continue,
            Err(_) => return,
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        kept.lock().unwrap().push(Received {
            method,
            path,
            content_type: headers.get("content-type").cloned().unwrap_or_default(),
            body,
        });
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// An exported span, from the OTLP JSON.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, Value>,
    events: Vec<(String, HashMap<String, Value>)>,
}

/// `[{key, value: {stringValue|intValue|…}}]` → key → inner value.
fn attributes(list: &Value) -> HashMap<String, Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| {
            let key = kv["key"].as_str()?.to_owned();
            let value = kv["value"].as_object()?.values().next()?.clone();
            Some((key, value))
        })
        .collect()
}

/// Every span in the receiver's requests (all must be OTLP JSON posts to
/// `/v1/traces`).
fn spans(received: &[Received]) -> Vec<Span> {
    let mut spans = Vec::new();
    for request in received {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/v1/traces");
        assert!(
            request.content_type.starts_with("application/json"),
            "{request:?}"
        );
        let export: Value = serde_json::from_slice(&request.body).expect("an OTLP JSON body");
        for resource_spans in export["resourceSpans"].as_array().into_iter().flatten() {
            let resource = attributes(&resource_spans["resource"]["attributes"]);
            let service = resource
                .get("service.name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            for scope in resource_spans["scopeSpans"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    let text = |key: &str| span[key].as_str().unwrap_or_default().to_owned();
                    spans.push(Span {
                        service: service.clone(),
                        name: text("name"),
                        trace_id: text("traceId"),
                        span_id: text("spanId"),
                        parent_span_id: text("parentSpanId"),
                        attributes: attributes(&span["attributes"]),
                        events: span["events"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|e| {
                                (
                                    e["name"].as_str().unwrap_or_default().to_owned(),
                                    attributes(&e["attributes"]),
                                )
                            })
                            .collect(),
                    });
                }
            }
        }
    }
    spans
}

fn only<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one {name:?} span expected in {spans:#?}");
    found[0]
}

/// A trace id (and a parent span id) of our own, different every run.
fn ids() -> (String, String) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let trace = (1u128 << 124) | (nanos << 32) | u128::from(std::process::id());
    let parent = (1u64 << 60) | (nanos as u64 & 0x0fff_ffff_ffff_ffff);
    (format!("{trace:032x}"), format!("{parent:016x}"))
}

/// Writes a configuration for `dir`: the file outbox unless `relay_port`,
/// and `tracing` as given (a whole `[tracing]` section or nothing).
fn write_config(dir: &Path, port: u16, relay_port: Option<u16>, tracing: &str) -> PathBuf {
    let relay = match relay_port {
        Some(port) => format!(
            "[[relays]]\nname = \"relay\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n"
        ),
        None => String::new(),
    };
    let text = format!(
        r#"[server]
http_listen = "127.0.0.1:{port}"
drain_timeout = "5s"

[store]
url = "sqlite://{db}"

[auth]
api_keys = ["{API_KEY}"]

[delivery]
poll_interval = "100ms"
helo_name = "herald.test"

[outbox]
dir = "{outbox}"

{relay}
{tracing}
"#,
        db = dir.join("herald.db").display(),
        outbox = dir.join("outbox").display(),
    );
    let path = dir.join("herald.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `herald serve`, killed on drop unless it has exited.
struct Serve {
    child: Option<Child>,
    base: String,
    log: PathBuf,
}

impl Serve {
    fn start(config: &Path, port: u16, log: &Path, env: &[(&str, &str)]) -> Serve {
        let out = File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["--log-format", "json", "serve", "--config"])
            .arg(config)
            .env_remove("HERALD_API_KEYS")
            .env_remove("HERALD_STORE_URL")
            .env_remove("HERALD_HTTP_LISTEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut serve = Serve {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            log: log.to_owned(),
        };
        let agent = support::agent();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = serve.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("herald exited ({status}); log:\n{}", serve.log());
            }
            if let Ok(r) = agent.get(format!("{}/healthz", serve.base)).call()
                && r.status() == 200
            {
                return serve;
            }
            assert!(
                Instant::now() < deadline,
                "no /healthz; log:\n{}",
                serve.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait for the exit.
    fn stop(&mut self) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "herald did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Posts one message with `traceparent` (if any); returns its id and the
/// `X-Herald-Trace-Id` of the answer.
fn post(base: &str, traceparent: Option<&str>) -> (String, String) {
    let agent = support::agent();
    let mut request = agent
        .post(format!("{base}/v1/messages"))
        .header("Authorization", &format!("Bearer {API_KEY}"));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request
        .send_json(json!({
            "from": "App <app@example.com>",
            "to": ["user@example.com", "other@example.com"],
            "subject": "traced",
            "text": "A message whose way is traced.\n",
        }))
        .unwrap();
    assert_eq!(response.status(), 202);
    let trace = response
        .headers()
        .get("x-herald-trace-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value =
        serde_json::from_str(&response.into_body().read_to_string().unwrap()).unwrap();
    (body["id"].as_str().unwrap().to_owned(), trace)
}

fn wait_delivered(serve: &Serve, id: &str) {
    let open = support::wait_all_delivered(
        &support::agent(),
        &serve.base,
        &[id.to_owned()],
        Duration::from_secs(20),
    );
    assert!(
        open.is_empty(),
        "not delivered: {open:?}; log:\n{}",
        serve.log()
    );
}

#[test]
fn spans_continue_the_callers_trace_and_are_flushed_on_sigterm() {
    let dir = TempDir::new("otlp");
    let receiver = Receiver::start();
    let port = support::free_port();
    let config = write_config(
        dir.path(),
        port,
        None,
        &format!(
            "[tracing]\notlp_endpoint = \"{}\"\nservice_name = \"herald-test\"\n",
            receiver.base
        ),
    );
    // The log level does not decide what is exported.
    let mut serve = Serve::start(
        &config,
        port,
        &dir.path().join("herald.log"),
        &[("RUST_LOG", "warn")],
    );
    let (trace, parent) = ids();
    let (id, answered) = post(&serve.base, Some(&format!("00-{trace}-{parent}-01")));
    assert_eq!(answered, trace);
    wait_delivered(&serve, &id);
    let status = serve.stop();
    assert!(status.success(), "{status}; log:\n{}", serve.log());

    let spans = spans(&receiver.received());
    let log = serve.log();
    let accept = only(&spans, "accept");
    assert_eq!(accept.trace_id, trace, "{spans:#?}");
    assert_eq!(
        accept.parent_span_id, parent,
        "accept is the caller's child"
    );
    assert_eq!(accept.service, "herald-test");
    assert_eq!(accept.attributes["id"], json!(id));
    let delivery = only(&spans, "delivery");
    assert_eq!(delivery.trace_id, trace, "{spans:#?}");
    assert_eq!(delivery.attributes["id"], json!(id));
    assert!(
        !delivery.parent_span_id.is_empty(),
        "delivery joins the trace"
    );
    // The attempt's log event, with its outcome, is an event of the span.
    assert!(
        delivery
            .events
            .iter()
            .any(|(_, attributes)| attributes.get("outcome") == Some(&json!("delivered"))),
        "{delivery:#?}"
    );
    let outbox = only(&spans, "outbox");
    assert_eq!(outbox.trace_id, trace);
    assert_eq!(
        outbox.parent_span_id, delivery.span_id,
        "outbox is in delivery"
    );
    // The export-only spans stay out of the log lines.
    assert!(!log.contains("\"accept\""), "{log}");
}

#[test]
fn smtp_phases_are_events_of_an_smtp_span() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let relay = runtime
        .block_on(TestServer::start(ServerConfig::default()))
        .unwrap();
    let dir = TempDir::new("otlp-smtp");
    let receiver = Receiver::start();
    let port = support::free_port();
    let config = write_config(
        dir.path(),
        port,
        Some(relay.port()),
        &format!("[tracing]\notlp_endpoint = \"{}/\"\n", receiver.base),
    );
    let mut serve = Serve::start(
        &config,
        port,
        &dir.path().join("herald.log"),
        &[("RUST_LOG", "info")],
    );
    // No traceparent: herald makes the trace up, and the spans are in it.
    let (id, trace) = post(&serve.base, None);
    assert_eq!(trace.len(), 32);
    wait_delivered(&serve, &id);
    assert!(serve.stop().success());

    // Export changes nothing in the log: every line about the message
    // still carries its trace id (the attempt's through its span).
    let log = serve.log();
    let about: Vec<Value> = log
        .lines()
        .filter(|l| l.contains(&id))
        .map(|l| serde_json::from_str(l).expect("JSON log lines"))
        .collect();
    assert!(about.len() >= 2, "{log}");
    for line in &about {
        let logged = line["trace_id"]
            .as_str()
            .or_else(|| line["span"]["trace_id"].as_str());
        assert_eq!(logged, Some(trace.as_str()), "{line}");
        assert_ne!(line["span"]["name"], json!("smtp"), "{line}");
    }

    let spans = spans(&receiver.received());
    let accept = only(&spans, "accept");
    assert_eq!(accept.trace_id, trace);
    assert_eq!(accept.service, "herald");
    let delivery = only(&spans, "delivery");
    assert_eq!(delivery.trace_id, trace);
    // Without a caller's span, accept and the attempts share the stand-in
    // parent that stands for the message.
    assert_eq!(accept.parent_span_id, delivery.parent_span_id);
    let smtp = only(&spans, "smtp");
    assert_eq!(smtp.trace_id, trace);
    assert_eq!(smtp.parent_span_id, delivery.span_id);
    assert_eq!(smtp.attributes["relay"], json!("relay"));
    let phases: Vec<&str> = smtp
        .events
        .iter()
        .filter_map(|(_, attributes)| attributes.get("phase")?.as_str())
        .collect();
    for phase in ["banner", "ehlo", "mail", "rcpt", "data"] {
        assert!(phases.contains(&phase), "no {phase} in {phases:?}");
    }
    let recipients = smtp
        .events
        .iter()
        .filter(|(name, _)| name == "recipient")
        .count();
    assert_eq!(recipients, 2, "{smtp:#?}");
}

#[test]
fn without_a_tracing_section_nothing_is_exported() {
    let dir = TempDir::new("otlp-off");
    let receiver = Receiver::start();
    let port = support::free_port();
    let config = write_config(dir.path(), port, None, "");
    // The OpenTelemetry environment alone does not turn export on.
    let endpoint = receiver.base.clone();
    let mut serve = Serve::start(
        &config,
        port,
        &dir.path().join("herald.log"),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint),
        ],
    );
    let (trace, parent) = ids();
    let (id, _) = post(&serve.base, Some(&format!("00-{trace}-{parent}-01")));
    wait_delivered(&serve, &id);
    assert!(serve.stop().success());
    // herald has exited: whatever it sent is in the receiver's backlog.
    assert_eq!(receiver.connections_once_drained(), 0);
    assert!(receiver.received().is_empty(), "{:?}", receiver.received());
    assert!(!serve.log().contains("OTLP"), "{}", serve.log());
}
