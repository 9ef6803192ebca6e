//! docs/openapi.yaml is true to the code: it lists exactly the routes the
//! router serves, every one of them is really served, the request schemas
//! take the fields the code takes, and real answers (statuses, content
//! types, bodies) match what it documents.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::api::{Answer, Auth, header, in_seconds, post_raw, send};
use common::{Herald, message};
use herald_api::MessageStatus;
use herald_server::api::ROUTES;
use herald_testkit::{ServerConfig, TestServer};
use serde_json::{Value, json};

const UNKNOWN_ID: &str = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

#[path = "openapi/schema.rs"]
mod schema;

use schema::*;

#[test]
fn the_document_lists_exactly_the_routes_of_the_code() {
    let spec = spec();
    assert_eq!(
        spec["openapi"].as_str().map(|v| v.starts_with("3.1")),
        Some(true)
    );
    let documented = documented_routes(&spec);
    let code = code_routes();
    assert_eq!(code.len(), ROUTES.len(), "ROUTES lists a route twice");
    let undocumented: Vec<_> = code.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&code).collect();
    assert!(
        undocumented.is_empty(),
        "served but not documented: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "documented but not in ROUTES: {unserved:?}"
    );
}

#[test]
fn every_reference_in_the_document_resolves() {
    fn walk(spec: &Value, node: &Value, at: &str) {
        match node {
            Value::Object(map) => {
                if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                    let target = reference.strip_prefix('#').and_then(|p| spec.pointer(p));
                    assert!(target.is_some(), "{at}: dangling $ref {reference}");
                }
                for (k, v) in map {
                    walk(spec, v, &format!("{at}/{k}"));
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(spec, v, &format!("{at}/{i}"));
                }
            }
            _ => {}
        }
    }
    let spec = spec();
    walk(&spec, &spec, "#");
}

