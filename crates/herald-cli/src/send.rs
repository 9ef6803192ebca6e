//! `herald send`: compose one message and deliver it, or with `--dry-run`
//! print exactly the bytes that would go over the wire.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use herald_message::{Limits, RenderOptions, message_id_for, new_id};
use time::OffsetDateTime;

use crate::compose::ComposeArgs;
use crate::exit::Failure;

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Print the rendered RFC 5322 message to stdout instead of sending it.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    compose: ComposeArgs,
}

pub(crate) fn run(args: SendArgs) -> Result<ExitCode, Failure> {
    let request = args.compose.request()?;
    let message = request
        .validate(&Limits::default())
        .map_err(|errors| Failure::input(errors.first()))?;
    let options = RenderOptions {
        message_id: message_id_for(&new_id(), message.from()),
        date: OffsetDateTime::now_utc(),
        extra_headers: Vec::new(),
    };
    let rendered = message.render(&options);
    if !args.dry_run {
        return Err(Failure::input(
            "delivery needs a relay, which this build cannot reach yet; use --dry-run",
        ));
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&rendered.bytes)
        .and_then(|()| stdout.flush())
        .context("writing the message to stdout")?;
    Ok(ExitCode::SUCCESS)
}
