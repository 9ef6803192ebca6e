//! What the process-level service tests share: a `herald serve` child
//! process that is killed when the test ends (even by a panic), its
//! configuration, and a small blocking HTTP client for the API.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part

use std::collections::HashMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use herald_api::{Accepted, Message, MessageStatus};
use serde_json::json;

/// The API key every test configuration accepts.
pub const API_KEY: &str = "process-test-key-0123456789abcdef";

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The parts of a test configuration that differ between tests.
#[derive(Debug, Clone)]
pub struct Setup {
    pub http_port: u16,
    pub relay_port: u16,
    pub concurrency: usize,
    pub lease: &'static str,
    pub drain_timeout: &'static str,
    pub data_timeout: &'static str,
}

/// Writes `herald.toml` into `dir` (the queue is `dir/herald.db`) and
/// returns its path.
pub fn write_config(dir: &Path, setup: &Setup) -> PathBuf {
    let url = format!("sqlite://{}", dir.join("herald.db").display());
    write_config_on(dir, "herald.toml", setup, &url)
}

/// Writes the configuration `name` into `dir` for a store at `url`, and
/// returns its path.
pub fn write_config_on(dir: &Path, name: &str, setup: &Setup, url: &str) -> PathBuf {
    let text = format!(
        r#"[server]
http_listen = "127.0.0.1:{http}"
drain_timeout = "{drain}"

[store]
url = "{url}"

[auth]
api_keys = ["{API_KEY}"]

[retry]
initial_delay = "200ms"
min_delay = "100ms"
max_delay = "1s"
max_attempts = 50
max_age = "1h"
jitter = "none"

[delivery]
concurrency = {concurrency}
connect_timeout = "2s"
command_timeout = "{data}"
data_timeout = "{data}"
lease = "{lease}"
poll_interval = "100ms"
helo_name = "herald.test"

[[relays]]
name = "relay"
host = "127.0.0.1"
port = {relay}
tls = "none"
max_connections = {concurrency}
"#,
        http = setup.http_port,
        drain = setup.drain_timeout,
        concurrency = setup.concurrency,
        data = setup.data_timeout,
        lease = setup.lease,
        relay = setup.relay_port,
    );
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the configuration");
    path
}

/// A database of its own on the machine's PostgreSQL (127.0.0.1:5432,
/// user postgres, trust authentication), dropped with
/// everything in it when this is dropped.
#[derive(Debug)]
pub struct PgDatabase {
    name: String,
    pub url: String,
}

