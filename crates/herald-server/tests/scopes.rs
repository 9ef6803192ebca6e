//! API keys with scopes, over real sockets: each route asks for one scope
//! (`send`, `read`, `manage`, `admin`); a valid key without it gets `403`
//! problem+json and changes nothing; `admin` may do everything; the keys
//! of `auth.api_keys` keep every scope.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::api::{Answer, Auth, assert_problem, send};
use common::{Herald, message};
use serde_json::Value;

const SEND: &str = "send-only-key-0123456789";
const READ: &str = "read-only-key-0123456789";
const MANAGE: &str = "manage-only-key-0123456789";
const ADMIN: &str = "admin-key-0123456789abcdef";
const SEND_READ: &str = "send-and-read-key-0123456789";

fn keys() -> String {
    [
        ("sender", SEND, "\"send\""),
        ("reader", READ, "\"read\""),
        ("manager", MANAGE, "\"manage\""),
        ("operator", ADMIN, "\"admin\""),
        ("app", SEND_READ, "\"send\", \"read\""),
    ]
    .iter()
    .map(|(name, key, scopes)| {
        format!("[[auth.keys]]\nname = \"{name}\"\nkey = \"{key}\"\nscopes = [{scopes}]\n")
    })
    .collect()
}

async fn herald() -> Herald {
    Herald::start_with(None, &keys()).await
}

async fn call(herald: &Herald, key: &str, method: &str, path: &str, body: Option<Value>) -> Answer {
    let bearer = format!("Bearer {key}");
    send(
        herald,
        method,
        path,
        Auth::Header(&bearer),
        &[],
        body.map(|b| serde_json::to_vec(&b).unwrap()),
    )
    .await
    .unwrap()
}

/// Scheduled an hour ahead, so that it stays cancellable.
fn later() -> Value {
    let mut m = message(&["later@example.com"]);
    m["send_at"] = common::api::in_seconds(3600).into();
    m
}

