//! The trace id of a request reaches every JSON log line about its message:
//! `herald serve` as a real process, logs read from its stderr.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "trace-test-key-0123456789";
const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

struct Killer(Option<Child>);

impl Drop for Killer {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

#[test]
fn every_log_line_about_a_message_carries_its_trace_id() {
    let dir = std::env::temp_dir().join(format!("herald-trace-logs-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let config = dir.join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhttp_listen = \"127.0.0.1:{port}\"\ndrain_timeout = \"2s\"\n\
             [store]\nurl = \"sqlite://{d}/herald.db\"\n[auth]\napi_keys = [\"{KEY}\"]\n\
             [delivery]\npoll_interval = \"50ms\"\n[outbox]\ndir = \"{d}/outbox\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "--log-format",
            "json",
            "serve",
            "--config",
            config.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Killer(Some(child));
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while agent().get(&format!("{base}/healthz")).call().is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "herald did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = serde_json::json!({"from": "a@example.com", "to": ["b@example.com"], "text": "x"});
    let mut answer = agent()
        .post(&format!("{base}/v1/messages"))
        .header("Authorization", &format!("Bearer {KEY}"))
        .header("traceparent", &format!("00-{TRACE}-b7ad6b7169203331-01"))
        .send_json(body)
        .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    let created: serde_json::Value = answer.body_mut().read_json().unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    loop {
        let mut got = agent()
            .get(&format!("{base}/v1/messages/{id}"))
            .header("Authorization", &format!("Bearer {KEY}"))
            .call()
            .unwrap();
        let message: serde_json::Value = got.body_mut().read_json().unwrap();
        if message["status"] == "delivered" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not delivered: {message}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut child = guard.0.take().unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        child.wait().unwrap().success(),
        "herald did not exit cleanly"
    );
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();

    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let about: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l.to_string().contains(&id))
        .collect();
    assert!(
        about.len() >= 2,
        "expected queued and attempt lines about {id}: {stderr}"
    );
    for line in about {
        let trace = line["trace_id"]
            .as_str()
            .or_else(|| line["span"]["trace_id"].as_str());
        assert_eq!(
            trace,
            Some(TRACE),
            "a line about {id} without its trace id: {line}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
