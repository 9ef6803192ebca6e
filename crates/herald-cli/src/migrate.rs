//! `herald migrate`: bring the store's schema up to this build's version
//! before a rollout, so that new nodes start on a ready schema and old
//! ones are never surprised mid-request.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::exit::Failure;
use crate::serve::load;

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    /// The configuration file whose `[store]` to migrate.
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
}

pub(crate) fn run(args: MigrateArgs) -> Result<ExitCode, Failure> {
    let config = load(Some(&args.config))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let version = runtime
        .block_on(herald_server::migrate(&config))
        .map_err(|e| Failure::Fault(e.into()))?;
    // Shown by the rule of everything herald prints (as check-config).
    println!(
        "{}: schema at version {version}",
        config.store.redacted_url()
    );
    Ok(ExitCode::SUCCESS)
}
