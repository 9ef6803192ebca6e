//! A herald running in-process on a port-0 socket with a real SQLite file,
//! delivering to a testkit SMTP server; and a small HTTP client for it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub(crate) mod api;
pub(crate) mod pg;
pub(crate) mod token_endpoint;
pub(crate) mod webhook;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use herald_api::{Accepted, Message, MessageStatus};
use herald_policy::{ManualClock, SharedClock, SystemClock};
use herald_server::config::Config;
use herald_server::{ServeError, open_store, serve_with_clock};
use herald_testkit::TestServer;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) const KEY: &str = "test-key-0123456789abcdef";

/// The webhook secret the test environment holds in `WEBHOOK_SECRET`.
pub(crate) const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub(crate) struct Herald {
    pub(crate) base: String,
    pub(crate) dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

/// A fresh temporary directory for one test.
pub(crate) fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-e2e-{}", herald_message::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Configuration for tests: fast retries, short timeouts; `relay` if
/// given (otherwise the outbox); `extra` appended (more TOML sections).
pub(crate) fn config_text(
    dir: &std::path::Path,
    relay: Option<&TestServer>,
    extra: &str,
) -> String {
    let relay = relay
        .map(|r| {
            format!(
                "[[relays]]\nname = \"test\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nmax_connections = 4\n",
                r.port()
            )
        })
        .unwrap_or_default();
    format!(
        r#"
[server]
http_listen = "127.0.0.1:0"
drain_timeout = "5s"
[store]
url = "sqlite://{dir}/herald.db"
[auth]
api_keys = ["{KEY}"]
[retry]
initial_delay = "100ms"
min_delay = "50ms"
max_delay = "300ms"
max_attempts = 5
max_age = "1h"
[delivery]
concurrency = 8
poll_interval = "50ms"
connect_timeout = "2s"
command_timeout = "1s"
data_timeout = "2s"
lease = "10s"
[outbox]
dir = "{dir}/outbox"
{extra}
{relay}
"#,
        dir = dir.display()
    )
}

impl Herald {
    pub(crate) async fn start(relay: Option<&TestServer>) -> Herald {
        Self::start_with(relay, "").await
    }

    pub(crate) async fn start_with(relay: Option<&TestServer>, extra: &str) -> Herald {
        let dir = temp_dir();
        Self::start_in(dir, &config_text_for(relay, extra)).await
    }

    /// [`start`](Self::start), the service reading the time from `clock`.
    pub(crate) async fn start_with_clock(relay: Option<&TestServer>, clock: SharedClock) -> Herald {
        let text = config_text_for(relay, "");
        Self::start_in_with_clock(temp_dir(), &text, clock).await
    }

    /// Starts on `dir` with the given config text (which must use `dir`).
    pub(crate) async fn start_in(dir: PathBuf, text: &str) -> Herald {
        Self::start_in_with_clock(dir, text, SystemClock::shared()).await
    }

    /// [`start_in`](Self::start_in), the service reading the time from
    /// `clock`.
    pub(crate) async fn start_in_with_clock(
        dir: PathBuf,
        text: &str,
        clock: SharedClock,
    ) -> Herald {
        Self::start_in_with_env(dir, text, clock, &[]).await
    }

    /// [`start_in_with_clock`](Self::start_in_with_clock) with `vars` in
    /// the environment herald reads (besides `WEBHOOK_SECRET`).
    pub(crate) async fn start_in_with_env(
        dir: PathBuf,
        text: &str,
        clock: SharedClock,
        vars: &[(&str, &str)],
    ) -> Herald {
        let text = text.replace("{DIR}", &dir.display().to_string());
        let env = |name: &str| {
            if name == "WEBHOOK_SECRET" {
                return Some(WEBHOOK_SECRET.to_owned());
            }
            vars.iter()
                .find(|(var, _)| *var == name)
                .map(|(_, value)| (*value).to_owned())
        };
        let config = Config::from_toml_str(&text, &env).unwrap();
        let store = open_store(&config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let task = tokio::spawn(serve_with_clock(config, store, listener, shutdown, clock));
        Herald {
            base,
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Graceful shutdown; returns serve's result.
    pub(crate) async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }

    pub(crate) async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value, Vec<(String, String)>) {
        let url = format!("{}{}", self.base, path);
        let method = method.to_owned();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut has_auth = false;
            let response = match method.as_str() {
                "GET" | "DELETE" => {
                    let mut req = if method == "DELETE" {
                        agent.delete(&url)
                    } else {
                        agent.get(&url)
                    };
                    for (k, v) in &headers {
                        has_auth |= k.eq_ignore_ascii_case("authorization");
                        req = req.header(k, v);
                    }
                    if !has_auth {
                        req = req.header("Authorization", &format!("Bearer {KEY}"));
                    }
                    req.call()
                }
                _ => {
                    let mut req = if method == "PUT" {
                        agent.put(&url)
                    } else {
                        agent.post(&url)
                    };
                    for (k, v) in &headers {
                        has_auth |= k.eq_ignore_ascii_case("authorization");
                        req = req.header(k, v);
                    }
                    if !has_auth {
                        req = req.header("Authorization", &format!("Bearer {KEY}"));
                    }
                    match body {
                        Some(Value::String(raw)) => req
                            .header("Content-Type", "application/json")
                            .send(raw.as_bytes()),
                        Some(json) => req.send_json(json),
                        None => req.send_empty(),
                    }
                }
            }
            .unwrap();
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let text = response.into_body().read_to_string().unwrap_or_default();
            let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (status, json, headers)
        })
        .await
        .unwrap()
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (status, json, _) = self.request("POST", path, Some(body), &[]).await;
        (status, json)
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let (status, json, _) = self.request("GET", path, None, &[]).await;
        (status, json)
    }

    pub(crate) async fn delete(&self, path: &str) -> (u16, Value) {
        let (status, json, _) = self.request("DELETE", path, None, &[]).await;
        (status, json)
    }

    /// `GET /v1/messages/{id}`, read as the API's [`Message`] (asserts 200).
    pub(crate) async fn message(&self, id: &str) -> Message {
        let (status, message) = self.get(&format!("/v1/messages/{id}")).await;
        assert_eq!(status, 200, "{message:#}");
        typed(&message)
    }

    /// `POST /v1/messages` with `body`, which must be accepted: the answer
    /// read as the API's [`Accepted`] (asserts 202).
    pub(crate) async fn queue(&self, body: Value) -> Accepted {
        let (status, answer) = self.post("/v1/messages", body).await;
        assert_eq!(status, 202, "{answer:#}");
        typed(&answer)
    }

    /// Polls a message until `done` holds (or panics after `timeout`).
    pub(crate) async fn wait_for(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Message) -> bool,
    ) -> Message {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let message = self.message(id).await;
            if done(&message) {
                return message;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out; last seen: {message:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The sum of the `/metrics` samples of `name` whose labels include
    /// every one of `labels` (0 when there is none).
    pub(crate) async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (status, body, _) = self.request("GET", "/metrics", None, &[]).await;
        assert_eq!(status, 200, "{body}");
        let text = body.as_str().unwrap_or_default();
        let mut sum = 0.0;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (family, rest) = series.split_once('{').unwrap_or((series, ""));
            if family == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            {
                sum += value.parse::<f64>().unwrap();
            }
        }
        sum
    }

    /// Waits until this node has run `n` more alert evaluations than when
    /// called and no alert is queued or being sent: whatever those
    /// evaluations raised has then reached its channel. (No sleeping for a
    /// few periods and hoping they passed.)
    pub(crate) async fn alert_evaluations(&self, n: f64) {
        let from = self.metric("herald_alert_evaluations_total", &[]).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            // Evaluations first: what they queued is pending or done when
            // the pending figure is read after them.
            let done = self.metric("herald_alert_evaluations_total", &[]).await;
            let pending = self.metric("herald_alert_notifications_pending", &[]).await;
            if done >= from + n && pending == 0.0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{done} of {from} + {n} evaluations, {pending} pending"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the message reaches `status`.
    pub(crate) async fn wait_status(&self, id: &str, status: MessageStatus) -> Message {
        self.wait_for(id, Duration::from_secs(15), |m| m.status == status)
            .await
    }
}

/// An answer's JSON read as one of the API's types (panics, showing the
/// JSON, when it is not one).
#[track_caller]
pub(crate) fn typed<T: serde::de::DeserializeOwned>(json: &Value) -> T {
    match serde_json::from_value(json.clone()) {
        Ok(value) => value,
        Err(e) => panic!("not the API's type: {e}: {json:#}"),
    }
}

/// The kinds of a message's events, in order.
pub(crate) fn event_kinds(message: &Message) -> Vec<herald_api::EventKind> {
    message
        .events
        .iter()
        .flatten()
        .map(|event| event.kind)
        .collect()
}

fn config_text_for(relay: Option<&TestServer>, extra: &str) -> String {
    config_text(std::path::Path::new("{DIR}"), relay, extra)
}

/// A clock standing at the present (whole seconds), moved by the test only,
/// and the same clock as the service takes it.
pub(crate) fn manual_clock() -> (Arc<ManualClock>, SharedClock) {
    // The one reading of the machine's clock: where the fake one starts.
    #[allow(clippy::disallowed_methods)]
    let start = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let clock = Arc::new(ManualClock::new(start));
    (clock.clone(), clock)
}

/// `at` as RFC 3339, for `send_at`.
pub(crate) fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A small valid message to `to`.
pub(crate) fn message(to: &[&str]) -> Value {
    serde_json::json!({
        "from": "App <app@example.com>",
        "to": to,
        "subject": "Your code",
        "text": "424242",
    })
}

/// A local webhook receiver that records every JSON body it is sent.
pub(crate) async fn webhook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = Router::new().route(
        "/hook",
        post(move |body: axum::body::Bytes| {
            let record = record.clone();
            async move {
                let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                record.lock().unwrap().push(json);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// An `[alerts]` section with one channel, a webhook at `url`, and one
/// rule: the relay failing `min_count` times within five minutes
/// (evaluated every second; one alert per incident).
pub(crate) fn relay_alert_toml(url: &str, min_count: u32) -> String {
    format!(
        r#"
[alerts]
window = "5m"
evaluate_every = "1s"
send_backoff = "50ms"
send_timeout = "1s"

[[alerts.channels]]
name = "hook"
kind = "webhook"
url = "{url}"

[[alerts.rules]]
name = "relay-failing"
scope = "relay"
cooldown = "1h"
resolve_after = "1h"
tiers = [ {{ min_count = {min_count}, channels = ["hook"] }} ]
"#
    )
}
