//! `herald queue`: look at and act on the queue of a running herald over its
//! HTTP API — list, show, retry, cancel — through herald-client, which
//! reads the answers as herald-api's types and retries 429/503.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use herald_api::{ListQuery, MAX_LIST_LIMIT, Message, MessagePage, MessageStatus};
use herald_client::Error as ClientError;

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
    let (client, runtime) = crate::remote::connect(&args.server, args.api_key.as_deref())?;
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
            print_list(&runtime.block_on(client.list(&query)).map_err(failure)?);
        }
        QueueAction::Show { id } => {
            print_message(&runtime.block_on(client.get(&id)).map_err(failure)?);
        }
        QueueAction::Retry { id } => {
            print_message(&runtime.block_on(client.retry(&id)).map_err(failure)?);
        }
        QueueAction::Cancel { id } => {
            print_message(&runtime.block_on(client.cancel(&id)).map_err(failure)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A failed call as one line: the server's status and detail when it
/// answered, what went wrong otherwise.
pub(crate) fn failure(error: ClientError) -> Failure {
    match error.problem() {
        Some(problem) => Failure::Fault(anyhow::anyhow!("{}: {}", problem.status, problem.detail)),
        None => Failure::Fault(anyhow::anyhow!("{error}")),
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
