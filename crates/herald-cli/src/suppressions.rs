//! `herald suppressions`: read and edit a running herald's suppression list
//! over its HTTP API — list, add, remove — through herald-client.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use herald_api::{
    AddResults, AddStatus, AddSuppressions, SuppressionPage, SuppressionQuery, SuppressionReason,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::exit::{BAD_INPUT, Failure};
use crate::queue::failure;

#[derive(Debug, Args)]
pub(crate) struct SuppressionsArgs {
    /// The herald server's base URL.
    #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The API key (or set HERALD_API_KEY).
    #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// List the entries, newest first.
    List {
        /// Only this reason (bounce, complaint, manual).
        #[arg(long)]
        reason: Option<String>,
        /// Only entries added at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// How many (at most 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue from a previous page's next_cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Put addresses on the list (up to 1000 at once).
    Add {
        /// The addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
        /// Why (manual, complaint, bounce).
        #[arg(long, default_value = "manual")]
        reason: String,
    },
    /// Take an address off the list: mail to it flows again.
    Remove {
        /// The address.
        address: String,
    },
}

pub(crate) fn run(args: SuppressionsArgs) -> Result<ExitCode, Failure> {
    let (client, runtime) = crate::remote::connect(&args.server, args.api_key.as_deref())?;
    match args.action {
        Action::List {
            reason,
            since,
            limit,
            cursor,
        } => {
            let query = SuppressionQuery {
                reason: reason
                    .map(|r| r.parse::<SuppressionReason>())
                    .transpose()
                    .map_err(|e| Failure::input(format!("--reason: {e}")))?,
                since: since
                    .map(|t| OffsetDateTime::parse(&t, &Rfc3339))
                    .transpose()
                    .map_err(|_| Failure::input("--since: not an RFC 3339 time"))?,
                limit: Some(limit as usize),
                cursor,
            };
            print_list(
                &runtime
                    .block_on(client.suppression_page(&query))
                    .map_err(failure)?,
            );
        }
        Action::Add { addresses, reason } => {
            let add = AddSuppressions {
                addresses,
                reason: reason
                    .parse()
                    .map_err(|e| Failure::input(format!("--reason: {e}")))?,
                expires_at: None,
            };
            let results = runtime
                .block_on(client.add_suppressions(&add))
                .map_err(failure)?;
            return Ok(print_added(&results));
        }
        Action::Remove { address } => {
            runtime
                .block_on(client.remove_suppression(&address))
                .map_err(failure)?;
            println!("removed {address}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_list(page: &SuppressionPage) {
    println!(
        "{:<20}  {:<9}  {:<40}  response",
        "created", "reason", "address"
    );
    for entry in &page.suppressions {
        let created = entry.created_at.format(&Rfc3339).unwrap_or_default();
        println!(
            "{:<20}  {:<9}  {:<40}  {}",
            created.get(..19).unwrap_or(""),
            entry.reason.as_str(),
            entry.address,
            entry.response.as_deref().unwrap_or(""),
        );
    }
    if let Some(cursor) = &page.next_cursor {
        println!("next page: --cursor {cursor}");
    }
}

/// One line per address; exit status 2 if any address was invalid.
fn print_added(answer: &AddResults) -> ExitCode {
    let mut invalid = false;
    for result in &answer.results {
        let status = match result.status {
            AddStatus::Added => "added",
            AddStatus::Exists => "exists",
            AddStatus::Invalid => "invalid",
        };
        invalid |= result.status == AddStatus::Invalid;
        println!(
            "{:<8}  {}{}",
            status,
            result.address,
            result
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    if invalid {
        ExitCode::from(BAD_INPUT)
    } else {
        ExitCode::SUCCESS
    }
}
