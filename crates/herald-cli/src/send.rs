//! `herald send`: compose one message and deliver it through a relay,
//! retrying transient failures per the retry policy; or, with `--dry-run`,
//! print exactly the bytes that would go over the wire.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use herald_message::{Envelope, Limits, Message, RenderOptions, Rendered, message_id_for, new_id};
use herald_policy::{Decision, GiveUpReason, Jitter, RetryPolicy};
use herald_smtp::{Ctx, Error, Pool, PoolConfig, RecipientOutcome, SendOptions};
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
    /// Give up on whatever is not delivered after this long (default 10m).
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
    let (policy, deadline) = retry_policy(&args.retry, file.as_ref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let finals = runtime.block_on(deliver(client, &message, &rendered, &policy, deadline));

    let mut stdout = std::io::stdout().lock();
    for line in &finals {
        writeln!(stdout, "{line}").context("writing to stdout")?;
    }
    Ok(exit_status(&finals))
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
) -> Result<(RetryPolicy, Duration), Failure> {
    let base = match file {
        Some(config) => config.retry.clone(),
        None => RetryPolicy {
            initial_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            max_attempts: 5,
            max_age: Duration::from_secs(600),
            jitter: Jitter::Full,
            ..RetryPolicy::default()
        },
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
    Ok((policy, deadline))
}

/// A recipient's final state.
#[derive(Debug)]
enum Final {
    Delivered(String),
    Failed(String),
    GaveUp(String, GiveUpReason),
}

/// One line per recipient, for stdout.
struct FinalLine {
    address: String,
    state: Final,
}

impl std::fmt::Display for FinalLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            Final::Delivered(reply) => write!(f, "{} delivered {reply}", self.address),
            Final::Failed(why) => write!(f, "{} failed {why}", self.address),
            Final::GaveUp(why, GiveUpReason::MaxAttempts) => {
                write!(f, "{} deferred (retries exhausted) {why}", self.address)
            }
            Final::GaveUp(why, GiveUpReason::MaxAge) => {
                write!(f, "{} deferred (deadline reached) {why}", self.address)
            }
        }
    }
}

fn exit_status(finals: &[FinalLine]) -> ExitCode {
    if finals.iter().any(|l| matches!(l.state, Final::Failed(_))) {
        ExitCode::from(PERMANENT_FAILURE)
    } else if finals.iter().any(|l| matches!(l.state, Final::GaveUp(..))) {
        ExitCode::from(RETRIES_EXHAUSTED)
    } else {
        ExitCode::SUCCESS
    }
}

