//! Bad input, over real sockets: each gets the documented status as an
//! `application/problem+json` body, stores nothing, sends nothing, and
//! leaves the server serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::api::{
    Answer, Auth, all_ids, assert_invalid, assert_nothing_stored, assert_problem, error_fields,
    get_full, header, post_raw, send,
};
use common::{Herald, KEY, message};
use herald_api::MessageStatus;
use herald_testkit::{ServerConfig, TestServer};
use serde_json::{Value, json};

async fn relay() -> TestServer {
    TestServer::start(ServerConfig::default()).await.unwrap()
}

/// The small valid message with `change` applied to it.
fn with(change: impl FnOnce(&mut Value)) -> Value {
    let mut body = message(&["bob@example.com"]);
    change(&mut body);
    body
}

/// After the rejections: nothing is stored or sent, and a valid message
/// still goes through end to end.
async fn still_works(herald: &Herald, smtp: &TestServer) {
    assert_nothing_stored(herald).await;
    assert_eq!(smtp.message_count(), 0, "a rejected message was sent");
    let created = herald.queue(message(&["ok@example.com"])).await;
    herald
        .wait_status(&created.id, MessageStatus::Delivered)
        .await;
    assert_eq!(all_ids(herald, "").await, [created.id]);
    assert_eq!(smtp.message_count(), 1);
    assert_eq!(smtp.messages()[0].rcpt_to, ["ok@example.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_the_schema_are_400() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let raw_cases = [
        ("truncated JSON", r#"{"from": "app@example.com", "to": ["#),
        ("not JSON at all", "from=app@example.com"),
        ("an empty body", ""),
        ("a JSON array", "[]"),
        ("a JSON string", r#""hello""#),
    ];
    for (name, raw) in raw_cases {
        let body = assert_problem(&post_raw(&herald, "/v1/messages", raw).await, 400);
        assert_eq!(body.kind, "/problems/malformed", "{name}: {body:#?}");
    }
    let json_cases = [
        (
            "to as a string",
            with(|m| m["to"] = json!("bob@example.com")),
        ),
        ("an unknown field", with(|m| m["colour"] = json!("red"))),
        ("subject as a number", with(|m| m["subject"] = json!(42))),
        (
            "headers as a list",
            with(|m| m["headers"] = json!(["X-A: b"])),
        ),
        (
            "send_at not a time",
            with(|m| m["send_at"] = json!("tomorrow")),
        ),
        (
            "an attachment as a positional list",
            with(|m| m["attachments"] = json!([["a.txt", "text/plain", "YQ=="]])),
        ),
        (
            "an unknown attachment field",
            with(|m| {
                m["attachments"] = json!([{"filename": "a.txt", "content": "YQ==", "size": 1}])
            }),
        ),
    ];
    for (name, body) in json_cases {
        let answer = herald
            .request("POST", "/v1/messages", Some(body), &[])
            .await;
        let problem = assert_problem(&answer, 400);
        assert_eq!(problem.kind, "/problems/malformed", "{name}: {problem:#?}");
    }
    still_works(&herald, &smtp).await;
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantically_invalid_messages_are_422_naming_the_field() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let too_many: Vec<String> = (0..101).map(|i| format!("r{i}@example.com")).collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "missing from",
            with(|m| drop(m.as_object_mut().unwrap().remove("from"))),
            "from",
        ),
        (
            "from not an address",
            with(|m| m["from"] = json!("app at example.com")),
            "from",
        ),
        (
            "an invalid second recipient",
            with(|m| m["to"] = json!(["bob@example.com", "not an address"])),
            "to[1]",
        ),
        (
            "an invalid cc",
            with(|m| m["cc"] = json!(["@example.com"])),
            "cc[0]",
        ),
        (
            "an invalid reply_to",
            with(|m| m["reply_to"] = json!("nobody")),
            "reply_to",
        ),
        ("no recipient", with(|m| m["to"] = json!([])), "to"),
        ("101 recipients", with(|m| m["to"] = json!(too_many)), "to"),
        (
            "CR LF in the subject",
            with(|m| m["subject"] = json!("Hi\r\nBcc: victim@example.com")),
            "subject",
        ),
        (
            "a bare LF in the subject",
            with(|m| m["subject"] = json!("Hi\nthere")),
            "subject",
        ),
        (
            "a bare CR in the subject",
            with(|m| m["subject"] = json!("Hi\rthere")),
            "subject",
        ),
        (
            "CR LF in the from display name",
            with(|m| m["from"] = json!("App\r\nBcc: victim@example.com <app@example.com>")),
            "from",
        ),
        (
            "LF in a recipient display name",
            with(|m| m["to"] = json!(["Bob\nX-Evil: 1 <bob@example.com>"])),
            "to[0]",
        ),
        (
            "CR LF in a header name",
            with(|m| m["headers"] = json!({"X-A\r\nBcc": "victim@example.com"})),
            "headers.*",
        ),
        (
            "CR LF in a header value",
            with(|m| m["headers"] = json!({"X-Campaign": "a\r\nBcc: victim@example.com"})),
            "headers.X-Campaign",
        ),
        (
            "CR LF in an attachment filename",
            with(|m| {
                m["attachments"] =
                    json!([{"filename": "a\r\nContent-Type: text/html.txt", "content": "YQ=="}]);
            }),
            "attachments[0].filename",
        ),
        (
            "a Bcc header",
            with(|m| m["headers"] = json!({"Bcc": "victim@example.com"})),
            "headers.Bcc",
        ),
        (
            "a Content-Type header",
            with(|m| m["headers"] = json!({"Content-Type": "text/html"})),
            "headers.Content-Type",
        ),
        (
            "a content-transfer-encoding header",
            with(|m| m["headers"] = json!({"content-transfer-encoding": "8bit"})),
            "headers.content-transfer-encoding",
        ),
        (
            "a Message-ID header",
            with(|m| m["headers"] = json!({"Message-ID": "<x@example.com>"})),
            "headers.Message-ID",
        ),
        (
            "a From header",
            with(|m| m["headers"] = json!({"From": "x@example.com"})),
            "headers.From",
        ),
        (
            "a Date header",
            with(|m| m["headers"] = json!({"Date": "today"})),
            "headers.Date",
        ),
        (
            "a MIME-Version header",
            with(|m| m["headers"] = json!({"MIME-Version": "1.0"})),
            "headers.MIME-Version",
        ),
        (
            "no body",
            with(|m| drop(m.as_object_mut().unwrap().remove("text"))),
            "text",
        ),
        (
            "a NUL in the text",
            with(|m| m["text"] = json!("a\u{0}b")),
            "text",
        ),
        (
            "bad base64",
            with(|m| {
                m["attachments"] = json!([{"filename": "a.txt", "content": "!!not base64!!"}])
            }),
            "attachments[0].content",
        ),
        (
            "an attachment without a filename",
            with(|m| m["attachments"] = json!([{"content": "YQ=="}])),
            "attachments[0].filename",
        ),
    ];
    for (name, body, field) in cases {
        let answer = herald
            .request("POST", "/v1/messages", Some(body), &[])
            .await;
        let problem = std::panic::catch_unwind(|| assert_invalid(&answer, field))
            .unwrap_or_else(|_| panic!("case {name:?} failed"));
        assert_eq!(problem.title, "Invalid message", "{name}");
        assert!(
            problem.detail.contains(field.trim_end_matches('*')),
            "{name}: the detail names the field: {problem:#?}"
        );
    }
    still_works(&herald, &smtp).await;
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_problem_of_a_message_is_listed_at_once() {
    let herald = Herald::start(None).await;
    let body = json!({"to": ["bob@example.com", "nope"], "subject": "a\r\nb"});
    let answer = herald
        .request("POST", "/v1/messages", Some(body), &[])
        .await;
    let problem = assert_invalid(&answer, "from");
    assert_eq!(error_fields(&problem), ["from", "to[1]", "subject", "text"]);
    assert!(problem.detail.contains("and 3 more"), "{problem:#?}");
    for error in problem.errors {
        assert!(!error.message.is_empty(), "{error}");
    }
    assert_nothing_stored(&herald).await;
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_max_message_bytes_is_413() {
    let smtp = relay().await;
    let herald = Herald::start_with(Some(&smtp), "[limits]\nmax_message_bytes = 10000\n").await;
    // The rendered message is over the limit: a long text...
    let long_text = with(|m| m["text"] = json!("a".repeat(20_000)));
    let answer = herald
        .request("POST", "/v1/messages", Some(long_text), &[])
        .await;
    let problem = assert_problem(&answer, 413);
    assert_eq!(problem.kind, "/problems/too-large", "{problem:#?}");
    // ...or an attachment that grows past it once encoded.
    let content = "QUFB".repeat(2_000); // 6000 bytes, 8000+ once re-encoded with headers
    let attachment = with(|m| {
        m["text"] = json!("b".repeat(2_500));
        m["attachments"] = json!([{"filename": "a.bin", "content": content}]);
    });
    let answer = herald
        .request("POST", "/v1/messages", Some(attachment), &[])
        .await;
    assert_problem(&answer, 413);
    // In a batch, the oversized item is refused in place.
    let batch = json!({"messages": [with(|m| m["text"] = json!("c".repeat(20_000)))]});
    let (status, results) = herald.post("/v1/messages/batch", batch).await;
    assert_eq!(status, 200, "{results:#}");
    assert_eq!(results["results"][0]["error"]["status"], 413, "{results:#}");
    // Just under the limit is fine (checked below by still_works).
    still_works(&herald, &smtp).await;
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_over_the_transport_limit_is_413() {
    let herald = Herald::start_with(None, "[limits]\nmax_message_bytes = 10000\n").await;
    // The HTTP layer refuses bodies far larger than any valid message
    // (here ~1 MiB + 4/3 of the limit) before parsing them.
    let huge = serde_json::to_vec(&with(|m| m["text"] = json!("x".repeat(1_200_000)))).unwrap();
    match send(&herald, "POST", "/v1/messages", Auth::Key, &[], Some(huge)).await {
        Ok(answer) => {
            let problem = assert_problem(&answer, 413);
            assert_eq!(problem.kind, "/problems/too-large");
        }
        // The server may close before reading the rest of a refused body;
        // that is allowed as long as nothing was stored.
        Err(error) => eprintln!("transport error after refusal: {error}"),
    }
    assert_nothing_stored(&herald).await;
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_key_is_401_and_stores_nothing() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    let body = serde_json::to_vec(&message(&["bob@example.com"])).unwrap();
    let wrong_key = format!("Bearer {KEY}x");
    let prefix_key = format!("Bearer {}", &KEY[..KEY.len() - 1]);
    let basic = format!("Basic {KEY}");
    let cases = [
        ("no Authorization header", Auth::None),
        ("a wrong key", Auth::Header("Bearer not-the-key")),
        ("the key plus a character", Auth::Header(&wrong_key)),
        ("a prefix of the key", Auth::Header(&prefix_key)),
        ("the key under another scheme", Auth::Header(&basic)),
        ("an empty bearer token", Auth::Header("Bearer ")),
    ];
    for (name, auth) in cases {
        for (method, path, body) in [
            ("POST", "/v1/messages", Some(body.clone())),
            (
                "POST",
                "/v1/messages/batch",
                Some(br#"{"messages": []}"#.to_vec()),
            ),
            ("GET", "/v1/messages", None),
            ("GET", "/v1/messages/01ARZ3NDEKTSV4RRFFQ69G5FAV", None),
            (
                "POST",
                "/v1/messages/01ARZ3NDEKTSV4RRFFQ69G5FAV/retry",
                None,
            ),
            (
                "POST",
                "/v1/messages/01ARZ3NDEKTSV4RRFFQ69G5FAV/cancel",
                None,
            ),
        ] {
            let answer = send(&herald, method, path, auth, &[], body).await.unwrap();
            let problem = std::panic::catch_unwind(|| assert_problem(&answer, 401))
                .unwrap_or_else(|_| panic!("{name}: {method} {path}"));
            assert_eq!(problem.kind, "/problems/unauthorized", "{name}");
            assert_eq!(
                header(&answer.2, "www-authenticate"),
                Some("Bearer"),
                "{name}: {method} {path}"
            );
            // The key is never echoed back.
            assert!(!answer.1.to_string().contains(KEY), "{name}");
        }
    }
    still_works(&herald, &smtp).await;
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    // RFC 9110 §11.1: the authentication scheme is a case-insensitive token.
    let herald = Herald::start(None).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let value = format!("{scheme} {KEY}");
        let answer = send(
            &herald,
            "GET",
            "/v1/messages",
            Auth::Header(&value),
            &[],
            None,
        )
        .await
        .unwrap();
        assert_eq!(answer.0, 200, "{scheme}: {:#}", answer.1);
    }
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_is_404() {
    let herald = Herald::start(None).await;
    for id in ["01ARZ3NDEKTSV4RRFFQ69G5FAV", "not-an-id", "%20"] {
        let answer = get_full(&herald, &format!("/v1/messages/{id}")).await;
        let problem = assert_problem(&answer, 404);
        assert_eq!(problem.kind, "/problems/not-found");
        assert_eq!(problem.detail, "no message with that id", "{id}");
    }
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_list_queries_are_400() {
    let herald = Herald::start(None).await;
    for query in [
        "limit=501",
        "limit=0",
        "limit=-1",
        "limit=ten",
        "status=nope",
        "status=Delivered",
        "since=yesterday",
        "until=2026-13-01T00:00:00Z",
        "colour=red",
    ] {
        let answer = get_full(&herald, &format!("/v1/messages?{query}")).await;
        let problem = assert_problem(&answer, 400);
        assert_eq!(problem.kind, "/problems/malformed", "{query}");
    }
    for query in [
        "limit=500",
        "limit=1",
        "status=delivered",
        "since=2020-01-01T00:00:00Z",
    ] {
        let (status, page) = herald.get(&format!("/v1/messages?{query}")).await;
        assert_eq!(status, 200, "{query}: {page:#}");
        assert_eq!(page["messages"], json!([]), "{query}");
        assert_eq!(page["next_cursor"], Value::Null, "{query}");
    }
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_get_problems_too() {
    let herald = Herald::start(None).await;
    let answer: Answer = get_full(&herald, "/v1/nothing-here").await;
    let problem = assert_problem(&answer, 404);
    assert_eq!(problem.detail, "no such route");
    for (method, path) in [
        ("DELETE", "/v1/messages/01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        ("PUT", "/v1/messages"),
        ("GET", "/v1/messages/01ARZ3NDEKTSV4RRFFQ69G5FAV/retry"),
        ("POST", "/healthz"),
    ] {
        let answer = send(&herald, method, path, Auth::Key, &[], None)
            .await
            .unwrap();
        let problem = std::panic::catch_unwind(|| assert_problem(&answer, 405))
            .unwrap_or_else(|_| panic!("{method} {path}: {answer:?}"));
        assert_eq!(
            problem.kind, "/problems/method-not-allowed",
            "{method} {path}"
        );
        assert!(
            header(&answer.2, "allow").is_some(),
            "{method} {path}: Allow header"
        );
    }
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_422_lists_at_most_20_field_errors_and_counts_the_rest() {
    let smtp = relay().await;
    let herald = Herald::start(Some(&smtp)).await;
    // 100 recipients (the limit), every one of them invalid.
    let bad: Vec<String> = (0..100).map(|i| format!("not-an-address-{i}")).collect();
    let answer = post_with_body(&herald, with(|m| m["to"] = json!(bad))).await;
    let problem = assert_invalid(&answer, "to[0]");
    assert_eq!(problem.errors.len(), 20, "{problem:#?}");
    assert_eq!(problem.omitted_errors, 80, "{problem:#?}");
    assert!(problem.detail.ends_with("(and 99 more)"), "{problem:#?}");
    // Few errors: all listed, nothing omitted.
    let answer = post_with_body(&herald, with(|m| m["to"] = json!(["x", "y"]))).await;
    let problem = assert_invalid(&answer, "to[1]");
    assert_eq!(problem.errors.len(), 2, "{problem:#?}");
    // Absent, not 0, on the wire.
    assert!(answer.1.get("omitted_errors").is_none(), "{:#}", answer.1);
    still_works(&herald, &smtp).await;
    herald.stop().await.unwrap();
}

async fn post_with_body(herald: &Herald, body: Value) -> Answer {
    herald
        .request("POST", "/v1/messages", Some(body), &[])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_says_nosniff_and_no_store() {
    let herald = Herald::start(None).await;
    let id = {
        let (status, created) = herald
            .post("/v1/messages", message(&["a@example.com"]))
            .await;
        assert_eq!(status, 202);
        created["id"].as_str().unwrap().to_owned()
    };
    let answers = [
        (
            "202",
            post_with_body(&herald, message(&["b@example.com"])).await,
        ),
        (
            "422",
            post_with_body(&herald, with(|m| m["to"] = json!(["x"]))).await,
        ),
        (
            "200 message",
            get_full(&herald, &format!("/v1/messages/{id}")).await,
        ),
        ("200 list", get_full(&herald, "/v1/messages").await),
        ("404 route", get_full(&herald, "/nowhere").await),
        ("healthz", get_full(&herald, "/healthz").await),
        ("metrics", get_full(&herald, "/metrics").await),
        (
            "401",
            send(&herald, "GET", "/v1/messages", Auth::None, &[], None)
                .await
                .unwrap(),
        ),
    ];
    for (what, (_, _, headers)) in &answers {
        assert_eq!(
            header(headers, "x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(header(headers, "cache-control"), Some("no-store"), "{what}");
    }
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_never_show_the_outbox_path() {
    let herald = Herald::start(None).await;
    let (status, created) = herald
        .post("/v1/messages", message(&["a@example.com"]))
        .await;
    assert_eq!(status, 202);
    let id = created["id"].as_str().unwrap();
    herald.wait_status(id, MessageStatus::Delivered).await;
    // The answers as sent, not as parsed: no field may carry the path.
    let (_, delivered) = herald.get(&format!("/v1/messages/{id}")).await;
    assert!(herald.dir.join("outbox").join(format!("{id}.eml")).exists());
    let (_, listed) = herald.get("/v1/messages").await;
    let dir = herald.dir.display().to_string();
    for answer in [&delivered, &listed] {
        let text = answer.to_string();
        assert!(!text.contains(&dir), "{answer:#}");
        assert!(!text.contains("/outbox/"), "{answer:#}");
    }
    assert!(
        delivered.to_string().contains(&format!("{id}.eml")),
        "{delivered:#}"
    );
    herald.stop().await.unwrap();
}

/// Found by scripts/api-fuzz: the server took `null` for an optional
/// field (as absent) where the document said only a string would do; the
/// document now says so, and this pins the server's side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_for_an_optional_field_is_taken_as_absent() {
    let herald = Herald::start(None).await;
    let body = with(|m| {
        for field in ["reply_to", "subject", "html", "send_at"] {
            m[field] = Value::Null;
        }
        m["attachments"] = json!([{"content": "YQ==", "filename": "a.txt",
                                   "content_type": null, "content_id": null}]);
    });
    let created = herald.queue(body).await;
    assert_eq!(created.status, MessageStatus::Queued);
    let raw = json!({"from": "a@example.com", "to": ["b@example.com"],
                     "raw": "U3ViamVjdDogaGkNCg0KSGVsbG8NCg==", "send_at": null});
    let (status, answer, _) = herald
        .request("POST", "/v1/messages/raw", Some(raw), &[])
        .await;
    assert_eq!(status, 202, "{answer:#}");
    herald.stop().await.unwrap();
}
