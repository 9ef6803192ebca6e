//! What the API contract tests check again and again: that an answer is a
//! well-formed problem, what the store holds, and requests the harness's
//! client cannot make (no key at all, any method, transport errors kept).

use herald_api::{MessagePage, Problem};
use serde_json::Value;

use super::{Herald, KEY, typed};

/// A response as the tests see it: status, JSON (or the text as a JSON
/// string), headers with lower-case names.
pub(crate) type Answer = (u16, Value, Vec<(String, String)>);

/// The value of header `name` (case-insensitive), if present.
pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Asserts an RFC 9457 problem with `status`, as a client checks one: the
/// status line, `Content-Type: application/problem+json`, and a body with
/// `type`, `title`, the same `status` and a `detail`. Returns the body.
#[track_caller]
pub(crate) fn assert_problem(answer: &Answer, status: u16) -> Problem {
    let (got, body, headers) = answer;
    assert_eq!(*got, status, "status; body: {body:#}");
    let content_type = header(headers, "content-type").unwrap_or("");
    assert!(
        content_type.starts_with(herald_api::PROBLEM_CONTENT_TYPE),
        "content-type {content_type:?} for {status}; body: {body:#}"
    );
    let problem: Problem = typed(body);
    assert!(problem.kind.starts_with("/problems/"), "type: {body:#}");
    assert!(!problem.title.is_empty(), "title: {body:#}");
    assert_eq!(problem.status, status, "status in the body: {body:#}");
    assert!(!problem.detail.is_empty(), "detail: {body:#}");
    problem
}

/// Asserts a 422 validation problem and that one of its `errors` names
/// `field` (exactly, or by prefix when `field` ends with `*`).
#[track_caller]
pub(crate) fn assert_invalid(answer: &Answer, field: &str) -> Problem {
    let body = assert_problem(answer, 422);
    assert_eq!(body.kind, "/problems/validation", "{body:#?}");
    let fields = error_fields(&body);
    let named = match field.strip_suffix('*') {
        Some(prefix) => fields.iter().any(|f| f.starts_with(prefix)),
        None => fields.iter().any(|f| f == field),
    };
    assert!(named, "no error names {field:?}; errors: {fields:?}");
    body
}

/// The `field` of each entry of a problem's `errors`.
pub(crate) fn error_fields(problem: &Problem) -> Vec<String> {
    problem.errors.iter().map(|e| e.field.clone()).collect()
}

/// Every message id the store lists for `query` (following cursors),
/// newest first.
pub(crate) async fn all_ids(herald: &Herald, query: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!(
            "/v1/messages?limit=500{}",
            if query.is_empty() { "" } else { "&" }
        );
        path.push_str(query);
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = herald.get(&path).await;
        assert_eq!(status, 200, "{path}: {page:#}");
        let page: MessagePage = typed(&page);
        ids.extend(page.messages.into_iter().map(|m| m.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

/// Asserts that the store holds no message at all.
pub(crate) async fn assert_nothing_stored(herald: &Herald) {
    let ids = all_ids(herald, "").await;
    assert!(ids.is_empty(), "stored: {ids:?}");
}

/// Which key to present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth<'a> {
    /// No `Authorization` header at all.
    None,
    /// The test key.
    Key,
    /// This exact header value.
    Header(&'a str),
}

/// Any method, raw body bytes, the key as chosen; transport errors are
/// returned rather than panicking (a server may close early on a body it
/// refuses).
pub(crate) async fn send(
    herald: &Herald,
    method: &str,
    path: &str,
    auth: Auth<'_>,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Answer, String> {
    use ureq::http;
    let url = format!("{}{}", herald.base, path);
    let mut builder = http::Request::builder().method(method).uri(&url);
    match auth {
        Auth::None => {}
        Auth::Key => builder = builder.header("Authorization", format!("Bearer {KEY}")),
        Auth::Header(value) => builder = builder.header("Authorization", value),
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let has_body = body.is_some();
    if has_body
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        builder = builder.header("Content-Type", "application/json");
    }
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .allow_non_standard_methods(true)
            .build()
            .into();
        let response = match body {
            Some(bytes) => agent.run(builder.body(bytes).map_err(|e| e.to_string())?),
            None => agent.run(builder.body(()).map_err(|e| e.to_string())?),
        }
        .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let text = response.into_body().read_to_string().unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, json, headers))
    })
    .await
    .unwrap()
}

/// `POST path` with `body` as JSON and the given extra headers.
pub(crate) async fn post_with(
    herald: &Herald,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> Answer {
    herald.request("POST", path, Some(body), headers).await
}

/// `POST path` with a raw (possibly not JSON) body.
pub(crate) async fn post_raw(herald: &Herald, path: &str, raw: &str) -> Answer {
    herald
        .request("POST", path, Some(Value::String(raw.to_owned())), &[])
        .await
}

/// `GET path`, keeping the headers.
pub(crate) async fn get_full(herald: &Herald, path: &str) -> Answer {
    herald.request("GET", path, None, &[]).await
}

/// An RFC 3339 time `seconds` from now.
// The service under test runs on the system clock.
#[allow(clippy::disallowed_methods)]
pub(crate) fn in_seconds(seconds: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}