/// Attempts until every recipient is delivered, failed for good, or the
/// policy gives up; each attempt sends only to the recipients still pending.
async fn deliver(
    client: herald_smtp::ClientConfig,
    message: &Message,
    rendered: &Rendered,
    policy: &RetryPolicy,
    deadline: Duration,
) -> Vec<FinalLine> {
    let relay = format!("{}:{}", client.host, client.port);
    let pool = Pool::new(
        client,
        PoolConfig {
            max_connections: 1,
            ..PoolConfig::default()
        },
    );
    let ctx = Ctx {
        deadline: Some(Instant::now() + deadline),
        ..Ctx::default()
    };
    let envelope = message.envelope();
    let mut pending: Vec<String> = envelope
        .recipients()
        .iter()
        .map(|r| r.address().to_owned())
        .collect();
    let mut last_error: std::collections::HashMap<String, String> = Default::default();
    let mut finals = Vec::new();
    let first_attempt = OffsetDateTime::now_utc();
    let mut rng = rand::rng();
    let options = SendOptions {
        smtputf8: rendered.smtputf8,
    };
    let mut attempt = 0u32;

    while !pending.is_empty() {
        attempt += 1;
        let started = Instant::now();
        let this = Envelope::new(
            envelope.sender().cloned(),
            envelope
                .recipients()
                .iter()
                .filter(|r| pending.iter().any(|p| p == r.address()))
                .cloned(),
        );
        let Ok(this) = this else { break };
        let result = pool.send(&this, &rendered.bytes, options, &ctx).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(outcomes) => {
                for outcome in outcomes {
                    log_outcome(attempt, &relay, elapsed_ms, &outcome);
                    match outcome.result {
                        Ok(reply) => {
                            pending.retain(|p| *p != outcome.address);
                            finals.push(FinalLine {
                                address: outcome.address,
                                state: Final::Delivered(reply.to_string()),
                            });
                        }
                        Err(error) if !error.is_transient() => {
                            pending.retain(|p| *p != outcome.address);
                            finals.push(FinalLine {
                                address: outcome.address,
                                state: Final::Failed(describe(&error)),
                            });
                        }
                        Err(error) => {
                            last_error.insert(outcome.address, describe(&error));
                        }
                    }
                }
            }
            Err(error) => {
                log_error(attempt, &relay, elapsed_ms, pending.len(), &error);
                for address in &pending {
                    last_error.insert(address.clone(), describe(&error));
                }
                if error.is_permanent() {
                    for address in pending.drain(..) {
                        finals.push(FinalLine {
                            state: Final::Failed(describe(&error)),
                            address,
                        });
                    }
                }
            }
        }
        if pending.is_empty() {
            break;
        }
        let now = OffsetDateTime::now_utc();
        match policy.next_step(attempt, first_attempt, now, &mut rng) {
            Decision::RetryAt(at) => {
                let wait = Duration::try_from(at - now).unwrap_or_default();
                tracing::info!(
                    attempt,
                    relay = %relay,
                    delay_ms = wait.as_millis() as u64,
                    pending = pending.len(),
                    "retry scheduled"
                );
                tokio::time::sleep(wait).await;
            }
            Decision::GiveUp(reason) => {
                tracing::warn!(attempt, relay = %relay, reason = ?reason, "giving up");
                for address in pending.drain(..) {
                    let why = last_error.remove(&address).unwrap_or_default();
                    finals.push(FinalLine {
                        address,
                        state: Final::GaveUp(why, reason),
                    });
                }
            }
        }
    }
    pool.close_idle().await;
    // Report in the envelope's order.
    let order: Vec<_> = envelope.recipients().iter().map(|r| r.address()).collect();
    finals.sort_by_key(|l| order.iter().position(|a| *a == l.address));
    finals
}

fn describe(error: &Error) -> String {
    match error.reply() {
        Some(reply) => reply.to_string(),
        None => error.to_string(),
    }
}

/// One recipient's line. `outcome` speaks the service's vocabulary (a
/// recipient is `delivered`, `deferred` or `failed`); codes appear only
/// when a server gave them.
fn log_outcome(attempt: u32, relay: &str, duration_ms: u64, outcome: &RecipientOutcome) {
    match &outcome.result {
        Ok(reply) => tracing::info!(
            attempt,
            relay,
            recipient = %outcome.address,
            duration_ms,
            outcome = "delivered",
            code = reply.code(),
            enhanced_code = reply.enhanced_code().map(tracing::field::display),
            "attempt"
        ),
        Err(error) => tracing::warn!(
            attempt,
            relay,
            recipient = %outcome.address,
            duration_ms,
            outcome = if error.is_transient() { "deferred" } else { "failed" },
            phase = error.phase().as_str(),
            code = error.smtp_code(),
            enhanced_code = error.enhanced_code().map(tracing::field::display),
            error = %error,
            "attempt"
        ),
    }
}

/// The relay failed as a whole (no recipient got an answer of its own):
/// `outcome = "error"`, as the service's metrics and events say it.
fn log_error(attempt: u32, relay: &str, duration_ms: u64, recipients: usize, error: &Error) {
    tracing::warn!(
        attempt,
        relay,
        recipients,
        duration_ms,
        outcome = "error",
        retry = error.is_transient(),
        phase = error.phase().as_str(),
        code = error.smtp_code(),
        enhanced_code = error.enhanced_code().map(tracing::field::display),
        error = %error,
        "attempt"
    );
}
