//! Live reload in process, over real sockets: a reload asked for on the
//! channel (as SIGHUP asks) or over `POST /v1/admin/reload` replaces the
//! API keys and limits for the next request, on a connection that stays
//! open; a refused file leaves them as they were.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{KEY, config_text, temp_dir};
use herald_policy::SystemClock;
use herald_server::config::Config;
use herald_server::reload::ConfigSource;
use herald_server::{Reload, ServeError, open_store, serve_reloadable};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

const NEW_KEY: &str = "reloaded-key-0123456789abcdef";

struct Served {
    base: String,
    file: PathBuf,
    ask: mpsc::Sender<&'static str>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

async fn start(text: &str) -> Served {
    let dir = temp_dir();
    let file = dir.join("herald.toml");
    std::fs::write(&file, text.replace("{DIR}", &dir.display().to_string())).unwrap();
    let path = file.clone();
    let source: ConfigSource = Arc::new(move || Config::load(&path));
    let config = source().unwrap();
    let store = open_store(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = listener.local_addr().unwrap().to_string();
    let (ask, requests) = mpsc::channel(1);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_reloadable(
        config,
        store,
        listener,
        async move {
            let _ = stopped.await;
        },
        SystemClock::shared(),
        Some(Reload { source, requests }),
    ));
    Served {
        base,
        file,
        ask,
        stop,
        task,
    }
}

/// One HTTP/1.1 connection kept open across requests.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    fn open(addr: &str) -> Connection {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Connection {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    /// Sends one request and reads its answer: status and JSON body. Panics
    /// if the server closed the connection.
    fn call(&mut self, method: &str, path: &str, key: &str, body: Option<&Value>) -> (u16, Value) {
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: herald\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        self.writer.write_all(request.as_bytes()).unwrap();
        let mut line = String::new();
        assert!(
            self.reader.read_line(&mut line).unwrap() > 0,
            "the connection was closed"
        );
        let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}

fn batch(n: usize) -> Value {
    let messages: Vec<Value> = (0..n)
        .map(|i| common::message(&[&format!("user{i}@example.com")]))
        .collect();
    json!({ "messages": messages })
}

/// Polls `done` on blocking threads until it holds or 10 s pass.
async fn eventually(what: &str, done: impl Fn() -> bool + Send + Sync + 'static) {
    let done = Arc::new(done);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let check = Arc::clone(&done);
        if tokio::task::spawn_blocking(move || check()).await.unwrap() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_limits_change_for_the_next_request_on_an_open_connection() {
    let text = config_text(std::path::Path::new("{DIR}"), None, "");
    let served = start(&text).await;
    let base = served.base.clone();
    let mut conn = tokio::task::spawn_blocking(move || {
        let mut conn = Connection::open(&base);
        let (status, _) = conn.call("GET", "/v1/messages", KEY, None);
        assert_eq!(status, 200);
        let (status, _) = conn.call("GET", "/v1/messages", NEW_KEY, None);
        assert_eq!(status, 401);
        conn
    })
    .await
    .unwrap();

    // A new key instead of the old one, and batches of at most 2.
    let changed = text
        .replace(KEY, NEW_KEY)
        .replace("[retry]", "[limits]\nmax_batch = 2\n[retry]");
    let dir = served.file.parent().unwrap().display().to_string();
    std::fs::write(&served.file, changed.replace("{DIR}", &dir)).unwrap();
    served.ask.send("test").await.unwrap();
    let base = served.base.clone();
    eventually("the new key", move || {
        let mut probe = Connection::open(&base);
        probe.call("GET", "/v1/messages", NEW_KEY, None).0 == 200
    })
    .await;

    conn = tokio::task::spawn_blocking(move || {
        // The same connection: the old key is refused now, the new one
        // taken, and the new batch limit applies.
        let (status, problem) = conn.call("GET", "/v1/messages", KEY, None);
        assert_eq!(status, 401, "{problem}");
        let (status, problem) = conn.call("POST", "/v1/messages/batch", NEW_KEY, Some(&batch(3)));
        assert_eq!(status, 413, "{problem}");
        let (status, answer) = conn.call("POST", "/v1/messages/batch", NEW_KEY, Some(&batch(2)));
        assert_eq!(status, 200, "{answer}");
        conn
    })
    .await
    .unwrap();

    // A broken file over the API: 422 with the error, and nothing changes.
    let good = std::fs::read_to_string(&served.file).unwrap();
    std::fs::write(
        &served.file,
        good.replace("max_batch = 2", "max_batch = \"two\""),
    )
    .unwrap();
    let expected = Config::load(&served.file).unwrap_err().to_string();
    let file = served.file.clone();
    tokio::task::spawn_blocking(move || {
        let (status, problem) = conn.call("POST", "/v1/admin/reload", NEW_KEY, None);
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["type"], "/problems/config-refused");
        assert_eq!(problem["detail"], expected.as_str());
        let (status, _) = conn.call("GET", "/v1/messages", NEW_KEY, None);
        assert_eq!(status, 200, "the keys in force stay");
        let (status, _) = conn.call("POST", "/v1/messages/batch", NEW_KEY, Some(&batch(3)));
        assert_eq!(status, 413, "the limits in force stay");
        // The good file again: it is what runs, so nothing changes.
        std::fs::write(&file, good).unwrap();
        let (status, answer) = conn.call("POST", "/v1/admin/reload", NEW_KEY, None);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer,
            json!({"result": "applied", "changed": [], "restart_needed": []})
        );
    })
    .await
    .unwrap();
    served.stop.send(()).unwrap();
    served.task.await.unwrap().unwrap();
}

/// A larger `max_message_bytes` applies to the next body at once: the
/// HTTP body cap follows the limits in force, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_message_size_takes_bodies_past_the_old_cap_at_once() {
    let text = config_text(
        std::path::Path::new("{DIR}"),
        None,
        "[limits]\nmax_message_bytes = 10000\n",
    );
    let served = start(&text).await;
    // Past the start-up cap (4/3 of 10 000 bytes plus 1 MiB), within the
    // raised one.
    let mut message = common::message(&["big@example.com"]);
    message["text"] = json!("x".repeat(1_200_000));
    let raised = text.replace("max_message_bytes = 10000", "max_message_bytes = 4194304");
    let dir = served.file.parent().unwrap().display().to_string();
    std::fs::write(&served.file, raised.replace("{DIR}", &dir)).unwrap();
    let base = served.base.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = Connection::open(&base);
        let (status, answer) = conn.call("POST", "/v1/admin/reload", KEY, None);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["restart_needed"], json!([]), "{answer}");
        let (status, answer) = conn.call("POST", "/v1/messages", KEY, Some(&message));
        assert_eq!(status, 202, "{answer}");
    })
    .await
    .unwrap();
    served.stop.send(()).unwrap();
    served.task.await.unwrap().unwrap();
}
