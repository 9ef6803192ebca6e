//! `herald queue` against a running `herald serve`: it lists, shows and
//! cancels through the HTTP API, reading the answers as the API's types,
//! and reports the server's problems as one line with a failing status.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// The binary runs in its own process, on the machine's clock: a message
// is scheduled an hour from that clock's now.
#![allow(clippy::disallowed_methods)]

mod support;

use std::process::{Command, Output};

use herald_api::{Message, MessageStatus};
use support::{API_KEY, Herald, TempDir, agent, free_port, get_message};

/// Runs `herald queue --server base --api-key key ARGS`.
fn queue(base: &str, key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("queue")
        .args(["--server", base, "--api-key", key])
        .args(args)
        .env_remove("HERALD_URL")
        .env_remove("HERALD_API_KEY")
        .output()
        .expect("run herald queue")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Posts a message to `to` (scheduled an hour ahead when `later`); its id.
fn post(base: &str, to: &str, later: bool) -> String {
    let mut body = serde_json::json!({"from": "a@example.com", "to": [to], "text": "x"});
    if later {
        let at = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        body["send_at"] = at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
            .into();
    }
    let mut answer = agent()
        .post(format!("{base}/v1/messages"))
        .header("Authorization", &format!("Bearer {API_KEY}"))
        .send_json(body)
        .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    let accepted: herald_api::Accepted = answer.body_mut().read_json().unwrap();
    accepted.id
}

#[test]
fn queue_lists_shows_and_cancels_through_the_api() {
    let dir = TempDir::new("queue-cli");
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
    let herald = Herald::start(&config, port, &log);
    let base = herald.base.clone();

    let now = post(&base, "now@example.com", false);
    let later = post(&base, "later@example.com", true);
    let delivered = support::wait_all_delivered(
        &agent(),
        &base,
        std::slice::from_ref(&now),
        std::time::Duration::from_secs(20),
    );
    assert!(delivered.is_empty(), "not delivered: {delivered:?}");

    // The table: a header, then newest first, with status and recipient.
    let list = stdout(&queue(&base, API_KEY, &["list"]));
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("id "), "{list}");
    assert_eq!(lines.len(), 3, "{list}");
    assert!(lines[1].starts_with(&later), "{list}");
    assert!(lines[1].contains(" scheduled "), "{list}");
    assert!(lines[1].ends_with("later@example.com"), "{list}");
    assert!(lines[2].starts_with(&now), "{list}");
    assert!(lines[2].contains(" delivered "), "{list}");

    // A filter.
    let list = stdout(&queue(&base, API_KEY, &["list", "--status", "delivered"]));
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(lines[1].starts_with(&now), "{list}");

    // Pages: the next one is named, and its cursor leads to it.
    let list = stdout(&queue(&base, API_KEY, &["list", "--limit", "1"]));
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[1].starts_with(&later), "{list}");
    let cursor = lines[2].strip_prefix("next page: --cursor ").expect(&list);
    let list = stdout(&queue(
        &base,
        API_KEY,
        &["list", "--limit", "1", "--cursor", cursor],
    ));
    assert!(list.lines().nth(1).unwrap().starts_with(&now), "{list}");

    // show prints the message as the API's JSON, history included.
    let shown: Message = serde_json::from_str(&stdout(&queue(&base, API_KEY, &["show", &now])))
        .expect("show prints a message");
    assert_eq!(shown, get_message(&agent(), &base, &now));
    assert!(shown.events.is_some_and(|events| events.len() >= 3));

    // cancel stops the scheduled one and prints it.
    let cancelled: Message =
        serde_json::from_str(&stdout(&queue(&base, API_KEY, &["cancel", &later]))).unwrap();
    assert_eq!(cancelled.status, MessageStatus::Cancelled);
    assert_eq!(
        get_message(&agent(), &base, &later).status,
        MessageStatus::Cancelled
    );

    // The server's problems: one line with the status and the detail.
    let failed = queue(&base, API_KEY, &["retry", &now]);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("409: not allowed while the message is delivered"),
        "{stderr}"
    );
    let failed = queue(&base, API_KEY, &["show", "01ARZ3NDEKTSV4RRFFQ69G5FAV"]);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("404: no message with that id"), "{stderr}");
    let failed = queue(&base, "not-the-key-0123456789", &["list"]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("401: "));

    // A status the API does not know is refused before any request.
    let failed = queue(&base, API_KEY, &["list", "--status", "bounced"]);
    assert_eq!(failed.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("unknown status \"bounced\""),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    drop(herald);
}