#[test]
fn the_status_enums_are_the_codes() {
    let spec = spec();
    let names = |schema: &str| -> Vec<String> {
        spec["components"]["schemas"][schema]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let code: Vec<String> = herald_store::MessageStatus::ALL
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    assert_eq!(names("Status"), code);
    for name in names("RecipientStatus") {
        let parsed: herald_store::RecipientStatus = name.parse().unwrap();
        assert_eq!(parsed.as_str(), name);
    }
}

#[test]
fn the_validator_catches_what_it_should() {
    let spec = spec();
    let message = json!({"$ref": "#/components/schemas/Message"});
    let good = json!({
        "id": "x", "message_id": "<x@y>", "status": "queued",
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        "attempts": 0, "next_attempt_at": null,
        "recipients": [{"address": "a@b", "status": "pending", "smtp_code": null}],
        "tags": [], "metadata": {"k": "v"}, "template": null, "template_version": null
    });
    let errors_of = |value: &Value| {
        let mut errors = Vec::new();
        validate(&spec, &message, value, "$", &mut errors);
        errors
    };
    assert_eq!(errors_of(&good), Vec::<String>::new());
    let broken = |change: &dyn Fn(&mut Value)| {
        let mut value = good.clone();
        change(&mut value);
        errors_of(&value)
    };
    assert_eq!(
        broken(&|v| v["surprise"] = json!(1)).len(),
        1,
        "undeclared key"
    );
    assert_eq!(
        broken(&|v| drop(v.as_object_mut().unwrap().remove("attempts"))).len(),
        1
    );
    assert_eq!(
        broken(&|v| v["attempts"] = json!("1")).len(),
        1,
        "wrong type"
    );
    assert_eq!(
        broken(&|v| v["status"] = json!("lost")).len(),
        1,
        "not in the enum"
    );
    assert_eq!(
        broken(&|v| v["created_at"] = json!("yesterday")).len(),
        1,
        "not a date-time"
    );
    assert_eq!(
        broken(&|v| v["recipients"][0]["smtp_code"] = json!("250")).len(),
        1,
        "nested"
    );
    assert_eq!(
        broken(&|v| v["metadata"]["k"] = json!(1)).len(),
        1,
        "additionalProperties"
    );
    let results = json!({"$ref": "#/components/schemas/BatchResults"});
    let mut errors = Vec::new();
    validate(
        &spec,
        &results,
        &json!({"results": [{"id": "x"}]}),
        "$",
        &mut errors,
    );
    assert_eq!(errors.len(), 1, "no oneOf alternative matches: {errors:?}");
}

/// `path` with `{id}` filled in.
fn concrete(template: &str, id: &str) -> String {
    template.replace("{id}", id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_in_routes_is_really_served() {
    let herald = Herald::start(None).await;
    // The check itself: a path outside the API hits the fallback.
    let (status, fallback, _) = herald.request("GET", "/v1/no-such-thing", None, &[]).await;
    assert_eq!(
        (status, fallback["detail"].as_str()),
        (404, Some("no such route"))
    );
    for (method, template) in ROUTES {
        let path = concrete(template, UNKNOWN_ID);
        let body = (*method == "POST").then(|| b"{}".to_vec());
        for auth in [Auth::Key, Auth::None] {
            let (status, answer, _) = send(&herald, method, &path, auth, &[], body.clone())
                .await
                .unwrap();
            let context = format!("{method} {path} ({auth:?}) → {status} {answer}");
            assert_ne!(answer["detail"], "no such route", "{context}");
            assert_ne!(status, 405, "{context}");
            // The key guards exactly the /v1 routes.
            if auth == Auth::None {
                let guarded = template.starts_with("/v1/");
                assert_eq!(status == 401, guarded, "{context}");
            }
        }
    }
    herald.stop().await.unwrap();
}

/// The field names serde lists in "unknown field `x`, expected one of
/// `a`, `b`" (or "expected `a`").
fn expected_fields(detail: &str) -> BTreeSet<String> {
    let (_, list) = detail
        .split_once("expected ")
        .unwrap_or_else(|| panic!("not an unknown-field error: {detail}"));
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn schema_properties(spec: &Value, name: &str) -> BTreeSet<String> {
    spec["components"]["schemas"][name]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no schema {name}"))
        .keys()
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_schemas_take_exactly_the_fields_the_code_takes() {
    let spec = spec();
    let herald = Herald::start(None).await;
    let cases = [
        ("/v1/messages", r#"{"zzz": 1}"#, "MessageRequest"),
        (
            "/v1/messages",
            r#"{"attachments": [{"content": "", "zzz": 1}]}"#,
            "Attachment",
        ),
        ("/v1/messages/batch", r#"{"zzz": 1}"#, "BatchRequest"),
        ("/v1/messages/raw", r#"{"zzz": 1}"#, "RawMessageRequest"),
    ];
    for (path, raw, schema) in cases {
        let (status, problem, _) = post_raw(&herald, path, raw).await;
        assert_eq!(status, 400, "{problem:#}");
        let accepted = expected_fields(problem["detail"].as_str().unwrap());
        assert_eq!(
            schema_properties(&spec, schema),
            accepted,
            "{schema} vs the code"
        );
    }
    // Batch items are MessageRequests.
    let items = &spec["components"]["schemas"]["BatchRequest"]["properties"]["messages"]["items"];
    assert_eq!(items["$ref"], "#/components/schemas/MessageRequest");
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_match_the_documented_schemas() {
    let smtp = TestServer::start(ServerConfig::default()).await.unwrap();
    let herald = Herald::start_with(Some(&smtp), "[limits]\nmax_batch = 3\n").await;
    let mut doc = Conformance::new();
    let one = |id: &str| format!("/v1/messages/{id}");

    // 202 Created, with everything optional set on the request.
    let mut full = message(&["bob@example.com", "Carol <carol@example.org>"]);
    full["tags"] = json!(["welcome"]);
    full["metadata"] = json!({"user_id": "42"});
    full["headers"] = json!({"X-Campaign": "welcome"});
    full["html"] = json!("<p>hi</p>");
    full["attachments"] = json!([{"filename": "a.txt", "content": "aGVsbG8="}]);
    let answer = send_json(
        &herald,
        "POST",
        "/v1/messages",
        Some(full),
        &[("Idempotency-Key", "k1")],
    )
    .await;
    doc.check("POST", "/v1/messages", &answer);
    let delivered = answer.1["id"].as_str().unwrap().to_owned();

    // A deferral, seen while it waits, then the delivery.
    let answer = send_json(
        &herald,
        "POST",
        "/v1/messages",
        Some(message(&["rcpt451-once@example.com"])),
        &[],
    )
    .await;
    let deferred = answer.1["id"].as_str().unwrap().to_owned();
    // Every state it passes through on the way matches the document.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = send_json(&herald, "GET", &one(&deferred), None, &[]).await;
        doc.check("GET", "/v1/messages/{id}", &answer);
        if answer.1["status"] == "deferred" {
            assert!(answer.1["next_attempt_at"].is_string(), "{:#}", answer.1);
        }
        if answer.1["status"] == "delivered" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{:#}", answer.1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    herald
        .wait_status(&delivered, MessageStatus::Delivered)
        .await;
    for id in [&deferred, &delivered] {
        let answer = send_json(&herald, "GET", &one(id), None, &[]).await;
        doc.check("GET", "/v1/messages/{id}", &answer);
    }
    let history = send_json(&herald, "GET", &one(&deferred), None, &[])
        .await
        .1;
    let attempt = &history["events"][1];
    for key in [
        "relay",
        "attempt",
        "outcome",
        "smtp_code",
        "enhanced_code",
        "detail",
        "duration_ms",
    ] {
        assert!(
            attempt.get(key).is_some(),
            "the deferral's attempt event has {key}: {attempt:#}"
        );
    }

    // Scheduled (send_at appears), then cancelled.
    let mut later = message(&["later@example.com"]);
    later["send_at"] = json!(in_seconds(3600));
    let answer = send_json(&herald, "POST", "/v1/messages", Some(later), &[]).await;
    doc.check("POST", "/v1/messages", &answer);
    let scheduled = answer.1["id"].as_str().unwrap().to_owned();
    let answer = send_json(&herald, "GET", &one(&scheduled), None, &[]).await;
    assert!(answer.1["send_at"].is_string(), "{:#}", answer.1);
    doc.check("GET", "/v1/messages/{id}", &answer);
    let answer = send_json(
        &herald,
        "POST",
        &format!("{}/cancel", one(&scheduled)),
        None,
        &[],
    )
    .await;
    doc.check("POST", "/v1/messages/{id}/cancel", &answer);

    // A failure, retried.
    let answer = send_json(
        &herald,
        "POST",
        "/v1/messages",
        Some(message(&["rcpt550@example.com"])),
        &[],
    )
    .await;
    let failed = answer.1["id"].as_str().unwrap().to_owned();
    herald.wait_status(&failed, MessageStatus::Failed).await;
    let answer = send_json(
        &herald,
        "POST",
        &format!("{}/retry", one(&failed)),
        None,
        &[],
    )
    .await;
    assert_eq!(answer.0, 200, "{:#}", answer.1);
    doc.check("POST", "/v1/messages/{id}/retry", &answer);

    // Lists: a page with a cursor, the last page, an empty one.
    for query in ["", "?limit=1", "?status=cancelled", "?tag=nope"] {
        let answer = send_json(&herald, "GET", &format!("/v1/messages{query}"), None, &[]).await;
        assert_eq!(answer.0, 200, "{:#}", answer.1);
        doc.check("GET", "/v1/messages", &answer);
    }

    // A batch with a created item and both kinds of error item.
    let mut invalid = message(&["x@example.com"]);
    invalid["to"] = json!(["nope"]);
    let batch = json!({"messages": [message(&["b1@example.com"]), invalid, {"to": "x"}]});
    let answer = send_json(&herald, "POST", "/v1/messages/batch", Some(batch), &[]).await;
    assert_eq!(answer.0, 200, "{:#}", answer.1);
    assert!(
        answer.1["results"][1]["error"]["errors"].is_array(),
        "{:#}",
        answer.1
    );
    doc.check("POST", "/v1/messages/batch", &answer);

    // A raw message: 202, then a 422 for a body that is not base64.
    let raw_message = json!({
        "from": "app@example.com",
        "to": ["bob@example.com"],
        "raw": "U3ViamVjdDogaGkNCg0KaGVsbG8NCg==",
        "tags": ["raw"],
        "metadata": {"user_id": "42"},
    });
    let answer = send_json(&herald, "POST", "/v1/messages/raw", Some(raw_message), &[]).await;
    assert_eq!(answer.0, 202, "{:#}", answer.1);
    doc.check("POST", "/v1/messages/raw", &answer);
    let not_base64 = json!({"from": "app@example.com", "to": ["bob@example.com"], "raw": "%%%"});
    let answer = send_json(&herald, "POST", "/v1/messages/raw", Some(not_base64), &[]).await;
    assert_eq!(answer.0, 422, "{:#}", answer.1);
    doc.check("POST", "/v1/messages/raw", &answer);

    // Problems, each where the document says it may come.
    let mut bad = message(&["bob@example.com"]);
    bad["to"] = json!(["bob@example.com", "nope"]);
    let answer = send_json(&herald, "POST", "/v1/messages", Some(bad), &[]).await;
    assert_eq!(answer.0, 422);
    assert!(answer.1["errors"].is_array());
    doc.check("POST", "/v1/messages", &answer);
    let raw = send(
        &herald,
        "POST",
        "/v1/messages",
        Auth::Key,
        &[],
        Some(b"{".to_vec()),
    )
    .await
    .unwrap();
    doc.check("POST", "/v1/messages", &raw);
    let mut other = message(&["bob@example.com"]);
    other["subject"] = json!("different");
    let answer = send_json(
        &herald,
        "POST",
        "/v1/messages",
        Some(other),
        &[("Idempotency-Key", "k1")],
    )
    .await;
    assert_eq!(answer.0, 409);
    doc.check("POST", "/v1/messages", &answer);
    let big = vec![message(&["a@example.com"]); 4];
    let answer = send_json(
        &herald,
        "POST",
        "/v1/messages/batch",
        Some(json!({"messages": big})),
        &[],
    )
    .await;
    assert_eq!(answer.0, 413);
    doc.check("POST", "/v1/messages/batch", &answer);
    let answer = send_json(&herald, "GET", "/v1/messages?limit=501", None, &[]).await;
    doc.check("GET", "/v1/messages", &answer);
    for (method, template) in ROUTES.iter().filter(|(_, p)| p.starts_with("/v1/")) {
        let path = concrete(template, UNKNOWN_ID);
        let body = (*method == "POST").then(|| b"{}".to_vec());
        let answer = send(&herald, method, &path, Auth::None, &[], body)
            .await
            .unwrap();
        assert_eq!(answer.0, 401);
        doc.check(method, template, &answer);
    }
    for (method, template) in ROUTES.iter().filter(|(_, p)| p.contains("{id}")) {
        let answer = send(
            &herald,
            method,
            &concrete(template, UNKNOWN_ID),
            Auth::Key,
            &[],
            None,
        )
        .await
        .unwrap();
        assert_eq!(answer.0, 404);
        doc.check(method, template, &answer);
    }
    for action in ["retry", "cancel"] {
        let answer = send_json(
            &herald,
            "POST",
            &format!("{}/{action}", one(&delivered)),
            None,
            &[],
        )
        .await;
        assert_eq!(answer.0, 409);
        doc.check("POST", &format!("/v1/messages/{{id}}/{action}"), &answer);
    }

    // Health, readiness, metrics: whatever lies outside /v1, keyless.
    for (method, path) in ROUTES.iter().filter(|(_, p)| !p.starts_with("/v1/")) {
        let answer = send(&herald, method, path, Auth::None, &[], None)
            .await
            .unwrap();
        assert_eq!(answer.0, 200, "{method} {path}: {:#}", answer.1);
        doc.check(method, path, &answer);
    }

    assert_eq!(
        doc.checked,
        code_routes(),
        "every route's answers were checked"
    );
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_full_answer_matches_the_document() {
    let herald = Herald::start_with(None, "[limits]\nmax_queue_depth = 1\n").await;
    let mut doc = Conformance::new();
    let mut later = message(&["later@example.com"]);
    later["send_at"] = json!(in_seconds(3600));
    let answer = send_json(&herald, "POST", "/v1/messages", Some(later.clone()), &[]).await;
    assert_eq!(answer.0, 202);
    let answer = send_json(&herald, "POST", "/v1/messages", Some(later.clone()), &[]).await;
    assert_eq!(answer.0, 429);
    doc.check("POST", "/v1/messages", &answer);
    let answer = send_json(
        &herald,
        "POST",
        "/v1/messages/batch",
        Some(json!({"messages": [later]})),
        &[],
    )
    .await;
    assert_eq!(answer.0, 429);
    doc.check("POST", "/v1/messages/batch", &answer);
    herald.stop().await.unwrap();
}

/// A request with the test key and an optional JSON body.
async fn send_json(
    herald: &Herald,
    method: &str,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Answer {
    let body = body.map(|b| serde_json::to_vec(&b).unwrap());
    send(herald, method, path, Auth::Key, headers, body)
        .await
        .unwrap()
}
