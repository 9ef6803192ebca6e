//! `/metrics` end to end: a scripted run against the testkit moves every
//! counter by exactly what happened; the scrape passes `promtool check
//! metrics`; labels never carry an address or a message id; and every
//! metric the dashboard, the alert rules and the operations guide name is
//! really exported (and the other way round).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::api::header;
use common::{Herald, message};
use herald_server::api::ROUTES;
use herald_server::observe::metrics as m;
use herald_testkit::{ServerConfig, TestServer};
use serde_json::{Value, json};

/// One sample line: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape.
#[derive(Debug)]
struct Scrape {
    text: String,
    /// `# TYPE` lines: family name → type.
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                types.insert(name.to_owned(), kind.to_owned());
            } else if !line.is_empty() && !line.starts_with('#') {
                samples.push(parse_sample(line));
            }
        }
        Scrape {
            text,
            types,
            samples,
        }
    }

    /// The value of the one series `name` whose labels include `labels`.
    #[track_caller]
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<_> = self.matching(name, labels).collect();
        assert_eq!(
            found.len(),
            1,
            "{name}{labels:?}: {found:?}\n--- scrape ---\n{}",
            self.text
        );
        found[0].value
    }

    /// The sum over every series `name` whose labels include `labels`
    /// (0 when there is none).
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Whether `name` is exported: a family, or a histogram's series.
    fn exports(&self, name: &str) -> bool {
        if self.types.contains_key(name) {
            return true;
        }
        ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| self.types.get(base).is_some_and(|t| t == "histogram"))
        })
    }
}

