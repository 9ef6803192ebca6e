//! The `herald` binary: one entry point for sending, serving and checking.

#![forbid(unsafe_code)]

mod compose;
mod exit;
mod send;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// herald: reliable transactional e-mail delivery.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compose a message and send it (or, with --dry-run, print it).
    Send(send::SendArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Send(args) => send::run(args),
    };
    match result {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}
