//! `kill -9` of `herald serve` after messages were delivered and before
//! their webhooks were: the events wait in the store's outbox, and the
//! restarted node sends every one of them.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// A test of a real process waits by the machine's clock.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Herald, Posted, Setup, TempDir};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const MESSAGES: usize = 20;

/// A webhook receiver on a thread: answers 503 while `down`, else 204, and
/// records the `webhook-id` and body of every request it accepted.
struct Receiver {
    url: String,
    down: Arc<AtomicBool>,
    accepted: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let down = Arc::new(AtomicBool::new(true));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let (d, a) = (down.clone(), accepted.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (d, a) = (d.clone(), a.clone());
                std::thread::spawn(move || serve(stream, &d, &a));
            }
        });
        Receiver {
            url,
            down,
            accepted,
        }
    }
}

/// Answers the requests of one keep-alive connection.
fn serve(stream: TcpStream, down: &AtomicBool, accepted: &Mutex<Vec<(String, Value)>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let (mut length, mut id) = (0usize, String::new());
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "webhook-id" => id = value.trim().to_owned(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let status = if down.load(Ordering::SeqCst) {
            "503 Service Unavailable"
        } else {
            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
            accepted.lock().unwrap().push((id, json));
            "204 No Content"
        };
        let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nretry-after: 0\r\n\r\n");
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn kill_9_between_deliveries_and_their_webhooks_loses_no_event() {
    let dir = TempDir::new("webhook-crash");
    let (_runtime, relay) = support::slow_relay();
    let receiver = Receiver::start();
    let port = support::free_port();
    let setup = Setup {
        http_port: port,
        relay_port: relay.port(),
        concurrency: 4,
        lease: "30s",
        drain_timeout: "5s",
        data_timeout: "5s",
    };
    let config = support::write_config(dir.path(), &setup);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[webhooks]]\nname = \"app\"\nurl = \"{}\"\nsecret_env = \"WEBHOOK_SECRET\"\n\
         retry_initial_delay = \"100ms\"\nevents = [\"message.delivered\"]\n",
        receiver.url
    ));
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("herald.log");
    let env = [("RUST_LOG", "info"), ("WEBHOOK_SECRET", SECRET)];
    let herald = Herald::start_env(&[], &env, &config, port, &log);

    let agent = support::agent();
    let ids: Vec<String> = (0..MESSAGES)
        .map(|n| match support::post_message(&agent, &herald.base, n) {
            Posted::Accepted { id, .. } => id,
            other => panic!("not accepted: {other:?}"),
        })
        .collect();
    let open = support::wait_all_delivered(&agent, &herald.base, &ids, Duration::from_secs(30));
    assert!(open.is_empty(), "not delivered: {open:?}");
    // Delivered, and the endpoint has refused every event so far.
    assert!(receiver.accepted.lock().unwrap().is_empty());
    herald.kill();

    receiver.down.store(false, Ordering::SeqCst);
    let herald = Herald::start_env(&[], &env, &config, port, &log);
    let deadline = Instant::now() + Duration::from_secs(30);
    let wanted: BTreeSet<String> = ids.iter().cloned().collect();
    loop {
        let got: BTreeSet<String> = receiver
            .accepted
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, body)| body["type"] == "message.delivered")
            .filter_map(|(_, body)| body["data"]["id"].as_str().map(str::to_owned))
            .collect();
        if got == wanted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "events for {} of {MESSAGES} messages after the restart; log:\n{}",
            got.len(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let accepted = receiver.accepted.lock().unwrap().clone();
    let distinct: BTreeSet<&String> = accepted.iter().map(|(id, _)| id).collect();
    assert_eq!(distinct.len(), MESSAGES, "one webhook-id per event");
    herald.kill();
}
