//! Stored templates over the API: versions, previews, the rendering table
//! a user checks (escaping, missing variables, fuel, layouts), and a batch
//! of one template to 100 recipients, each with their own values, read
//! back from the testkit relay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::api::assert_problem;
use common::{Herald, typed};
use herald_api::{BatchAnswer, BatchResult, RenderedTemplate, Template, TemplateList};
use herald_testkit::{ServerConfig, TestServer};
use mail_parser::MessageParser;
use serde_json::json;

async fn put_template(h: &Herald, body: serde_json::Value) -> Template {
    let (status, answer) = h.post("/v1/templates", body).await;
    assert_eq!(status, 201, "{answer:#}");
    typed(&answer)
}

#[tokio::test]
async fn each_change_is_a_version_and_old_ones_can_be_read() {
    let h = Herald::start(None).await;
    let v1 = put_template(
        &h,
        json!({"name": "reset", "subject": "Reset {{ user }}", "text": "v1 {{ link }}"}),
    )
    .await;
    assert_eq!(v1.version, 1);
    let (status, _, _) = h
        .request(
            "POST",
            "/v1/templates",
            Some(json!({"name": "reset", "subject": "x", "text": "x"})),
            &[],
        )
        .await;
    assert_eq!(status, 409, "POST of a taken name");

    let answer = h
        .request(
            "PUT",
            "/v1/templates/reset",
            Some(json!({"subject": "Reset {{ user }}", "text": "v2 {{ link }}"})),
            &[],
        )
        .await;
    assert_eq!(answer.0, 200, "{:#}", answer.1);
    let v2: Template = typed(&answer.1);
    assert_eq!(v2.version, 2);

    let (_, latest) = h.get("/v1/templates/reset").await;
    assert_eq!(typed::<Template>(&latest).text.unwrap(), "v2 {{ link }}");
    let (_, old) = h.get("/v1/templates/reset?version=1").await;
    assert_eq!(typed::<Template>(&old), v1);
    let (_, list) = h.get("/v1/templates").await;
    assert_eq!(typed::<TemplateList>(&list).templates, vec![v2]);

    // A message from version 1 says so, and renders version 1.
    let (status, accepted) = h
        .post(
            "/v1/messages",
            json!({"from": "a@example.com", "to": ["b@example.org"], "template": "reset",
                   "template_version": 1, "variables": {"user": "ada", "link": "L"}}),
        )
        .await;
    assert_eq!(status, 202, "{accepted:#}");
    let message = h.message(accepted["id"].as_str().unwrap()).await;
    assert_eq!(message.metadata["herald.template"], "reset");
    assert_eq!(message.metadata["herald.template_version"], "1");
    assert_eq!(message.template.as_deref(), Some("reset"));
    assert_eq!(message.template_version, Some(1));

    // The latest, through this node's cache of compiled versions: a PUT is
    // used by the very next render, never a stale compiled version.
    let render = |expected_version: u32, expected_text: &'static str| {
        let h = &h;
        async move {
            let (status, answer) = h
                .post(
                    "/v1/templates/reset/render",
                    json!({"variables": {"user": "ada", "link": "L"}}),
                )
                .await;
            assert_eq!(status, 200, "{answer:#}");
            let rendered: RenderedTemplate = typed(&answer);
            assert_eq!(rendered.version, expected_version);
            assert_eq!(rendered.text.as_deref(), Some(expected_text));
        }
    };
    render(2, "v2 L").await;
    render(2, "v2 L").await;
    let answer = h
        .request(
            "PUT",
            "/v1/templates/reset",
            Some(json!({"subject": "Reset {{ user }}", "text": "v3 {{ link }}"})),
            &[],
        )
        .await;
    assert_eq!(answer.0, 200, "{:#}", answer.1);
    render(3, "v3 L").await;
    let (status, accepted) = h
        .post(
            "/v1/messages",
            json!({"from": "a@example.com", "to": ["b@example.org"], "template": "reset",
                   "variables": {"user": "ada", "link": "L"}}),
        )
        .await;
    assert_eq!(status, 202, "{accepted:#}");
    let message = h.message(accepted["id"].as_str().unwrap()).await;
    assert_eq!(message.template_version, Some(3));
    // A message without a template says null, in so many words.
    let (status, accepted) = h
        .post(
            "/v1/messages",
            json!({"from": "a@example.com", "to": ["b@example.org"], "subject": "s", "text": "t"}),
        )
        .await;
    assert_eq!(status, 202, "{accepted:#}");
    let (_, plain) = h
        .get(&format!(
            "/v1/messages/{}",
            accepted["id"].as_str().unwrap()
        ))
        .await;
    assert!(
        plain["template"].is_null() && plain.get("template").is_some(),
        "{plain:#}"
    );
    assert!(plain["template_version"].is_null(), "{plain:#}");

    let answer = h.request("DELETE", "/v1/templates/reset", None, &[]).await;
    assert_eq!(answer.0, 204);
    // Created again under the same name: version 1 again, with other text;
    // the version 1 compiled before is not served for it.
    put_template(
        &h,
        json!({"name": "reset", "subject": "Reset {{ user }}", "text": "new {{ link }}"}),
    )
    .await;
    render(1, "new L").await;
    let answer = h.request("DELETE", "/v1/templates/reset", None, &[]).await;
    assert_eq!(answer.0, 204);
    assert_problem(
        &h.request("GET", "/v1/templates/reset", None, &[]).await,
        404,
    );
    h.stop().await.unwrap();
}