impl PgDatabase {
    pub fn create(prefix: &str) -> PgDatabase {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "herald_{prefix}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        psql(&format!("DROP DATABASE IF EXISTS {name}"));
        psql(&format!("CREATE DATABASE {name}"));
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}?sslmode=disable");
        PgDatabase { name, url }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// Runs one statement as the `postgres` user on the `test` database.
pub fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c", sql])
        .output()
        .expect("run psql (PostgreSQL's client)");
    assert!(
        out.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A running `herald serve`; killed (SIGKILL) and reaped on drop unless it
/// has already exited.
#[derive(Debug)]
pub struct Herald {
    child: Option<Child>,
    pub base: String,
    pub addr: SocketAddr,
}

impl Herald {
    /// Starts `herald serve --config config`, appending its log (stderr
    /// and stdout) to `log`, and waits until `/healthz` answers.
    pub fn start(config: &Path, port: u16, log: &Path) -> Herald {
        Self::start_with(&[], config, port, log)
    }

    /// As [`Herald::start`], with global flags (such as `--log-format json`)
    /// given before `serve`.
    pub fn start_with(flags: &[&str], config: &Path, port: u16, log: &Path) -> Herald {
        Self::start_env(flags, &[("RUST_LOG", "info")], config, port, log)
    }

    /// As [`Herald::start_with`], with environment variables set for the
    /// process (`RUST_LOG` among them; `info` unless given).
    pub fn start_env(
        flags: &[&str],
        env: &[(&str, &str)],
        config: &Path,
        port: u16,
        log: &Path,
    ) -> Herald {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the log file");
        let err = out.try_clone().expect("clone the log file");
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(flags)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env_remove("HERALD_API_KEYS")
            .env_remove("HERALD_STORE_URL")
            .env_remove("HERALD_HTTP_LISTEN")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start herald serve");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut herald = Herald {
            child: Some(child),
            base: format!("http://{addr}"),
            addr,
        };
        herald.wait_healthy(log);
        herald
    }

    fn wait_healthy(&mut self, log: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let agent = agent();
        loop {
            if let Some(status) = self.child_mut().try_wait().expect("poll herald") {
                panic!(
                    "herald exited before it served ({status}); log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if let Ok(response) = agent.get(format!("{}/healthz", self.base)).call()
                && response.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "herald did not answer /healthz within 20 s; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("herald is running")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("herald is running").id()
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("herald is running");
        child.kill().expect("SIGKILL herald");
        child.wait().expect("reap herald");
    }

    /// Sends SIGTERM (through kill(1): the tests use no libc).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits up to `limit` for the process to exit; `None` if it did not.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child_mut().try_wait().expect("poll herald") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A blocking HTTP client that hands back every status (no error for
/// 4xx/5xx) and gives up on a silent server.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// The answer to one `POST /v1/messages`.
#[derive(Debug)]
pub enum Posted {
    /// `202`: the id and the Message-ID header the message will carry.
    Accepted { id: String, message_id: String },
    /// Another status (with the body), e.g. `503`.
    Refused(u16, String),
    /// No HTTP answer at all (connection refused or reset).
    Failed(String),
}

/// Posts message number `n` (the body names `n`, so every message differs).
pub fn post_message(agent: &ureq::Agent, base: &str, n: usize) -> Posted {
    let body = json!({
        "from": "App <app@example.com>",
        "to": [format!("user{n}@example.com")],
        "subject": format!("process test message {n}"),
        "text": format!("This is message number {n}.\nIt exists to be delivered exactly once, or at least once.\n"),
        "tags": ["process-test"],
    });
    let answer = agent
        .post(format!("{base}/v1/messages"))
        .header("Authorization", &format!("Bearer {API_KEY}"))
        .send_json(&body);
    match answer {
        Err(error) => Posted::Failed(error.to_string()),
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.into_body().read_to_string().unwrap_or_default();
            if status == 202 {
                let accepted: Accepted =
                    serde_json::from_str(&text).expect("a 202 carries the API's Accepted");
                Posted::Accepted {
                    id: accepted.id,
                    message_id: accepted.message_id,
                }
            } else {
                Posted::Refused(status, text)
            }
        }
    }
}

/// `GET /v1/messages/{id}` as the API's [`Message`] (panics on anything
/// but 200).
pub fn get_message(agent: &ureq::Agent, base: &str, id: &str) -> Message {
    let response = agent
        .get(format!("{base}/v1/messages/{id}"))
        .header("Authorization", &format!("Bearer {API_KEY}"))
        .call()
        .expect("GET a message");
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().unwrap_or_default();
    assert_eq!(status, 200, "GET /v1/messages/{id}: {text}");
    serde_json::from_str(&text).expect("a message is the API's Message")
}

/// Polls until every id in `ids` is `delivered`, or `limit` passes; returns
/// the ids that are not, with their last status.
pub fn wait_all_delivered(
    agent: &ureq::Agent,
    base: &str,
    ids: &[String],
    limit: Duration,
) -> HashMap<String, String> {
    let deadline = Instant::now() + limit;
    let mut open: HashMap<String, String> =
        ids.iter().map(|id| (id.clone(), String::new())).collect();
    loop {
        let keys: Vec<String> = open.keys().cloned().collect();
        for id in keys {
            let status = get_message(agent, base, &id).status;
            if status == MessageStatus::Delivered {
                open.remove(&id);
            } else {
                open.insert(id, status.to_string());
            }
        }
        if open.is_empty() || Instant::now() >= deadline {
            return open;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `Message-ID` header of a message as the relay received it.
pub fn message_id_of(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    text.split("\r\n")
        .take_while(|line| !line.is_empty())
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("message-id")
                .then(|| value.trim().to_owned())
        })
}

/// Whether a TCP connection to `addr` is refused right now.
pub fn refuses_connections(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
}

/// A fresh directory under the system's temp dir, removed on drop unless
/// the test failed (then its logs and database are kept for a look).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "herald-{prefix}-{}-{}",
            std::process::id(),
            herald_message::new_id()
        ));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for a look", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A testkit relay that answers every command after 20 ms (slow enough
/// that deliveries are in flight whenever a test strikes), on a runtime of
/// its own so the test itself can be plain blocking code. Keep the runtime
/// alive as long as the relay.
pub fn slow_relay() -> (tokio::runtime::Runtime, herald_testkit::TestServer) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the relay");
    let relay = runtime
        .block_on(herald_testkit::TestServer::start(
            herald_testkit::ServerConfig {
                reply_delay: Some(Duration::from_millis(20)),
                ..herald_testkit::ServerConfig::default()
            },
        ))
        .expect("start the testkit relay");
    (runtime, relay)
}
