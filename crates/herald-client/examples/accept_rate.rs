//! The accept rate of `POST /v1/messages` with a stored template against
//! the same run with plain bodies: an in-process `herald serve` (SQLite,
//! delivering to its outbox directory), 16 concurrent clients.
//!
//! `cargo run --release -p herald-client --example accept_rate [N] [ROUNDS]`
//! (N messages per run, default 4000; ROUNDS runs of each mode, alternating,
//! default 3; the best runs of each mode are compared, and the medians).
//! `HERALD_BENCH_STORE=postgres://postgres@127.0.0.1/bench` measures on
//! PostgreSQL instead (an empty database of its own: `createdb bench`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::time::Instant;

use herald_api::{MessageRequest, TemplateRequest};
use herald_client::Client;
use herald_server::config::Config;
use herald_server::{open_store, serve};

const KEY: &str = "bench-key-0123456789abcdef";
const CLIENTS: usize = 16;

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(4000);
    let rounds: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let dir = std::env::temp_dir().join(format!("herald-bench-{}", herald_message::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!(
        "[server]\nhttp_listen = \"127.0.0.1:0\"\n[store]\nurl = \"{store}\"\n\
         [auth]\napi_keys = [\"{KEY}\"]\n[limits]\nmax_queue_depth = 1000000\n\
         [outbox]\ndir = \"{d}/outbox\"\n",
        d = dir.display(),
        store = std::env::var("HERALD_BENCH_STORE")
            .unwrap_or_else(|_| format!("sqlite://{}/herald.db", dir.display())),
    );
    let config = Config::from_toml_str(&text, &|_| None).unwrap();
    let store = open_store(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(config, store, listener, std::future::pending()));
    let client = Client::new(&base, KEY).unwrap();
    client
        .create_template(&TemplateRequest {
            name: Some("receipt".into()),
            subject: "Your receipt {{ number }}".into(),
            text: Some("Dear {{ name }},\n\nyou paid {{ amount|number }} on {{ at|dateformat(tz='Europe/Paris') }}.\n{% for item in items %}- {{ item }}\n{% endfor %}".into()),
            html: Some("<p>Dear {{ name }},</p><p>you paid {{ amount|number }}.</p><ul>{% for item in items %}<li>{{ item }}</li>{% endfor %}</ul>".into()),
            layout: None,
        })
        .await
        .unwrap();

    let plain = |i: usize| MessageRequest {
        from: Some("shop@example.com".into()),
        to: vec![format!("c{i}@example.org")],
        subject: Some(format!("Your receipt {i}")),
        text: Some(format!(
            "Dear Customer {i},\n\nyou paid 1,234.50 on 2026-01-02.\n- a\n- b\n"
        )),
        html: Some(format!(
            "<p>Dear Customer {i},</p><p>you paid 1,234.50.</p><ul><li>a</li><li>b</li></ul>"
        )),
        ..MessageRequest::default()
    };
    let templated = |i: usize| MessageRequest {
        from: Some("shop@example.com".into()),
        to: vec![format!("c{i}@example.org")],
        template: Some("receipt".into()),
        variables: serde_json::json!({"number": i, "name": format!("Customer {i}"),
            "amount": 1234.5, "at": "2026-01-02T20:30:00Z", "items": ["a", "b"]})
        .as_object()
        .cloned(),
        ..MessageRequest::default()
    };
    // Warm-up, then each mode `rounds` times, alternating.
    run(&client, 200, &plain).await;
    run(&client, 200, &templated).await;
    let mut rates = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        rates.0.push(run(&client, n, &plain).await);
        rates.1.push(run(&client, n, &templated).await);
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let median = |v: &[f64]| {
        let mut sorted = v.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    let (p, t) = (best(&rates.0), best(&rates.1));
    let (pm, tm) = (median(&rates.0), median(&rates.1));
    println!(
        "plain bodies: {p:.0} accepted/s best, {pm:.0} median (runs {:?})",
        rates.0
    );
    println!(
        "templates:    {t:.0} accepted/s best, {tm:.0} median (runs {:?})",
        rates.1
    );
    println!(
        "template cost: {:.1} % (best against best), {:.1} % (median against median)",
        (1.0 - t / p) * 100.0,
        (1.0 - tm / pm) * 100.0
    );
}

async fn run(client: &Client, n: usize, make: &(dyn Fn(usize) -> MessageRequest + Sync)) -> f64 {
    let start = Instant::now();
    let per = n / CLIENTS;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let client = client.clone();
        let requests: Vec<_> = (0..per).map(|i| make(c * per + i)).collect();
        tasks.push(tokio::spawn(async move {
            for request in requests {
                client.send(&request).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed: Duration = start.elapsed();
    ((per * CLIENTS) as f64 / elapsed.as_secs_f64()).round()
}
