//! The suppression list end to end over real sockets: a hard bounce puts
//! the address on the list and the next message's RCPT never reaches the
//! testkit; a policy rejection does not; entries are added, listed and
//! removed through the API, and removal lets mail flow again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Herald, message, typed};
use herald_api::{
    AddResults, AddStatus, BounceClass, EventKind, Message, MessageStatus, RecipientStatus,
    Suppression, SuppressionPage, SuppressionReason,
};
use herald_testkit::{ServerConfig, TestServer};
use serde_json::json;

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

fn recipient<'a>(message: &'a Message, address: &str) -> &'a herald_api::Recipient {
    message
        .recipients
        .iter()
        .find(|r| r.address == address)
        .unwrap_or_else(|| panic!("no recipient {address} in {message:#?}"))
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
    let failed = herald.wait_status(&first, MessageStatus::Failed).await;
    assert_eq!(
        recipient(&failed, dead).class,
        Some(BounceClass::InvalidRecipient)
    );
    let events = failed.events.clone().unwrap_or_default();
    let attempt = events
        .iter()
        .find(|e| e.kind == EventKind::Attempt)
        .unwrap();
    assert_eq!(attempt.class, Some(BounceClass::InvalidRecipient));

    let (status, entry) = herald.get(&format!("/v1/suppressions/{dead}")).await;
    assert_eq!(status, 200, "{entry}");
    let entry: Suppression = typed(&entry);
    assert_eq!(entry.reason, SuppressionReason::Bounce);
    assert_eq!(entry.message.as_deref(), Some(first.as_str()));
    assert_eq!(entry.response.as_deref(), Some("550 5.1.1 user unknown"));
    assert_eq!(rcpts_for(&smtp, "rcpt550.gone"), 1);

    // The next message: the suppressed address is not sent to, the other
    // recipient is, and the message counts as delivered.
    let second = send(&herald, &[dead, "bob@example.com"]).await;
    let done = herald.wait_status(&second, MessageStatus::Delivered).await;
    assert_eq!(recipient(&done, dead).status, RecipientStatus::Suppressed);
    assert_eq!(
        recipient(&done, "bob@example.com").status,
        RecipientStatus::Delivered
    );
    assert_eq!(rcpts_for(&smtp, "rcpt550.gone"), 1, "no RCPT for it again");

    // A message to nobody but suppressed addresses fails without a relay.
    let third = send(&herald, &[dead]).await;
    let nobody = herald.wait_status(&third, MessageStatus::Failed).await;
    assert_eq!(recipient(&nobody, dead).status, RecipientStatus::Suppressed);
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
    let failed = herald.wait_status(&first, MessageStatus::Failed).await;
    assert_eq!(recipient(&failed, blocked).class, Some(BounceClass::Policy));
    let (status, _) = herald.get(&format!("/v1/suppressions/{blocked}")).await;
    assert_eq!(status, 404);
    let second = send(&herald, &[blocked]).await;
    herald.wait_status(&second, MessageStatus::Failed).await;
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
    let results = typed::<AddResults>(&answer).results;
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].status, AddStatus::Added);
    assert_eq!(
        results[0].suppression.as_ref().unwrap().address,
        "Carol@example.org"
    );
    assert_eq!(results[1].status, AddStatus::Invalid);
    assert!(results[1].error.is_some());
    assert_eq!(results[2].status, AddStatus::Added);
    let (_, again) = herald
        .post(
            "/v1/suppressions",
            json!({"addresses": ["Carol@example.org"]}),
        )
        .await;
    assert_eq!(
        typed::<AddResults>(&again).results[0].status,
        AddStatus::Exists
    );

    let (status, list) = herald.get("/v1/suppressions?reason=manual&limit=1").await;
    assert_eq!(status, 200, "{list}");
    let list: SuppressionPage = typed(&list);
    assert_eq!(list.suppressions.len(), 1);
    let cursor = list.next_cursor.clone().expect("a second page");
    let (_, rest) = herald
        .get(&format!(
            "/v1/suppressions?reason=manual&limit=1&cursor={}",
            cursor.replace('@', "%40")
        ))
        .await;
    let rest: SuppressionPage = typed(&rest);
    let mut seen: Vec<String> = [&list, &rest]
        .iter()
        .flat_map(|page| page.suppressions.iter().map(|e| e.address.clone()))
        .collect();
    seen.sort();
    assert_eq!(seen, ["Carol@example.org", "dave@example.net"]);
    assert_eq!(rest.next_cursor, None);
    let (status, _) = herald.get("/v1/suppressions?reason=bogus").await;
    assert_eq!(status, 400);

    let id = send(&herald, &["Carol@example.org"]).await;
    let failed = herald.wait_status(&id, MessageStatus::Failed).await;
    assert_eq!(
        recipient(&failed, "Carol@example.org").status,
        RecipientStatus::Suppressed
    );
    assert_eq!(smtp.message_count(), 0);

    let (status, removed) = herald.delete("/v1/suppressions/carol@EXAMPLE.org").await;
    assert_eq!(status, 404, "the local part keeps its case: {removed}");
    let (status, removed) = herald.delete("/v1/suppressions/Carol@example.org").await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(
        typed::<Suppression>(&removed).reason,
        SuppressionReason::Manual
    );
    let (status, _) = herald.get("/v1/suppressions/Carol@example.org").await;
    assert_eq!(status, 404);

    let id = send(&herald, &["Carol@example.org"]).await;
    herald.wait_status(&id, MessageStatus::Delivered).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounce_of_an_address_already_listed_is_not_counted_again() {
    // The final dot is answered late, so the test can list the dead
    // address by hand while the attempt that bounced it is still open.
    let smtp = TestServer::start(ServerConfig {
        faults: vec![herald_testkit::FaultRule {
            phase: herald_testkit::Phase::DataDot,
            fault: herald_testkit::Fault::Delay(std::time::Duration::from_millis(1500)),
            times: Some(1),
        }],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let herald = Herald::start(Some(&smtp)).await;
    let dead = "rcpt550.listed@example.com";
    let id = send(&herald, &[dead, "bob@example.com"]).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while rcpts_for(&smtp, "rcpt550.listed") == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no RCPT seen");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (status, body) = herald
        .post("/v1/suppressions", json!({"addresses": [dead]}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        typed::<AddResults>(&body).results[0].status,
        AddStatus::Added
    );
    let done = herald.wait_status(&id, MessageStatus::Partial).await;
    assert_eq!(recipient(&done, dead).status, RecipientStatus::Failed);

    let counted = |reason: &'static str| {
        let herald = &herald;
        async move {
            herald
                .metric("herald_suppressions_added_total", &[("reason", reason)])
                .await
        }
    };
    assert_eq!(counted("manual").await, 1.0);
    assert_eq!(
        counted("bounce").await,
        0.0,
        "the address was listed already"
    );
    let (_, entry) = herald.get(&format!("/v1/suppressions/{dead}")).await;
    assert_eq!(
        typed::<Suppression>(&entry).reason,
        SuppressionReason::Manual
    );

    // A new dead address is counted once.
    let other = send(&herald, &["rcpt550.new@example.com"]).await;
    herald.wait_status(&other, MessageStatus::Failed).await;
    assert_eq!(counted("bounce").await, 1.0);
    herald.stop().await.unwrap();
}

/// Messages claimed together share one suppression look-up: each message
/// loses exactly its own listed recipients, and keeps the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_of_many_messages_suppresses_each_only_its_own_listed_recipients() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let listed: Vec<String> = (0..5).map(|i| format!("gone{i}@example.com")).collect();
    let (status, _) = herald
        .post("/v1/suppressions", json!({"addresses": listed}))
        .await;
    assert_eq!(status, 200);
    // Twenty messages in one batch, so that the dispatcher claims them
    // together; every fourth also goes to a listed address.
    let messages: Vec<_> = (0..20)
        .map(|i| {
            let mut to = vec![format!("live{i}@example.com")];
            if i % 4 == 0 {
                to.push(listed[i / 4].clone());
            }
            let to: Vec<&str> = to.iter().map(String::as_str).collect();
            message(&to)
        })
        .collect();
    let (status, answer) = herald
        .post("/v1/messages/batch", json!({"messages": messages}))
        .await;
    assert_eq!(status, 200, "{answer}");
    for (i, item) in answer["results"].as_array().unwrap().iter().enumerate() {
        let id = item["id"].as_str().unwrap();
        let done = herald.wait_status(id, MessageStatus::Delivered).await;
        let live = format!("live{i}@example.com");
        assert_eq!(recipient(&done, &live).status, RecipientStatus::Delivered);
        if i % 4 == 0 {
            let gone = &listed[i / 4];
            assert_eq!(recipient(&done, gone).status, RecipientStatus::Suppressed);
        } else {
            assert_eq!(done.recipients.len(), 1, "{done:#?}");
        }
    }
    for gone in &listed {
        assert_eq!(rcpts_for(&smtp, gone), 0, "{gone} reached the relay");
    }
    assert_eq!(smtp.message_count(), 20);
    herald.stop().await.unwrap();
}
