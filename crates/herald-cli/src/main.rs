//! The `herald` binary: one entry point for sending, serving and checking.

#![forbid(unsafe_code)]
// The command line, not the service: `send`'s deadline and the OTLP
// exporter's timestamps are the machine's clocks, and nothing here is
// tested by moving time.
#![allow(clippy::disallowed_methods)]

mod compose;
mod exit;
mod logging;
mod migrate;
mod otlp;
mod queue;
mod relay;
mod relay_check;
mod reload;
mod remote;
mod send;
mod serve;
mod suppressions;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// herald: reliable transactional e-mail delivery.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about, propagate_version = true)]
struct Cli {
    /// Log lines as text or JSON (on stderr).
    #[arg(long, global = true, value_enum, default_value_t)]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compose a message and deliver it through a relay (or, with
    /// --dry-run, print it). Exit status: 0 delivered, 2 bad input,
    /// 3 a recipient refused for good, 4 retries exhausted or deadline.
    Send(Box<send::SendArgs>),
    /// Connect to a relay as `send` would and report banner, capabilities,
    /// TLS and AUTH.
    RelayCheck(Box<relay_check::RelayCheckArgs>),
    /// Run the herald service: HTTP API, durable queue, delivery workers.
    Serve(serve::ServeArgs),
    /// Validate a configuration file and name the first bad field.
    CheckConfig(serve::CheckConfigArgs),
    /// Look at and act on a running herald's queue (list, show, retry, cancel).
    Queue(queue::QueueArgs),
    /// Apply the store's schema migrations and print its version (ahead of
    /// a rollout; `serve` also applies them at start).
    Migrate(migrate::MigrateArgs),
    /// Read and edit a running herald's suppression list (list, add,
    /// remove).
    Suppressions(suppressions::SuppressionsArgs),
    /// Make a running herald read its configuration file again (as SIGHUP
    /// does). Exit status 2 with check-config's error when it refuses the
    /// file (the running configuration stays).
    Reload(reload::ReloadArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` starts logging once its configuration is loaded: `[tracing]`
    // may add span export to it.
    if !matches!(cli.command, Command::Serve(_)) {
        logging::init(cli.log_format);
    }
    let result = match cli.command {
        Command::Send(args) => send::run(*args),
        Command::RelayCheck(args) => relay_check::run(*args),
        Command::Serve(args) => serve::serve(args, cli.log_format),
        Command::CheckConfig(args) => serve::check_config(args),
        Command::Queue(args) => queue::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Suppressions(args) => suppressions::run(args),
        Command::Reload(args) => reload::run(args),
    };
    match result {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}
