//! `herald send`: compose one message and deliver it through a relay with
//! herald-mailer's `Mailer`, retrying transient failures per the retry
//! policy; or, with `--dry-run`, print exactly the bytes that would go over
//! the wire.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use herald_mailer::{Mailer, OnAmbiguous, Outcome, RecipientReport, Report, default_retry_policy};
use herald_message::{Limits, Message, RenderOptions, Rendered, message_id_for, new_id};
use herald_policy::{GiveUpReason, RetryPolicy};
use herald_smtp::PoolConfig;
use time::OffsetDateTime;

use crate::compose::ComposeArgs;
use crate::exit::{Failure, PERMANENT_FAILURE, RETRIES_EXHAUSTED};
use crate::relay::{RelayArgs, parse_duration};

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Print the rendered RFC 5322 message to stdout instead of sending it.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    compose: ComposeArgs,
    #[command(flatten)]
    relay: RelayArgs,
    #[command(flatten)]
    retry: RetryArgs,
}

/// When to try again.
#[derive(Debug, Args)]
struct RetryArgs {
    /// Delivery attempts in all, the first included (default 5).
    #[arg(long, value_name = "N")]
    max_attempts: Option<u32>,
    /// Wait after the first failed attempt; doubles each time (default 2s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    initial_delay: Option<Duration>,
    /// Longest wait between attempts (default 1m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    max_delay: Option<Duration>,
    /// Give up on whatever is not delivered after this long: no attempt
    /// starts later (default 10m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    deadline: Option<Duration>,
}

pub(crate) fn run(args: SendArgs) -> Result<ExitCode, Failure> {
    let request = args.compose.request()?;
    let message = request
        .validate(&Limits::default())
        .map_err(|errors| Failure::input(errors.first()))?;
    let rendered = render(&message);
    if args.dry_run {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(&rendered.bytes)
            .and_then(|()| stdout.flush())
            .context("writing the message to stdout")?;
        return Ok(ExitCode::SUCCESS);
    }

    let file = args.relay.file()?;
    let client = args.relay.client_config(file.as_ref())?;
    let policy = retry_policy(&args.retry, file.as_ref())?;
    // One connection, and an unanswered final dot retried like any
    // transient failure (RFC 5321 section 6.1, as the service does).
    let mailer = Mailer::builder(client)
        .retry(policy)
        .on_ambiguous(OnAmbiguous::Retry)
        .pool(PoolConfig {
            max_connections: 1,
            ..PoolConfig::default()
        })
        .build()
        .map_err(|e| Failure::input(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(async {
        let report = mailer.send_rendered(message.envelope(), &rendered).await;
        mailer.close().await;
        report
    });
    let report = report.context("sending")?;

    let mut stdout = std::io::stdout().lock();
    for recipient in &report.recipients {
        writeln!(stdout, "{}", FinalLine(recipient)).context("writing to stdout")?;
    }
    Ok(exit_status(&report))
}

fn render(message: &Message) -> Rendered {
    message.render(&RenderOptions {
        message_id: message_id_for(&new_id(), message.from()),
        date: OffsetDateTime::now_utc(),
        extra_headers: Vec::new(),
    })
}

/// The CLI's own retry defaults suit someone waiting at a terminal
/// (seconds, not the service's hours); a --config file's `[retry]` applies
/// instead when given, and flags override either.
fn retry_policy(
    args: &RetryArgs,
    file: Option<&herald_server::config::Config>,
) -> Result<RetryPolicy, Failure> {
    let base = match file {
        Some(config) => config.retry.clone(),
        None => default_retry_policy(),
    };
    let initial_delay = args.initial_delay.unwrap_or(base.initial_delay);
    let deadline = args.deadline.unwrap_or(base.max_age);
    let policy = RetryPolicy {
        initial_delay,
        max_delay: args.max_delay.unwrap_or(base.max_delay),
        min_delay: base.min_delay.min(initial_delay),
        max_attempts: args.max_attempts.unwrap_or(base.max_attempts),
        max_age: deadline,
        ..base
    };
    policy.validate().map_err(|e| {
        let flag = match e.field() {
            "max_attempts" => "--max-attempts",
            "max_age" => "--deadline",
            "initial_delay" => "--initial-delay",
            _ => "--max-delay",
        };
        Failure::input(format!("{flag}: {}", e.reason()))
    })?;
    Ok(policy)
}

/// One line per recipient, for stdout.
struct FinalLine<'a>(&'a RecipientReport);

impl std::fmt::Display for FinalLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let RecipientReport {
            address, outcome, ..
        } = self.0;
        let detail = outcome.detail();
        match outcome {
            Outcome::Delivered(_) => write!(f, "{address} delivered {detail}"),
            Outcome::Refused(_) => write!(f, "{address} failed {detail}"),
            Outcome::GaveUp {
                reason: GiveUpReason::MaxAttempts,
                ..
            } => write!(f, "{address} deferred (retries exhausted) {detail}"),
            Outcome::GaveUp {
                reason: GiveUpReason::MaxAge,
                ..
            } => write!(f, "{address} deferred (deadline reached) {detail}"),
            Outcome::Ambiguous(_) => write!(f, "{address} deferred (ambiguous) {detail}"),
        }
    }
}

fn exit_status(report: &Report) -> ExitCode {
    let outcomes = || report.recipients.iter().map(|r| &r.outcome);
    if outcomes().any(|o| matches!(o, Outcome::Refused(_))) {
        ExitCode::from(PERMANENT_FAILURE)
    } else if outcomes().any(|o| !matches!(o, Outcome::Delivered(_))) {
        ExitCode::from(RETRIES_EXHAUSTED)
    } else {
        ExitCode::SUCCESS
    }
}
