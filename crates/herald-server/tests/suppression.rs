//! The suppression list end to end over real sockets: a hard bounce puts
//! the address on the list and the next message's RCPT never reaches the
//! testkit; a policy rejection does not; entries are added, listed and
//! removed through the API, and removal lets mail flow again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Herald, message};
use herald_testkit::{ServerConfig, TestServer};
use serde_json::{Value, json};

async fn relay() -> TestServer {
    TestServer::start(ServerConfig::default()).await.unwrap()
}

/// How many RCPT commands for `address` the testkit has seen.
fn rcpts_for(smtp: &TestServer, address: &str) -> usize {
    smtp.sessions()
        .iter()
        .flat_map(|s| s.commands.clone())
        .filter(|c| c.verb.eq_ignore_ascii_case("RCPT") && c.line.contains(address))
        .count()
}

fn recipient<'a>(message: &'a Value, address: &str) -> &'a Value {
    message["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == address)
        .unwrap_or_else(|| panic!("no recipient {address} in {message:#}"))
}

async fn send(herald: &Herald, to: &[&str]) -> String {
    let (status, created) = herald.post("/v1/messages", message(to)).await;
    assert_eq!(status, 202, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_bounce_suppresses_and_the_next_message_never_reaches_the_relay() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let dead = "rcpt550.gone@example.com";
    let first = send(&herald, &[dead]).await;
    let failed = herald.wait_status(&first, "failed").await;
    assert_eq!(recipient(&failed, dead)["class"], "invalid_recipient");
    let attempt = failed["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "attempt")
        .unwrap();
    assert_eq!(attempt["class"], "invalid_recipient");

    let (status, entry) = herald.get(&format!("/v1/suppressions/{dead}")).await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["reason"], "bounce");
    assert_eq!(entry["message"], first.as_str());
    assert_eq!(entry["response"], "550 5.1.1 user unknown");
    assert_eq!(rcpts_for(&smtp, "rcpt550.gone"), 1);

    // The next message: the suppressed address is not sent to, the other
    // recipient is, and the message counts as delivered.
    let second = send(&herald, &[dead, "bob@example.com"]).await;
    let done = herald.wait_status(&second, "delivered").await;
    assert_eq!(recipient(&done, dead)["status"], "suppressed");
    assert_eq!(recipient(&done, "bob@example.com")["status"], "delivered");
    assert_eq!(rcpts_for(&smtp, "rcpt550.gone"), 1, "no RCPT for it again");

    // A message to nobody but suppressed addresses fails without a relay.
    let third = send(&herald, &[dead]).await;
    let nobody = herald.wait_status(&third, "failed").await;
    assert_eq!(recipient(&nobody, dead)["status"], "suppressed");
    assert_eq!(rcpts_for(&smtp, "rcpt550.gone"), 1);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_rejection_does_not_suppress() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    // rcpt554: "554 5.7.1 relay access denied", a policy refusal.
    let blocked = "rcpt554.customer@example.com";
    let first = send(&herald, &[blocked]).await;
    let failed = herald.wait_status(&first, "failed").await;
    assert_eq!(recipient(&failed, blocked)["class"], "policy");
    let (status, _) = herald.get(&format!("/v1/suppressions/{blocked}")).await;
    assert_eq!(status, 404);
    let second = send(&herald, &[blocked]).await;
    herald.wait_status(&second, "failed").await;
    assert_eq!(rcpts_for(&smtp, "rcpt554.customer"), 2, "tried again");
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suppressions_are_added_listed_and_removed_through_the_api() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let (status, answer) = herald
        .post(
            "/v1/suppressions",
            json!({"addresses": ["Carol@Example.ORG", "not an address", "dave@example.net"],
                   "reason": "manual"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["status"], "added");
    assert_eq!(results[0]["suppression"]["address"], "Carol@example.org");
    assert_eq!(results[1]["status"], "invalid");
    assert!(results[1]["error"].is_string());
    assert_eq!(results[2]["status"], "added");
    let (_, again) = herald
        .post(
            "/v1/suppressions",
            json!({"addresses": ["Carol@example.org"]}),
        )
        .await;
    assert_eq!(again["results"][0]["status"], "exists");

    let (status, list) = herald.get("/v1/suppressions?reason=manual&limit=1").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["suppressions"].as_array().unwrap().len(), 1);
    let cursor = list["next_cursor"].as_str().expect("a second page");
    let (_, rest) = herald
        .get(&format!(
            "/v1/suppressions?reason=manual&limit=1&cursor={}",
            cursor.replace('@', "%40")
        ))
        .await;
    let mut seen: Vec<String> = [&list, &rest]
        .iter()
        .flat_map(|page| page["suppressions"].as_array().unwrap().clone())
        .map(|e| e["address"].as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    assert_eq!(seen, ["Carol@example.org", "dave@example.net"]);
    assert_eq!(rest["next_cursor"], Value::Null);
    let (status, _) = herald.get("/v1/suppressions?reason=bogus").await;
    assert_eq!(status, 400);

    let id = send(&herald, &["Carol@example.org"]).await;
    let failed = herald.wait_status(&id, "failed").await;
    assert_eq!(
        recipient(&failed, "Carol@example.org")["status"],
        "suppressed"
    );
    assert_eq!(smtp.message_count(), 0);

    let (status, removed) = herald.delete("/v1/suppressions/carol@EXAMPLE.org").await;
    assert_eq!(status, 404, "the local part keeps its case: {removed}");
    let (status, removed) = herald.delete("/v1/suppressions/Carol@example.org").await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["reason"], "manual");
    let (status, _) = herald.get("/v1/suppressions/Carol@example.org").await;
    assert_eq!(status, 404);

    let id = send(&herald, &["Carol@example.org"]).await;
    herald.wait_status(&id, "delivered").await;
    assert_eq!(smtp.message_count(), 1, "mail flows again");
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_or_no_addresses_are_refused() {
    let herald = Herald::start(None).await;
    let (status, problem) = herald
        .post("/v1/suppressions", json!({"addresses": []}))
        .await;
    assert_eq!(status, 422, "{problem}");
    let many: Vec<String> = (0..1001).map(|i| format!("u{i}@example.com")).collect();
    let (status, _) = herald
        .post("/v1/suppressions", json!({"addresses": many}))
        .await;
    assert_eq!(status, 422);
    let (status, _) = herald
        .post(
            "/v1/suppressions",
            json!({"addresses": ["a@example.com"], "reason": "spite"}),
        )
        .await;
    assert_eq!(status, 400);
    herald.stop().await.unwrap();
}
