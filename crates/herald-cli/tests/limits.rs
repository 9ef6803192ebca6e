//! `herald serve` against hostile clients: request bodies built to blow up
//! memory get small answers while the process's peak memory stays
//! bounded; half-sent requests are cut off by the timeouts while others
//! are served; and SIGTERM exits within drain_timeout with such clients
//! still connected.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// These tests run the binary in its own process: they wait on real time
// (for conditions, with deadlines), so they read the machine's clocks.
#![allow(clippy::disallowed_methods)]

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{API_KEY, Herald, TempDir};

/// Peak resident memory the bombs may drive herald to, in kB. Before the
/// fix, 11.9 million empty recipients took 2.9 GB.
const MAX_PEAK_KB: u64 = 256 * 1024;

fn config(dir: &Path, port: u16, server: &str) -> std::path::PathBuf {
    let path = dir.join("herald.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nhttp_listen = \"127.0.0.1:{port}\"\n{server}\n[store]\nurl = \"sqlite://{db}\"\n\
             [auth]\napi_keys = [\"{API_KEY}\"]\n[outbox]\ndir = \"{outbox}\"\n",
            db = dir.join("herald.db").display(),
            outbox = dir.join("outbox").display(),
        ),
    )
    .unwrap();
    path
}

fn peak_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

fn post(base: &str, path: &str, body: Vec<u8>) -> (u16, String) {
    let response = support::agent()
        .post(format!("{base}{path}"))
        .header("Authorization", &format!("Bearer {API_KEY}"))
        .header("Content-Type", "application/json")
        .send(&body[..])
        .unwrap();
    let status = response.status().as_u16();
    (status, response.into_body().read_to_string().unwrap())
}

#[test]
fn memory_bombs_get_small_answers_and_a_bounded_peak() {
    let dir = TempDir::new("bombs");
    let port = support::free_port();
    let config = config(dir.path(), port, "");
    let log = dir.path().join("herald.log");
    let herald = Herald::start(&config, port, &log);

    // 11 million empty recipients: 33 MB, under the body limit.
    let mut body = br#"{"from": "a@example.com", "text": "x", "to": ["""#.to_vec();
    body.extend(std::iter::repeat_n(&b",\"\""[..], 11_000_000).flatten());
    body.extend_from_slice(b"]}");
    let (status, answer) = post(&herald.base, "/v1/messages", body);
    assert_eq!(status, 400, "{answer}");
    assert!(answer.len() < 1024, "an answer of {} bytes", answer.len());
    assert!(answer.contains("more than 10000 items"), "{answer}");

    // 100 recipients, every one invalid: at most 20 errors are listed.
    let bad: Vec<String> = (0..100).map(|i| format!("\"bad{i}\"")).collect();
    let body = format!(
        r#"{{"from": "a@example.com", "text": "x", "to": [{}]}}"#,
        bad.join(",")
    );
    let (status, answer) = post(&herald.base, "/v1/messages", body.into_bytes());
    assert_eq!(status, 422, "{answer}");
    assert!(answer.len() < 4096, "an answer of {} bytes", answer.len());

    // A batch of 5 million empty objects: refused at item 1001.
    let mut body = br#"{"messages": [{}"#.to_vec();
    body.extend(std::iter::repeat_n(&b",{}"[..], 5_000_000).flatten());
    body.extend_from_slice(b"]}");
    let (status, answer) = post(&herald.base, "/v1/messages/batch", body);
    assert_eq!(status, 413, "{answer}");
    assert!(answer.len() < 1024, "an answer of {} bytes", answer.len());

    let peak = peak_kb(herald.pid());
    assert!(
        peak < MAX_PEAK_KB,
        "peak resident memory {peak} kB (bound {MAX_PEAK_KB} kB)"
    );
}

/// Opens a connection and sends the start of a request, never the end.
fn half_sent(addr: std::net::SocketAddr, body: bool) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    let start: &[u8] = if body {
        b"POST /v1/messages HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"from\""
    } else {
        b"POST /v1/messages HTTP/1.1\r\nHost: h\r\nContent-Le"
    };
    stream.write_all(start).unwrap();
    stream
}

/// Whether the server has closed `stream` (a read ends or fails at once).
fn closed(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // An answer (the 400 for a late body) may come first.
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn half_sent_requests_are_closed_after_their_timeout_while_others_are_served() {
    let dir = TempDir::new("slow");
    let port = support::free_port();
    let config = config(
        dir.path(),
        port,
        "header_read_timeout = \"1s\"\nbody_read_timeout = \"1s\"\nidle_timeout = \"1s\"\nmax_connections = 400",
    );
    let log = dir.path().join("herald.log");
    let herald = Herald::start(&config, port, &log);
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|i| half_sent(herald.addr, i % 3 == 0))
        .collect();
    // Idle connections too: connected, nothing sent.
    slow.extend((0..50).map(|_| TcpStream::connect(herald.addr).unwrap()));
    // The service answers meanwhile.
    let agent = support::agent();
    let response = agent
        .get(format!("{}/healthz", herald.base))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(matches!(
        support::post_message(&agent, &herald.base, 1),
        support::Posted::Accepted { .. }
    ));
    let deadline = started + Duration::from_secs(15);
    let mut first_close = None;
    while !slow.is_empty() {
        let open = slow.len();
        slow.retain_mut(|s| !closed(s));
        if slow.len() < open {
            first_close.get_or_insert_with(|| started.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "{} slow connections still open after 15 s",
            slow.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // None was cut before its timeout.
    assert!(started.elapsed() >= Duration::from_millis(900));
    let first = first_close.unwrap_or_default();
    assert!(
        first >= Duration::from_millis(900),
        "a slow connection was cut after {first:?}"
    );
    let response = agent
        .get(format!("{}/healthz", herald.base))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[test]
fn sigterm_with_slow_clients_connected_exits_within_drain_timeout() {
    let dir = TempDir::new("slow-sigterm");
    let port = support::free_port();
    // Timeouts far longer than the test: only the drain deadline ends them.
    let config = config(
        dir.path(),
        port,
        "drain_timeout = \"2s\"\nheader_read_timeout = \"5m\"\nbody_read_timeout = \"5m\"\nidle_timeout = \"5m\"",
    );
    let log = dir.path().join("herald.log");
    let mut herald = Herald::start(&config, port, &log);
    let slow: Vec<TcpStream> = (0..50)
        .map(|i| half_sent(herald.addr, i % 2 == 0))
        .collect();
    // Every one of them is being served (accepted, its bytes read).
    let response = support::agent()
        .get(format!("{}/healthz", herald.base))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    let signalled = Instant::now();
    herald.terminate();
    let status = herald.wait_exit(Duration::from_secs(10));
    let took = signalled.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "herald did not exit 0 within 10 s of SIGTERM ({status:?}); log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        took < Duration::from_secs(4),
        "exit took {took:?} (drain_timeout 2s)"
    );
    drop(slow);
}
