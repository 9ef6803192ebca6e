//! `herald queue`: look at and act on the queue of a running herald over its
//! HTTP API — list, show, retry, cancel. Answers are read into herald-api's
//! types, the same the server writes.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use herald_api::{ListQuery, MAX_LIST_LIMIT, Message, MessagePage, MessageStatus, Problem};
use serde::de::DeserializeOwned;

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
        status: Option<MessageStatus>,
        /// Only messages with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only messages to this recipient.
        #[arg(long)]
        recipient: Option<String>,
        /// How many (at most 500).
        #[arg(long, default_value_t = 50)]
        limit: usize,
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
    let client = Client {
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build()
            .into(),
        auth: format!("Bearer {key}"),
    };
    let message_url = |id: &str, action: &str| format!("{base}/v1/messages/{}{action}", encode(id));
    match args.action {
        QueueAction::List {
            status,
            tag,
            recipient,
            limit,
            cursor,
        } => {
            if !(1..=MAX_LIST_LIMIT).contains(&limit) {
                return Err(Failure::input("--limit: a number from 1 to 500"));
            }
            let query = ListQuery {
                status,
                tag,
                recipient,
                limit: Some(limit),
                cursor,
                ..ListQuery::default()
            };
            let url = format!("{base}/v1/messages?{}", query.to_query_string());
            let page: MessagePage = client.call("GET", &url)?;
            print_list(&page);
        }
        QueueAction::Show { id } => print_message(&client.call("GET", &message_url(&id, ""))?),
        QueueAction::Retry { id } => {
            print_message(&client.call("POST", &message_url(&id, "/retry"))?);
        }
        QueueAction::Cancel { id } => {
            print_message(&client.call("POST", &message_url(&id, "/cancel"))?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An HTTP client of one server with one key.
struct Client {
    agent: ureq::Agent,
    auth: String,
}

impl Client {
    /// `method url` (a POST without a body), its answer read as `T`; an
    /// error answer becomes a failure that says its status and detail.
    fn call<T: DeserializeOwned>(&self, method: &str, url: &str) -> Result<T, Failure> {
        let request = if method == "GET" {
            self.agent
                .get(url)
                .header("Authorization", &self.auth)
                .call()
        } else {
            self.agent
                .post(url)
                .header("Authorization", &self.auth)
                .send_empty()
        };
        let response = request.map_err(|e| Failure::Fault(anyhow::anyhow!("{url}: {e}")))?;
        let status = response.status().as_u16();
        let text = response
            .into_body()
            .read_to_string()
            .map_err(|e| Failure::Fault(anyhow::anyhow!("{url}: unreadable answer: {e}")))?;
        if status >= 400 {
            let detail = serde_json::from_str::<Problem>(&text)
                .map(|problem| problem.detail)
                .unwrap_or_else(|_| "request failed".to_owned());
            return Err(Failure::Fault(anyhow::anyhow!("{status}: {detail}")));
        }
        serde_json::from_str(&text)
            .map_err(|e| Failure::Fault(anyhow::anyhow!("{url}: unexpected answer: {e}")))
    }
}

fn print_message(message: &Message) {
    println!(
        "{}",
        serde_json::to_string_pretty(message).unwrap_or_default()
    );
}

fn print_list(page: &MessagePage) {
    println!(
        "{:<26}  {:<10}  {:<20}  {:>8}  recipients",
        "id", "status", "created", "attempts"
    );
    for m in &page.messages {
        let recipients: Vec<&str> = m.recipients.iter().map(|r| r.address.as_str()).collect();
        let created = m
            .created_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        println!(
            "{:<26}  {:<10}  {:<20}  {:>8}  {}",
            m.id,
            m.status,
            created.get(..19).unwrap_or(&created),
            m.attempts,
            recipients.join(", ")
        );
    }
    if let Some(cursor) = &page.next_cursor {
        println!("next page: --cursor {cursor}");
    }
}

/// Percent-encodes a path segment or query value.
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
