//! Live reload of a real `herald serve`: SIGHUP with a new relay port
//! moves new deliveries there while a slow one finishes on the old relay;
//! SIGHUP with a broken file changes nothing; `herald reload` over the API
//! says what changed, or refuses a broken file with check-config's error.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// A test of a real process waits by the machine's clock.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use herald_testkit::{Fault, FaultRule, Phase, ServerConfig, TestServer};
use support::{API_KEY, Herald, Posted, Setup, TempDir};

/// Two testkit relays on a runtime of their own; the first holds its
/// first message's final reply for `slow_first` when given.
fn relays(slow_first: Option<Duration>) -> (tokio::runtime::Runtime, TestServer, TestServer) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut first = ServerConfig::default();
    if let Some(delay) = slow_first {
        first.faults = vec![FaultRule::times(Phase::DataDot, Fault::Delay(delay), 1)];
    }
    let a = runtime.block_on(TestServer::start(first)).unwrap();
    let b = runtime
        .block_on(TestServer::start(ServerConfig::default()))
        .unwrap();
    (runtime, a, b)
}

fn setup(http_port: u16, relay_port: u16) -> Setup {
    Setup {
        http_port,
        relay_port,
        concurrency: 4,
        lease: "30s",
        drain_timeout: "5s",
        data_timeout: "20s",
    }
}

