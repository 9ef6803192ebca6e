//! `herald suppressions`: read and edit a running herald's suppression list
//! over its HTTP API — list, add, remove.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::exit::Failure;
use crate::queue::encode;

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
    let response = match &args.action {
        Action::List {
            reason,
            since,
            limit,
            cursor,
        } => {
            let mut query = vec![format!("limit={limit}")];
            for (name, value) in [("reason", reason), ("since", since), ("cursor", cursor)] {
                if let Some(value) = value {
                    query.push(format!("{name}={}", encode(value)));
                }
            }
            let url = format!("{base}/v1/suppressions?{}", query.join("&"));
            agent.get(&url).header("Authorization", &auth).call()
        }
        Action::Add { addresses, reason } => agent
            .post(&format!("{base}/v1/suppressions"))
            .header("Authorization", &auth)
            .send_json(json!({"addresses": addresses, "reason": reason})),
        Action::Remove { address } => agent
            .delete(&format!("{base}/v1/suppressions/{}", encode(address)))
            .header("Authorization", &auth)
            .call(),
    }
    .map_err(|e| Failure::Fault(anyhow::anyhow!("{base}: {e}")))?;
    let status = response.status().as_u16();
    let body: Value = response
        .into_body()
        .read_json()
        .map_err(|e| Failure::Fault(anyhow::anyhow!("{base}: unreadable answer: {e}")))?;
    if status >= 400 {
        let detail = body["detail"].as_str().unwrap_or("request failed");
        return Err(Failure::Fault(anyhow::anyhow!("{status}: {detail}")));
    }
    match args.action {
        Action::List { .. } => print_list(&body),
        Action::Add { .. } => return Ok(print_added(&body)),
        Action::Remove { address } => println!("removed {address}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_list(body: &Value) {
    let empty = Vec::new();
    println!(
        "{:<20}  {:<9}  {:<40}  response",
        "created", "reason", "address"
    );
    for entry in body["suppressions"].as_array().unwrap_or(&empty) {
        println!(
            "{:<20}  {:<9}  {:<40}  {}",
            entry["created_at"]
                .as_str()
                .unwrap_or("")
                .get(..19)
                .unwrap_or(""),
            entry["reason"].as_str().unwrap_or(""),
            entry["address"].as_str().unwrap_or(""),
            entry["response"].as_str().unwrap_or(""),
        );
    }
    if let Some(cursor) = body["next_cursor"].as_str() {
        println!("next page: --cursor {cursor}");
    }
}

/// One line per address; exit status 2 if any address was invalid.
fn print_added(body: &Value) -> ExitCode {
    let empty = Vec::new();
    let mut invalid = false;
    for result in body["results"].as_array().unwrap_or(&empty) {
        let status = result["status"].as_str().unwrap_or("");
        invalid |= status == "invalid";
        println!(
            "{:<8}  {}{}",
            status,
            result["address"].as_str().unwrap_or(""),
            result["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    if invalid {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
