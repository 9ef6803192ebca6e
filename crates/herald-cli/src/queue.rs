//! `herald queue`: look at and act on the queue of a running herald over its
//! HTTP API — list, show, retry, cancel.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::exit::Failure;

#[derive(Debug, Args)]
pub(crate) struct QueueArgs {
    /// The herald server's base URL.
    #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The API key (or set HERALD_API_KEY).
    #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[command(subcommand)]
    action: QueueAction,
}

#[derive(Debug, Subcommand)]
enum QueueAction {
    /// List messages, newest first.
    List {
        /// Only this status (queued, deferred, delivered, failed, …).
        #[arg(long)]
        status: Option<String>,
        /// Only messages with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only messages to this recipient.
        #[arg(long)]
        recipient: Option<String>,
        /// How many (at most 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue from a previous page's next_cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one message with its recipients and history (JSON).
    Show {
        /// The message id.
        id: String,
    },
    /// Put a failed or partial message's failed recipients back in the queue.
    Retry {
        /// The message id.
        id: String,
    },
    /// Stop a message that is not final yet.
    Cancel {
        /// The message id.
        id: String,
    },
}

pub(crate) fn run(args: QueueArgs) -> Result<ExitCode, Failure> {
    let key = args
        .api_key
        .clone()
        .ok_or_else(|| Failure::input("--api-key: required (or set HERALD_API_KEY)"))?;
    let base = args.server.trim_end_matches('/');
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let auth = format!("Bearer {key}");
    let (method, url) = match &args.action {
        QueueAction::List {
            status,
            tag,
            recipient,
            limit,
            cursor,
        } => {
            let mut query = vec![format!("limit={limit}")];
            for (name, value) in [
                ("status", status),
                ("tag", tag),
                ("recipient", recipient),
                ("cursor", cursor),
            ] {
                if let Some(value) = value {
                    query.push(format!("{name}={}", encode(value)));
                }
            }
            ("GET", format!("{base}/v1/messages?{}", query.join("&")))
        }
        QueueAction::Show { id } => ("GET", format!("{base}/v1/messages/{}", encode(id))),
        QueueAction::Retry { id } => ("POST", format!("{base}/v1/messages/{}/retry", encode(id))),
        QueueAction::Cancel { id } => ("POST", format!("{base}/v1/messages/{}/cancel", encode(id))),
    };
    let response = if method == "GET" {
        agent.get(&url).header("Authorization", &auth).call()
    } else {
        agent.post(&url).header("Authorization", &auth).send_empty()
    }
    .map_err(|e| Failure::Fault(anyhow::anyhow!("{url}: {e}")))?;
    let status = response.status().as_u16();
    let body: Value = response
        .into_body()
        .read_json()
        .map_err(|e| Failure::Fault(anyhow::anyhow!("{url}: unreadable answer: {e}")))?;
    if status >= 400 {
        let detail = body["detail"].as_str().unwrap_or("request failed");
        return Err(Failure::Fault(anyhow::anyhow!("{status}: {detail}")));
    }
    match args.action {
        QueueAction::List { .. } => print_list(&body),
        _ => println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_list(body: &Value) {
    let empty = Vec::new();
    let messages = body["messages"].as_array().unwrap_or(&empty);
    println!(
        "{:<26}  {:<10}  {:<20}  {:>8}  recipients",
        "id", "status", "created", "attempts"
    );
    for m in messages {
        let recipients: Vec<_> = m["recipients"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .filter_map(|r| r["address"].as_str())
            .collect();
        println!(
            "{:<26}  {:<10}  {:<20}  {:>8}  {}",
            m["id"].as_str().unwrap_or(""),
            m["status"].as_str().unwrap_or(""),
            m["created_at"]
                .as_str()
                .unwrap_or("")
                .get(..19)
                .unwrap_or(""),
            m["attempts"].as_u64().unwrap_or(0),
            recipients.join(", ")
        );
    }
    if let Some(cursor) = body["next_cursor"].as_str() {
        println!("next page: --cursor {cursor}");
    }
}

/// Percent-encodes a query or path value.
pub(crate) fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