/// `kill -HUP` (through kill(1): the tests use no libc).
fn hangup(herald: &Herald) {
    let status = Command::new("kill")
        .arg("-HUP")
        .arg(herald.pid().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -HUP failed: {status}");
}

/// The value of `herald_config_reloads_total{result}`.
fn reloads(herald: &Herald, result: &str) -> f64 {
    let text = support::agent()
        .get(format!("{}/metrics", herald.base))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    let series = format!("herald_config_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

/// Polls `done` until it holds or `limit` passes.
fn wait_until(limit: Duration, what: &str, log: &Path, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn post(herald: &Herald, n: usize) -> (String, String) {
    match support::post_message(&support::agent(), &herald.base, n) {
        Posted::Accepted { id, message_id } => (id, message_id),
        other => panic!("message {n} not accepted: {other:?}"),
    }
}

/// The Message-ID headers a relay received, in order.
fn received(relay: &TestServer) -> Vec<String> {
    relay
        .messages()
        .iter()
        .map(|m| support::message_id_of(&m.data).unwrap())
        .collect()
}

/// What `herald check-config` says about `file` (it must refuse it).
fn check_config_error(file: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("check-config")
        .arg(file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "check-config accepts the file");
    let text = String::from_utf8(out.stderr).unwrap();
    text.trim()
        .strip_prefix("error: ")
        .unwrap_or_else(|| panic!("check-config said {text:?}"))
        .to_owned()
}

fn herald_reload(herald: &Herald) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["reload", "--server", &herald.base, "--api-key", API_KEY])
        .env_remove("HERALD_API_KEY")
        .env_remove("HERALD_URL")
        .output()
        .unwrap()
}

/// A relay entry broken in a way only validation sees (valid TOML).
fn broken(text: &str) -> String {
    text.replace("tls = \"none\"", "tls = \"ssl\"")
}

#[test]
fn sighup_moves_new_deliveries_to_the_new_relay_while_a_slow_one_finishes() {
    let dir = TempDir::new("reload-sighup");
    let (_runtime, old, new) = relays(Some(Duration::from_secs(4)));
    let port = support::free_port();
    let config = support::write_config(dir.path(), &setup(port, old.port()));
    let log = dir.path().join("herald.log");
    let herald = Herald::start(&config, port, &log);

    // The first message reaches the old relay's final dot and waits there.
    let (first_id, first) = post(&herald, 0);
    wait_until(
        Duration::from_secs(10),
        "DATA at the old relay",
        &log,
        || {
            old.sessions()
                .iter()
                .any(|s| s.commands.iter().any(|c| c.verb == "DATA"))
        },
    );
    assert_eq!(old.message_count(), 0, "the first delivery is in flight");

    let text = std::fs::read_to_string(&config).unwrap();
    let moved = text.replace(
        &format!("port = {}", old.port()),
        &format!("port = {}", new.port()),
    );
    assert_ne!(text, moved);
    std::fs::write(&config, moved).unwrap();
    hangup(&herald);
    wait_until(Duration::from_secs(10), "the reload", &log, || {
        reloads(&herald, "applied") == 1.0
    });
    let agent = support::agent();
    assert_ne!(
        support::get_message(&agent, &herald.base, &first_id).status,
        herald_api::MessageStatus::Delivered,
        "the slow delivery was still in flight when the reload applied"
    );

    let later: Vec<(String, String)> = (1..=5).map(|n| post(&herald, n)).collect();
    let mut ids: Vec<String> = later.iter().map(|(id, _)| id.clone()).collect();
    ids.push(first_id.clone());
    let open = support::wait_all_delivered(&agent, &herald.base, &ids, Duration::from_secs(30));
    assert!(
        open.is_empty(),
        "not delivered: {open:?}; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // The in-flight message finished on the old relay, once; every new one
    // went to the new relay, once.
    assert_eq!(received(&old), vec![first]);
    let at_new = received(&new);
    assert_eq!(at_new.len(), 5, "{at_new:?}");
    let expected: BTreeSet<String> = later.into_iter().map(|(_, m)| m).collect();
    assert_eq!(at_new.into_iter().collect::<BTreeSet<_>>(), expected);
    let message = support::get_message(&agent, &herald.base, &first_id);
    assert_eq!(message.attempts, 1, "the slow delivery was not retried");
    assert_eq!(reloads(&herald, "refused"), 0.0);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("configuration reloaded"), "{logged}");
}

#[test]
fn sighup_with_a_broken_file_changes_nothing() {
    let dir = TempDir::new("reload-broken");
    let (_runtime, old, new) = relays(None);
    let port = support::free_port();
    let config = support::write_config(dir.path(), &setup(port, old.port()));
    let log = dir.path().join("herald.log");
    let herald = Herald::start(&config, port, &log);

    // Broken, and naming the other relay: nothing of it may apply.
    let text = std::fs::read_to_string(&config).unwrap();
    let bad = broken(&text.replace(
        &format!("port = {}", old.port()),
        &format!("port = {}", new.port()),
    ));
    std::fs::write(&config, &bad).unwrap();
    let expected = check_config_error(&config);
    hangup(&herald);
    wait_until(Duration::from_secs(10), "the refusal", &log, || {
        reloads(&herald, "refused") == 1.0
    });
    assert_eq!(reloads(&herald, "applied"), 0.0);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("configuration reload refused") && logged.contains(&expected),
        "the log names check-config's error {expected:?}:\n{logged}"
    );

    // Still serving, still through the old relay.
    let (id, message_id) = post(&herald, 1);
    let agent = support::agent();
    let open = support::wait_all_delivered(&agent, &herald.base, &[id], Duration::from_secs(20));
    assert!(open.is_empty(), "not delivered: {open:?}");
    assert_eq!(received(&old), vec![message_id]);
    assert_eq!(new.message_count(), 0);
}

#[test]
fn herald_reload_applies_a_good_file_and_refuses_a_broken_one_with_its_error() {
    let dir = TempDir::new("reload-api");
    let (_runtime, old, new) = relays(None);
    let port = support::free_port();
    let config = support::write_config(dir.path(), &setup(port, old.port()));
    let log = dir.path().join("herald.log");
    let herald = Herald::start(&config, port, &log);

    // The same file again: harmless.
    let out = herald_reload(&herald);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "reloaded: changed none\n"
    );

    // A broken file: exit status 2 and check-config's words, on the CLI
    // and in the API's problem.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, broken(&text)).unwrap();
    let expected = check_config_error(&config);
    let out = herald_reload(&herald);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!("error: {expected}")
    );
    let answer = support::agent()
        .post(format!("{}/v1/admin/reload", herald.base))
        .header("Authorization", &format!("Bearer {API_KEY}"))
        .send_empty()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 422);
    assert_eq!(
        answer
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let problem: herald_api::Problem =
        serde_json::from_str(&answer.into_body().read_to_string().unwrap()).unwrap();
    assert_eq!(problem.detail, expected);
    assert_eq!(problem.kind, "/problems/config-refused");

    // A good file with a new relay port and a new listen address: the
    // relay changes now, the address at the next restart.
    let good = text
        .replace(
            &format!("port = {}", old.port()),
            &format!("port = {}", new.port()),
        )
        .replace(
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{}", support::free_port()),
        );
    std::fs::write(&config, good).unwrap();
    let out = herald_reload(&herald);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "reloaded: changed relays\nrestart needed for: server.http_listen, server.node_id\n"
    );
    assert_eq!(reloads(&herald, "applied"), 2.0);
    assert_eq!(reloads(&herald, "refused"), 2.0);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("restart herald to apply them") && logged.contains("server.http_listen"),
        "{logged}"
    );

    // Served on the old address, delivered through the new relay.
    let (id, message_id) = post(&herald, 1);
    let agent = support::agent();
    let open = support::wait_all_delivered(&agent, &herald.base, &[id], Duration::from_secs(20));
    assert!(open.is_empty(), "not delivered: {open:?}");
    assert_eq!(received(&new), vec![message_id]);
    assert_eq!(old.message_count(), 0);
}