/// `name{k="v",…} value` (label values unescaped).
fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').unwrap();
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("value in {line:?}")),
    };
    let Some((name, rest)) = series.split_once('{') else {
        return Sample {
            name: series.to_owned(),
            labels: BTreeMap::new(),
            value,
        };
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.strip_suffix('}').unwrap().chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "{line}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => panic!("{line}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

async fn scrape(herald: &Herald) -> Scrape {
    let (status, body, headers) = herald.request("GET", "/metrics", None, &[]).await;
    assert_eq!(status, 200, "{body}");
    let content_type = header(&headers, "content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(body.as_str().expect("a text body").to_owned())
}

/// Scrapes until every one of `finished` messages reached a final status
/// and no delivery runs any more (the API can show a message final a
/// moment before the dispatcher has counted it).
async fn settled(herald: &Herald, finished: f64) -> Scrape {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let scrape = scrape(herald).await;
        if scrape.sum(m::MESSAGES_FINISHED, &[]) >= finished
            && scrape.value(m::DELIVERIES_IN_FLIGHT, &[]) == 0.0
        {
            return scrape;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never settled:\n{}",
            scrape.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post_ok(herald: &Herald, to: &str) -> String {
    let (status, created) = herald.post("/v1/messages", message(&[to])).await;
    assert_eq!(status, 202, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_run_moves_every_counter_by_exactly_what_happened() {
    let smtp = TestServer::start(ServerConfig::default()).await.unwrap();
    let herald = Herald::start(Some(&smtp)).await;
    // A second server in the same process, writing to its outbox: its
    // figures must not leak into the first one's (nor the other way).
    let other = Herald::start(None).await;

    let batch: Vec<Value> = (0..10).map(|_| message(&["ok@example.com"])).collect();
    let (status, answer) = herald
        .post("/v1/messages/batch", json!({ "messages": batch }))
        .await;
    assert_eq!(status, 200, "{answer}");
    let mut ids: Vec<String> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    for i in 0..3 {
        ids.push(post_ok(&herald, &format!("rcpt451-once-{i}@example.com")).await);
    }
    // Two dead addresses (one would be suppressed the second time).
    for i in 0..2 {
        ids.push(post_ok(&herald, &format!("rcpt550.{i}@example.com")).await);
    }
    post_ok(&other, "someone@example.com").await;
    // Two answers that are not 2xx: no route, and no key.
    let (status, _, _) = herald.request("GET", "/no/such/route", None, &[]).await;
    assert_eq!(status, 404);
    let (status, _, _) = herald
        .request(
            "GET",
            "/v1/messages",
            None,
            &[("Authorization", "Bearer wrong")],
        )
        .await;
    assert_eq!(status, 401);

    let s = settled(&herald, 15.0).await;
    let relay = ("relay", "test");

    assert_eq!(s.value(m::MESSAGES_ACCEPTED, &[("source", "batch")]), 10.0);
    assert_eq!(s.value(m::MESSAGES_ACCEPTED, &[("source", "api")]), 5.0);
    for (outcome, n) in [
        ("delivered", 13.0),
        ("transient", 3.0),
        ("permanent", 2.0),
        ("partial", 0.0),
        ("error", 0.0),
    ] {
        let labels = [relay, ("outcome", outcome)];
        assert_eq!(s.value(m::DELIVERY_ATTEMPTS, &labels), n, "{outcome}");
    }
    let attempt_count = format!("{}_count", m::DELIVERY_ATTEMPT_DURATION);
    assert_eq!(s.value(&attempt_count, &[relay]), 18.0);
    let attempt_inf = format!("{}_bucket", m::DELIVERY_ATTEMPT_DURATION);
    assert_eq!(s.value(&attempt_inf, &[relay, ("le", "+Inf")]), 18.0);
    for (class, n) in [("2xx", 13.0), ("4xx", 3.0), ("5xx", 2.0), ("none", 0.0)] {
        assert_eq!(
            s.value(m::SMTP_REPLIES, &[relay, ("class", class)]),
            n,
            "{class}"
        );
    }
    for (outcome, n) in [
        ("delivered", 13.0),
        ("deferred", 3.0),
        ("failed", 2.0),
        ("suppressed", 0.0),
    ] {
        assert_eq!(s.value(m::RECIPIENTS, &[("outcome", outcome)]), n);
    }
    for (class, n) in [
        ("invalid_recipient", 2.0),
        ("rate_limited", 3.0),
        ("policy", 0.0),
    ] {
        assert_eq!(
            s.value(m::RECIPIENT_CLASSES, &[("class", class)]),
            n,
            "{class}"
        );
    }
    assert_eq!(s.value(m::SUPPRESSIONS_ADDED, &[("reason", "bounce")]), 2.0);
    assert_eq!(s.value(m::SUPPRESSIONS_ADDED, &[("reason", "manual")]), 0.0);
    for (status, n) in [
        ("delivered", 13.0),
        ("failed", 2.0),
        ("partial", 0.0),
        ("cancelled", 0.0),
    ] {
        assert_eq!(s.value(m::MESSAGES_FINISHED, &[("status", status)]), n);
    }
    assert_eq!(s.value(m::RETRIES_SCHEDULED, &[relay]), 3.0);
    let latency_count = format!("{}_count", m::ACCEPT_TO_DELIVERY);
    assert_eq!(s.value(&latency_count, &[]), 13.0);
    let latency_sum = format!("{}_sum", m::ACCEPT_TO_DELIVERY);
    assert!(s.value(&latency_sum, &[]) > 0.0);
    assert_eq!(s.value(m::DELIVERIES_IN_FLIGHT, &[]), 0.0);

    // Sampled at scrape time.
    assert_eq!(s.value(m::QUEUE_MESSAGES, &[("status", "delivered")]), 13.0);
    assert_eq!(s.value(m::QUEUE_MESSAGES, &[("status", "failed")]), 2.0);
    assert_eq!(s.sum(m::QUEUE_MESSAGES, &[]), 15.0);
    assert_eq!(s.value(m::QUEUE_OLDEST_DUE_AGE, &[]), 0.0);
    let open = s.value(m::RELAY_CONNECTIONS_OPEN, &[relay]);
    let idle = s.value(m::RELAY_CONNECTIONS_IDLE, &[relay]);
    assert!((1.0..=4.0).contains(&open), "open {open}");
    assert!(idle <= open, "idle {idle} open {open}");
    let opened = s.value(m::RELAY_CONNECTIONS_OPENED, &[relay]);
    let reused = s.value(m::RELAY_CONNECTIONS_REUSED, &[relay]);
    assert!(
        opened >= open && opened + reused >= 18.0,
        "{opened} {reused}"
    );
    assert_eq!(s.value(m::RELAY_CIRCUIT_STATE, &[relay]), 0.0);
    let version = ("version", env!("CARGO_PKG_VERSION"));
    assert_eq!(s.value(m::BUILD_INFO, &[version]), 1.0);

    // HTTP, by route template.
    let requests = |route, method, status| {
        s.value(
            m::HTTP_REQUESTS,
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(requests("/v1/messages", "POST", "202"), 5.0);
    assert_eq!(requests("/v1/messages/batch", "POST", "200"), 1.0);
    assert_eq!(requests("/v1/messages", "GET", "401"), 1.0);
    assert_eq!(requests("unmatched", "GET", "404"), 1.0);
    let http_count = format!("{}_count", m::HTTP_REQUEST_DURATION);
    assert_eq!(
        s.value(
            &http_count,
            &[("route", "/v1/messages"), ("method", "POST")]
        ),
        5.0
    );

    // Bounded labels: no address, no id, no concrete path.
    let templates: BTreeSet<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    for sample in &s.samples {
        for (key, value) in &sample.labels {
            assert!(!value.contains('@'), "{sample:?}");
            assert!(!ids.iter().any(|id| value.contains(id)), "{sample:?}");
            if key == "route" {
                assert!(
                    templates.contains(value.as_str()) || value == "unmatched",
                    "{sample:?}"
                );
            }
        }
    }

    // The other server saw its own message only.
    let o = settled(&other, 1.0).await;
    assert_eq!(o.value(m::MESSAGES_ACCEPTED, &[("source", "api")]), 1.0);
    assert_eq!(o.value(m::MESSAGES_ACCEPTED, &[("source", "batch")]), 0.0);
    let outbox = [("relay", "outbox"), ("outcome", "delivered")];
    assert_eq!(o.value(m::DELIVERY_ATTEMPTS, &outbox), 1.0);
    assert_eq!(o.sum(m::DELIVERY_ATTEMPTS, &[relay]), 0.0);
    assert_eq!(
        o.value(m::MESSAGES_FINISHED, &[("status", "delivered")]),
        1.0
    );
    // …and the first one none of it.
    let s = scrape(&herald).await;
    assert_eq!(s.sum(m::DELIVERY_ATTEMPTS, &[("relay", "outbox")]), 0.0);
    assert_eq!(s.value(m::MESSAGES_ACCEPTED, &[("source", "api")]), 5.0);

    other.stop().await.unwrap();
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_message_is_counted_finished_once() {
    let herald = Herald::start(None).await;
    let mut later = message(&["later@example.com"]);
    later["send_at"] = json!("2999-01-01T00:00:00Z");
    let (status, created) = herald.post("/v1/messages", later).await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap();
    let s = scrape(&herald).await;
    assert_eq!(s.value(m::QUEUE_MESSAGES, &[("status", "scheduled")]), 1.0);
    let (status, _) = herald
        .post(&format!("/v1/messages/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = herald
        .post(&format!("/v1/messages/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 409);
    let s = scrape(&herald).await;
    assert_eq!(
        s.value(m::MESSAGES_FINISHED, &[("status", "cancelled")]),
        1.0
    );
    assert_eq!(s.value(m::QUEUE_MESSAGES, &[("status", "cancelled")]), 1.0);
    assert_eq!(s.value(m::QUEUE_MESSAGES, &[("status", "scheduled")]), 0.0);
    herald.stop().await.unwrap();
}

/// A server that has seen a delivery, a deferral, a refusal and a 404, so
/// that every family has samples; with an alert channel (whose rule never
/// fires), so that the channels' families have samples too.
async fn busy_scrape() -> Scrape {
    let smtp = TestServer::start(ServerConfig::default()).await.unwrap();
    let alerts = common::relay_alert_toml("http://127.0.0.1:9/hook", 1000);
    let (hook, _) = common::webhook_receiver().await;
    let webhooks = format!(
        "[[webhooks]]\nname = \"app\"\nurl = \"{hook}\"\nsecret_env = \"WEBHOOK_SECRET\"\n"
    );
    let herald = Herald::start_with(Some(&smtp), &format!("{alerts}\n{webhooks}")).await;
    for to in [
        "ok@example.com",
        "rcpt451-once@example.com",
        "rcpt550@example.com",
    ] {
        post_ok(&herald, to).await;
    }
    herald.request("GET", "/nowhere", None, &[]).await;
    let scrape = settled(&herald, 3.0).await;
    herald.stop().await.unwrap();
    scrape
}

fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("promtool"))
        .find(|path| path.is_file());
    found.unwrap_or_else(|| {
        let fallback = PathBuf::from("/usr/bin/promtool");
        assert!(
            fallback.is_file(),
            "promtool not found; scripts/deps installs it (Debian's prometheus package)"
        );
        fallback
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrape_passes_promtool_check_metrics() {
    let scrape = busy_scrape().await;
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics ({}):\n{said}\n--- scrape ---\n{}",
        output.status,
        scrape.text
    );
}

fn repo_file(path: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

/// Every `herald_…` identifier in `text` (PromQL, YAML, prose).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("herald_") {
        let start = i + at;
        let preceded = start > 0 && {
            let c = bytes[start - 1];
            c.is_ascii_alphanumeric() || c == b'_'
        };
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |n| start + n);
        let name = &text[start..end];
        // A prefix in prose (`herald_`, `herald_queue_*`) names no metric.
        if !preceded && !name.ends_with('_') {
            names.insert(name.to_owned());
        }
        i = end;
    }
    names
}

/// Every PromQL expression in the dashboard (panel targets and template
/// variable queries).
fn dashboard_exprs(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    ("query", Value::String(q)) => out.push(q.clone()),
                    ("query", Value::Object(q)) => {
                        if let Some(Value::String(q)) = q.get("query") {
                            out.push(q.clone());
                        }
                    }
                    _ => dashboard_exprs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_rules_and_docs_name_is_exported() {
    let scrape = busy_scrape().await;

    let (_, dashboard) = repo_file("deploy/grafana/herald.json");
    let dashboard: Value = serde_json::from_str(&dashboard).unwrap();
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // (The SLO line, `vector($slo)`, names no metric.)
    let names: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(names.len() >= 15, "{names:?}");
    used.insert("deploy/grafana/herald.json".into(), names);

    let (_, rules) = repo_file("deploy/prometheus/alerts.yml");
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&rules).unwrap();
    let groups = rules["groups"].as_sequence().unwrap();
    let mut alerts = 0;
    for group in groups {
        for rule in group["rules"].as_sequence().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            alerts += 1;
            let names = metric_names(expr);
            assert!(!names.is_empty() || expr.contains("up"), "{expr}");
            used.entry("deploy/prometheus/alerts.yml".into())
                .or_default()
                .extend(names);
        }
    }
    assert!(alerts >= 5, "{alerts} rules");

    // The unit tests' input series and the guide must name real metrics too.
    let tests_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus/tests");
    for entry in std::fs::read_dir(&tests_dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        used.entry(path.display().to_string())
            .or_default()
            .extend(metric_names(&text));
    }
    let (_, guide) = repo_file("docs/operations.md");
    used.entry("docs/operations.md".into())
        .or_default()
        .extend(metric_names(&guide));

    let mut missing = Vec::new();
    for (file, names) in &used {
        for name in names {
            if !scrape.exports(name) {
                missing.push(format!("{file}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not exported:\n{}\n--- scrape ---\n{}",
        missing.join("\n"),
        scrape.text
    );

    // The other way: every family exported is a declared constant, and the
    // guide documents each one.
    let declared: BTreeSet<&str> = m::ALL.iter().copied().collect();
    for family in scrape.types.keys() {
        assert!(declared.contains(family.as_str()), "undeclared {family}");
    }
    for name in m::ALL {
        assert!(scrape.types.contains_key(*name), "{name} not exported");
        assert!(
            guide.contains(&format!("`{name}`")),
            "docs/operations.md does not document {name}"
        );
    }
}
