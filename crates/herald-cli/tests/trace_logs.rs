//! The trace id of a request reaches every JSON log line about its message:
//! `herald serve` as a real process, logs read from its output.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// These tests run the binary in its own process: they wait on real time
// (for conditions, with deadlines), so they read the machine's clocks.
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::{Duration, Instant};

use support::{API_KEY, Herald, TempDir, agent, free_port, get_message};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

#[test]
fn every_log_line_about_a_message_carries_its_trace_id() {
    let dir = TempDir::new("trace-logs");
    let port = free_port();
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhttp_listen = \"127.0.0.1:{port}\"\ndrain_timeout = \"2s\"\n\
             [store]\nurl = \"sqlite://{d}/herald.db\"\n[auth]\napi_keys = [\"{API_KEY}\"]\n\
             [delivery]\npoll_interval = \"50ms\"\n[outbox]\ndir = \"{d}/outbox\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let log = dir.path().join("herald.log");
    let mut herald = Herald::start_with(&["--log-format", "json"], &config, port, &log);

    let agent = agent();
    let body = serde_json::json!({"from": "a@example.com", "to": ["b@example.com"], "text": "x"});
    let mut answer = agent
        .post(format!("{}/v1/messages", herald.base))
        .header("Authorization", &format!("Bearer {API_KEY}"))
        .header("traceparent", &format!("00-{TRACE}-b7ad6b7169203331-01"))
        .send_json(body)
        .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    let created: serde_json::Value = answer.body_mut().read_json().unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    while get_message(&agent, &herald.base, &id).status != herald_api::MessageStatus::Delivered {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{id} not delivered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    herald.terminate();
    let status = herald
        .wait_exit(Duration::from_secs(10))
        .expect("herald exits");
    assert!(status.success(), "herald did not exit cleanly: {status}");

    let output = std::fs::read_to_string(&log).unwrap();
    let about: Vec<serde_json::Value> = output
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .filter(|l: &serde_json::Value| l.to_string().contains(&id))
        .collect();
    assert!(
        about.len() >= 2,
        "expected queued and attempt lines about {id}: {output}"
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
}