#[tokio::test]
async fn the_rendering_table() {
    let h = Herald::start(None).await;
    put_template(
        &h,
        json!({"name": "base", "subject": "-", "text": "== {% block content %}{% endblock %} ==",
               "html": "<main>{{ content }}</main>"}),
    )
    .await;
    put_template(
        &h,
        json!({"name": "hello", "subject": "Hi {{ name }}", "layout": "base",
               "text": "{% extends 'base' %}{% block content %}Hello {{ name }}{% endblock %}",
               "html": "<p>Hello {{ name }}</p>"}),
    )
    .await;
    put_template(
        &h,
        json!({"name": "spin", "subject": "s",
               "text": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"}),
    )
    .await;

    // A <script> variable: escaped in html, untouched in text and subject;
    // the layout wraps both (by extends in text, as content in html).
    let (status, answer) = h
        .post(
            "/v1/templates/hello/render",
            json!({"variables": {"name": "<script>x</script>"}}),
        )
        .await;
    assert_eq!(status, 200, "{answer:#}");
    let rendered: RenderedTemplate = typed(&answer);
    assert_eq!(rendered.subject, "Hi <script>x</script>");
    assert_eq!(rendered.text.unwrap(), "== Hello <script>x</script> ==");
    assert_eq!(
        rendered.html.unwrap(),
        "<main><p>Hello &lt;script&gt;x&lt;&#x2f;script&gt;</p></main>"
    );

    // A missing variable: 422 naming it, and nothing stored.
    let answer = h
        .request(
            "POST",
            "/v1/messages",
            Some(json!({"from": "a@example.com", "to": ["b@example.org"],
                        "template": "hello", "variables": {}})),
            &[],
        )
        .await;
    let problem = assert_problem(&answer, 422);
    assert_eq!(problem.errors[0].field, "variables.name", "{problem:?}");
    assert!(problem.detail.contains("\"name\""), "{}", problem.detail);
    let (_, page) = h.get("/v1/messages").await;
    assert_eq!(
        page["messages"].as_array().unwrap().len(),
        0,
        "nothing stored"
    );

    // Fuel: a template that would run for ever is refused.
    let answer = h
        .request(
            "POST",
            "/v1/templates/spin/render",
            Some(json!({"variables": {}})),
            &[],
        )
        .await;
    let problem = assert_problem(&answer, 422);
    assert!(problem.detail.contains("fuel"), "{}", problem.detail);

    // A template and a body at once, or an unknown template: 422.
    let answer = h
        .request(
            "POST",
            "/v1/messages",
            Some(json!({"from": "a@example.com", "to": ["b@example.org"],
                        "template": "hello", "text": "x", "variables": {"name": "x"}})),
            &[],
        )
        .await;
    assert_eq!(assert_problem(&answer, 422).errors[0].field, "template");
    let answer = h
        .request(
            "POST",
            "/v1/messages",
            Some(json!({"from": "a@example.com", "to": ["b@example.org"], "template": "nope"})),
            &[],
        )
        .await;
    assert_eq!(assert_problem(&answer, 422).errors[0].field, "template");
    // A template that does not parse is refused when stored.
    let answer = h
        .request(
            "POST",
            "/v1/templates",
            Some(json!({"name": "broken", "subject": "x", "text": "{% if %}"})),
            &[],
        )
        .await;
    assert_eq!(assert_problem(&answer, 422).errors[0].field, "text");
    h.stop().await.unwrap();
}

#[tokio::test]
async fn a_batch_of_100_arrives_with_each_recipients_own_values() {
    let relay = TestServer::start(ServerConfig::default()).await.unwrap();
    let h = Herald::start(Some(&relay)).await;
    put_template(
        &h,
        json!({"name": "invoice", "subject": "Invoice {{ number }}",
               "text": "Dear {{ name }}, you owe {{ amount|number }}.",
               "html": "<p>Dear {{ name }}</p>"}),
    )
    .await;
    let messages: Vec<_> = (0..100)
        .map(|i| {
            json!({"from": "billing@example.com", "to": [format!("c{i}@example.org")],
                   "template": "invoice",
                   "variables": {"number": i, "name": format!("Customer {i}"), "amount": 1000 + i}})
        })
        .collect();
    let (status, answer) = h
        .post("/v1/messages/batch", json!({ "messages": messages }))
        .await;
    assert_eq!(status, 200, "{answer:#}");
    let answer: BatchAnswer = typed(&answer);
    assert!(
        answer
            .results
            .iter()
            .all(|r| matches!(r, BatchResult::Accepted(_))),
        "{answer:?}"
    );
    assert!(relay.wait_for_messages(100, Duration::from_secs(30)).await);
    let mut seen = 0;
    for received in relay.messages() {
        let i: usize = received.rcpt_to[0]
            .trim_start_matches('c')
            .trim_end_matches("@example.org")
            .parse()
            .unwrap();
        let mail = MessageParser::default().parse(&received.data).unwrap();
        assert_eq!(mail.subject(), Some(format!("Invoice {i}").as_str()));
        assert_eq!(
            mail.body_text(0).unwrap().trim_end(),
            format!("Dear Customer {i}, you owe 1,{:03}.00.", i)
        );
        assert_eq!(
            mail.body_html(0).unwrap().trim_end(),
            format!("<p>Dear Customer {i}</p>")
        );
        seen += 1;
    }
    assert_eq!(seen, 100);
    h.stop().await.unwrap();
}
