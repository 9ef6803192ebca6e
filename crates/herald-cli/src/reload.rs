//! `herald reload`: ask a running herald to read its configuration file
//! again (as SIGHUP does), over its API, and say what changed, or print
//! the error that made it refuse the file and exit non-zero.

use std::process::ExitCode;

use clap::Args;

use crate::exit::Failure;

#[derive(Debug, Args)]
pub(crate) struct ReloadArgs {
    /// The herald server's base URL.
    #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// An API key with the admin scope (or set HERALD_API_KEY).
    #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

pub(crate) fn run(args: ReloadArgs) -> Result<ExitCode, Failure> {
    let (client, runtime) = crate::remote::connect(&args.server, args.api_key.as_deref())?;
    match runtime.block_on(client.reload()) {
        Ok(reloaded) => {
            let list = |items: &[String]| {
                if items.is_empty() {
                    "none".to_owned()
                } else {
                    items.join(", ")
                }
            };
            println!("reloaded: changed {}", list(&reloaded.changed));
            if !reloaded.restart_needed.is_empty() {
                println!("restart needed for: {}", list(&reloaded.restart_needed));
            }
            Ok(ExitCode::SUCCESS)
        }
        // The file was refused: its error, as check-config prints it; the
        // server goes on with the configuration it had.
        Err(error) if error.status() == Some(422) => Err(Failure::input(
            error
                .problem()
                .map(|p| p.detail.clone())
                .unwrap_or_else(|| error.to_string()),
        )),
        Err(error) => Err(Failure::Fault(match error.problem() {
            Some(problem) => anyhow::anyhow!("{}: {}", problem.status, problem.detail),
            None => anyhow::anyhow!("{error}"),
        })),
    }
}