/// A message queued with the full-scope test key, not yet sent.
async fn queued(herald: &Herald) -> String {
    let (status, created) = herald.post("/v1/messages", later()).await;
    assert_eq!(status, 202, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

#[track_caller]
fn assert_forbidden(answer: &Answer, scope: &str) {
    let problem = assert_problem(answer, 403);
    assert_eq!(problem.kind, "/problems/forbidden", "{problem:#?}");
    assert!(problem.detail.contains(scope), "{problem:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_key_queues_but_cannot_read_or_act_on_messages() {
    let herald = herald().await;
    let answer = call(&herald, SEND, "POST", "/v1/messages", Some(later())).await;
    assert_eq!(answer.0, 202, "{:#}", answer.1);
    let id = answer.1["id"].as_str().unwrap().to_owned();
    let batch = serde_json::json!({"messages": [later()]});
    let answer = call(&herald, SEND, "POST", "/v1/messages/batch", Some(batch)).await;
    assert_eq!(answer.0, 200, "{:#}", answer.1);

    assert_forbidden(
        &call(&herald, SEND, "GET", &format!("/v1/messages/{id}"), None).await,
        "read",
    );
    assert_forbidden(
        &call(&herald, SEND, "GET", "/v1/messages", None).await,
        "read",
    );
    assert_forbidden(
        &call(
            &herald,
            SEND,
            "POST",
            &format!("/v1/messages/{id}/cancel"),
            None,
        )
        .await,
        "manage",
    );
    assert_forbidden(
        &call(
            &herald,
            SEND,
            "POST",
            &format!("/v1/messages/{id}/retry"),
            None,
        )
        .await,
        "manage",
    );
    assert_forbidden(
        &call(&herald, SEND, "GET", "/v1/errors", None).await,
        "admin",
    );
    // The refused cancel changed nothing.
    let (_, shown) = herald.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(shown["status"], "scheduled", "{shown:#}");
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_key_reads_but_cannot_queue_or_act() {
    let herald = herald().await;
    let id = queued(&herald).await;
    let answer = call(&herald, READ, "GET", &format!("/v1/messages/{id}"), None).await;
    assert_eq!(answer.0, 200, "{:#}", answer.1);
    let answer = call(&herald, READ, "GET", "/v1/messages", None).await;
    assert_eq!(answer.0, 200, "{:#}", answer.1);
    assert_forbidden(
        &call(&herald, READ, "POST", "/v1/messages", Some(later())).await,
        "send",
    );
    assert_forbidden(
        &call(
            &herald,
            READ,
            "POST",
            &format!("/v1/messages/{id}/cancel"),
            None,
        )
        .await,
        "manage",
    );
    assert_forbidden(
        &call(&herald, READ, "GET", "/v1/errors", None).await,
        "admin",
    );
    let (_, listed) = herald.get("/v1/messages").await;
    assert_eq!(
        listed["messages"].as_array().unwrap().len(),
        1,
        "{listed:#}"
    );
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manage_key_cancels_and_retries_but_cannot_queue_read_or_see_errors() {
    let herald = herald().await;
    let id = queued(&herald).await;
    let answer = call(
        &herald,
        MANAGE,
        "POST",
        &format!("/v1/messages/{id}/cancel"),
        None,
    )
    .await;
    assert_eq!(answer.0, 200, "{:#}", answer.1);
    assert_eq!(answer.1["status"], "cancelled");
    // Retry is a manage request too: a cancelled message cannot be retried
    // (409), which shows the key got past the scope check.
    let answer = call(
        &herald,
        MANAGE,
        "POST",
        &format!("/v1/messages/{id}/retry"),
        None,
    )
    .await;
    // Allowed: the retry of a cancelled message is refused for its state
    // (409), not for the key's scope.
    assert_ne!(answer.0, 403, "{:#}", answer.1);
    assert_problem(&answer, 409);
    assert_forbidden(
        &call(&herald, MANAGE, "POST", "/v1/messages", Some(later())).await,
        "send",
    );
    assert_forbidden(
        &call(&herald, MANAGE, "GET", &format!("/v1/messages/{id}"), None).await,
        "read",
    );
    assert_forbidden(
        &call(&herald, MANAGE, "GET", "/v1/errors", None).await,
        "admin",
    );
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_key_may_do_everything() {
    let herald = herald().await;
    let answer = call(&herald, ADMIN, "POST", "/v1/messages", Some(later())).await;
    assert_eq!(answer.0, 202, "{:#}", answer.1);
    let id = answer.1["id"].as_str().unwrap().to_owned();
    for (method, path) in [
        ("GET", format!("/v1/messages/{id}")),
        ("GET", "/v1/messages".to_owned()),
        ("GET", "/v1/errors".to_owned()),
        ("POST", format!("/v1/messages/{id}/cancel")),
    ] {
        let answer = call(&herald, ADMIN, method, &path, None).await;
        assert_eq!(answer.0, 200, "{method} {path}: {:#}", answer.1);
    }
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_combine_and_plain_api_keys_keep_every_scope() {
    let herald = herald().await;
    let answer = call(&herald, SEND_READ, "POST", "/v1/messages", Some(later())).await;
    assert_eq!(answer.0, 202, "{:#}", answer.1);
    let id = answer.1["id"].as_str().unwrap().to_owned();
    let answer = call(
        &herald,
        SEND_READ,
        "GET",
        &format!("/v1/messages/{id}"),
        None,
    )
    .await;
    assert_eq!(answer.0, 200, "{:#}", answer.1);
    assert_forbidden(
        &call(
            &herald,
            SEND_READ,
            "POST",
            &format!("/v1/messages/{id}/cancel"),
            None,
        )
        .await,
        "manage",
    );
    // The harness's own key is in auth.api_keys: every route is open to it.
    let (status, _) = herald.get("/v1/errors").await;
    assert_eq!(status, 200);
    let (status, _) = herald
        .post(&format!("/v1/messages/{id}/cancel"), Value::Null)
        .await;
    assert_eq!(status, 200);
    // A wrong key is still 401, not 403.
    let answer = call(
        &herald,
        "not-a-key-0123456789abcdef",
        "GET",
        "/v1/messages",
        None,
    )
    .await;
    assert_problem(&answer, 401);
    herald.stop().await.unwrap();
}

/// Every message records the name of the key that queued it, single or in
/// a batch; the plain list's keys are named by position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_records_the_key_that_queued_it() {
    let herald = herald().await;
    let answer = call(&herald, SEND_READ, "POST", "/v1/messages", Some(later())).await;
    assert_eq!(answer.0, 202, "{:?}", answer.1);
    let id = answer.1["id"].as_str().unwrap().to_owned();
    let batch = serde_json::json!({ "messages": [later(), later()] });
    let answer = call(&herald, SEND, "POST", "/v1/messages/batch", Some(batch)).await;
    assert_eq!(answer.0, 200, "{:?}", answer.1);
    let batched: Vec<String> = answer.1["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let plain = queued(&herald).await;

    let shown = |id: String| {
        let herald = &herald;
        async move {
            let answer = call(herald, ADMIN, "GET", &format!("/v1/messages/{id}"), None).await;
            assert_eq!(answer.0, 200);
            answer.1["submitted_by"].as_str().unwrap_or("").to_owned()
        }
    };
    assert_eq!(shown(id).await, "app");
    for id in batched {
        assert_eq!(shown(id).await, "sender");
    }
    assert_eq!(shown(plain).await, "auth.api_keys[0]");
}
