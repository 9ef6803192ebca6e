//! `herald-bench`: SMTP delivery throughput, for comparing herald's pooled
//! client with one-session-per-message delivery and with lettre's own
//! connection layer. It sends `--messages` copies of one fixed message
//! (rendered once, about `--size` bytes) to a sink such as Postfix's
//! `smtp-sink` from `--concurrency` tokio tasks, and prints one line of
//! JSON with the wall-clock time and the rate.
//!
//! Clients:
//! - `herald`: one shared `herald_smtp::Pool` with as many connections as
//!   tasks; sessions are reused for every message.
//! - `per-message`: `herald_smtp::Connection::open`, one message, `QUIT`,
//!   like Go's `smtp.SendMail`.
//! - `lettre`: one `lettre` `AsyncSmtpConnection` per task over a tokio
//!   `TcpStream` with `TCP_NODELAY` set, reused for every message.
//!
//! `bench/smtp.sh` runs every client (and `smtp-source`) at several
//! concurrencies and prints a table. This is a measurement tool: it never
//! judges the figures.

#![forbid(unsafe_code)]
// A measurement tool: it times runs on the machine's clocks.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use herald_message::{EmailAddress, Envelope};
use herald_smtp::{
    ClientConfig, Connection, Ctx, Pool, PoolConfig, SendOptions, TlsMode, system_tls_config,
};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use tokio::net::TcpStream;

/// The name every client gives in EHLO.
const HELO_NAME: &str = "bench.localhost";

/// Measure SMTP delivery throughput against a sink on loopback.
#[derive(Debug, Parser)]
#[command(name = "herald-bench", version, about)]
struct Args {
    /// The sink's address, e.g. 127.0.0.1:2525 (loopback only).
    #[arg(long)]
    target: SocketAddr,
    /// Which client delivers the messages.
    #[arg(long, value_enum)]
    client: Client,
    /// How many messages to deliver in total.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// How many tasks deliver at once (and, for herald, the pool size).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Approximate size of the rendered message in bytes.
    #[arg(long, default_value_t = 2048)]
    size: usize,
    /// Envelope sender.
    #[arg(long, default_value = "from@example.com")]
    from: String,
    /// Envelope recipient.
    #[arg(long, default_value = "to@example.com")]
    to: String,
    /// TLS for the herald and per-message clients: none, starttls or
    /// implicit (e.g. into herald's own submission listener).
    #[arg(long, default_value = "none")]
    tls: TlsMode,
    /// A CA certificate (PEM) to trust, for a self-signed server.
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// AUTH as this user (herald and per-message clients); the password is
    /// read from the environment variable HERALD_BENCH_PASSWORD, never from
    /// the command line.
    #[arg(long)]
    auth_user: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Client {
    /// herald_smtp::Pool, one pooled session per task.
    Herald,
    /// A new herald_smtp::Connection (and QUIT) for every message.
    PerMessage,
    /// lettre's AsyncSmtpConnection, one persistent session per task.
    Lettre,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Self::Herald => "herald",
            Self::PerMessage => "per-message",
            Self::Lettre => "lettre",
        }
    }
}

/// What one run produced, shared by the tasks.
#[derive(Debug, Default)]
struct Tally {
    /// The next message index to claim.
    next: AtomicUsize,
    /// Messages not accepted by the server (or lost with their session).
    errors: AtomicUsize,
    /// Sessions opened (per-message and lettre; herald asks its pool).
    connections: AtomicUsize,
}

impl Tally {
    /// Claims one message to send; `false` when all `total` are claimed.
    fn claim(&self, total: usize) -> bool {
        self.next.fetch_add(1, Ordering::Relaxed) < total
    }

    fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// The message and both envelopes, built once.
#[derive(Debug)]
struct Payload {
    bytes: Vec<u8>,
    envelope: Envelope,
    lettre_envelope: lettre::address::Envelope,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.target.ip().is_loopback() {
        bail!("--target must be a loopback address, not {}", args.target);
    }
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if args.client == Client::Lettre && (args.tls != TlsMode::None || args.auth_user.is_some()) {
        bail!("--tls and --auth-user are for the herald and per-message clients");
    }

    let sender = EmailAddress::parse(&args.from).context("--from")?;
    let recipient = EmailAddress::parse(&args.to).context("--to")?;
    let envelope = Envelope::new(Some(sender), [recipient]).context("envelope")?;
    let lettre_envelope = lettre::address::Envelope::new(
        Some(args.from.parse().context("--from (lettre)")?),
        vec![args.to.parse().context("--to (lettre)")?],
    )
    .context("envelope (lettre)")?;
    let payload = Arc::new(Payload {
        bytes: render_message(&args.from, &args.to, args.size),
        envelope,
        lettre_envelope,
    });

    let tally = Arc::new(Tally::default());
    let (measured, connections) = match args.client {
        Client::Herald => run_herald(&args, &payload, &tally).await?,
        Client::PerMessage => run_per_message(&args, &payload, &tally).await?,
        Client::Lettre => run_lettre(&args, &payload, &tally).await?,
    };

    let Measured { seconds, cpu } = measured;
    let errors = tally.errors.load(Ordering::Relaxed);
    let delivered = args.messages.saturating_sub(errors);
    let rate = if seconds > 0.0 {
        delivered as f64 / seconds
    } else {
        0.0
    };
    let line = serde_json::json!({
        "client": args.client.name(),
        "concurrency": args.concurrency,
        "messages": args.messages,
        "bytes": payload.bytes.len(),
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "msgs_per_sec": rate.round() as u64,
        "errors": errors,
        "connections": connections,
        "cpu_seconds": cpu.map(|c| (c * 1000.0).round() / 1000.0),
        "cpu_us_per_msg": cpu.map(|c| (c * 1e6 / args.messages.max(1) as f64 * 10.0).round() / 10.0),
    });
    println!("{line}");
    Ok(())
}

/// Every task draws from one pool of `concurrency` sessions.
async fn run_herald(
    args: &Args,
    payload: &Arc<Payload>,
    tally: &Arc<Tally>,
) -> anyhow::Result<(Measured, usize)> {
    let config = herald_config(args)?;
    let pool = Arc::new(Pool::new(
        config,
        PoolConfig {
            max_connections: args.concurrency,
            max_messages_per_connection: usize::MAX,
            idle_timeout: Duration::from_secs(60),
        },
    ));
    let total = args.messages;
    let clock = Clock::start();
    let mut tasks = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let (pool, payload, tally) = (pool.clone(), payload.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let ctx = Ctx::default();
            while tally.claim(total) {
                let sent = pool
                    .send(
                        &payload.envelope,
                        &payload.bytes,
                        SendOptions::default(),
                        &ctx,
                    )
                    .await;
                if !sent.is_ok_and(|outcomes| outcomes.iter().all(|o| o.is_delivered())) {
                    tally.error();
                }
            }
        }));
    }
    join_all(tasks).await?;
    let measured = clock.stop();
    let opened = pool.stats().opened_total;
    pool.close_idle().await;
    Ok((measured, opened))
}

/// A fresh session for every message: connect, greet, EHLO, send, QUIT.
async fn run_per_message(
    args: &Args,
    payload: &Arc<Payload>,
    tally: &Arc<Tally>,
) -> anyhow::Result<(Measured, usize)> {
    let config = Arc::new(herald_config(args)?);
    let total = args.messages;
    let clock = Clock::start();
    let mut tasks = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let (config, payload, tally) = (config.clone(), payload.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let ctx = Ctx::default();
            while tally.claim(total) {
                let mut conn = match Connection::open(config.clone(), &ctx).await {
                    Ok(conn) => conn,
                    Err(error) => {
                        report_first(&tally, &error);
                        tally.error();
                        continue;
                    }
                };
                tally.connections.fetch_add(1, Ordering::Relaxed);
                let sent = conn
                    .send(
                        &payload.envelope,
                        &payload.bytes,
                        SendOptions::default(),
                        &ctx,
                    )
                    .await;
                if !sent.is_ok_and(|outcomes| outcomes.iter().all(|o| o.is_delivered())) {
                    tally.error();
                }
                conn.quit().await;
            }
        }));
    }
    join_all(tasks).await?;
    Ok((clock.stop(), tally.connections.load(Ordering::Relaxed)))
}

/// One lettre session per task, reused; reopened only after a failure.
async fn run_lettre(
    args: &Args,
    payload: &Arc<Payload>,
    tally: &Arc<Tally>,
) -> anyhow::Result<(Measured, usize)> {
    let total = args.messages;
    let target = args.target;
    let clock = Clock::start();
    let mut tasks = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let (payload, tally) = (payload.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            // lettre ends DATA with "\r\n.\r\n" after the bytes it is given;
            // without our final CRLF the wire bytes equal herald's.
            let body = payload
                .bytes
                .strip_suffix(b"\r\n")
                .unwrap_or(&payload.bytes);
            let hello = ClientId::Domain(HELO_NAME.to_owned());
            let mut session: Option<AsyncSmtpConnection> = None;
            while tally.claim(total) {
                let conn = match session.as_mut() {
                    Some(conn) => conn,
                    None => match lettre_connect(target, &hello).await {
                        Ok(conn) => {
                            tally.connections.fetch_add(1, Ordering::Relaxed);
                            session.insert(conn)
                        }
                        Err(error) => {
                            report_first(&tally, &error);
                            tally.error();
                            continue;
                        }
                    },
                };
                if conn.send(&payload.lettre_envelope, body).await.is_err() {
                    tally.error();
                    if conn.has_broken() {
                        session = None;
                    }
                }
            }
            if let Some(mut conn) = session {
                let _ = conn.quit().await;
            }
        }));
    }
    join_all(tasks).await?;
    Ok((clock.stop(), tally.connections.load(Ordering::Relaxed)))
}

/// TCP with Nagle off (lettre leaves it on), then lettre's greeting and
/// EHLO.
async fn lettre_connect(
    target: SocketAddr,
    hello: &ClientId,
) -> anyhow::Result<AsyncSmtpConnection> {
    let tcp = TcpStream::connect(target).await?;
    tcp.set_nodelay(true)?;
    Ok(AsyncSmtpConnection::connect_with_transport(Box::new(tcp), hello).await?)
}

/// herald's settings for the sink: plain text, no AUTH.
fn herald_config(args: &Args) -> anyhow::Result<ClientConfig> {
    let tls = system_tls_config(args.ca_file.as_deref()).context("TLS settings")?;
    let mut config = ClientConfig::new(
        args.target.ip().to_string(),
        args.target.port(),
        args.tls,
        tls,
    );
    config.helo_name = HELO_NAME.to_owned();
    if let Some(user) = &args.auth_user {
        let password = std::env::var("HERALD_BENCH_PASSWORD")
            .context("--auth-user needs the password in HERALD_BENCH_PASSWORD")?;
        config.credentials = Some(herald_smtp::Credentials::password(user, password));
    }
    Ok(config)
}

/// Wall clock and this process's CPU time since the sending began.
#[derive(Debug, Clone, Copy)]
struct Clock {
    wall: Instant,
    cpu: Option<f64>,
}

/// What a [`Clock`] read.
#[derive(Debug, Clone, Copy)]
struct Measured {
    seconds: f64,
    /// User plus system time, all threads (`None` without `/proc`).
    cpu: Option<f64>,
}

impl Clock {
    fn start() -> Self {
        Self {
            cpu: process_cpu_seconds(),
            wall: Instant::now(),
        }
    }

    fn stop(self) -> Measured {
        let seconds = self.wall.elapsed().as_secs_f64();
        let cpu = process_cpu_seconds()
            .zip(self.cpu)
            .map(|(after, before)| after - before);
        Measured { seconds, cpu }
    }
}

/// User plus system CPU time of this process so far (all threads), from
/// `/proc/self/stat`; `None` where that is unavailable. Linux counts it in
/// clock ticks of 1/100 s on every mainstream architecture.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields after it don't.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_ascii_whitespace();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Prints the first connection failure only, so a dead sink does not
/// flood the terminal.
fn report_first(tally: &Tally, error: &dyn std::fmt::Display) {
    if tally.errors.load(Ordering::Relaxed) == 0 {
        eprintln!("herald-bench: connection failed: {error}");
    }
}

async fn join_all(tasks: Vec<tokio::task::JoinHandle<()>>) -> anyhow::Result<()> {
    for task in tasks {
        task.await.context("a sending task panicked")?;
    }
    Ok(())
}

/// A plain-text RFC 5322 message of about `size` bytes (exactly `size`,
/// give or take one, when that leaves room for the headers), with CRLF line endings and no
/// line that would need dot-stuffing.
fn render_message(from: &str, to: &str, size: usize) -> Vec<u8> {
    let mut out = format!(
        "From: Bench Sender <{from}>\r\n\
         To: Bench Recipient <{to}>\r\n\
         Subject: herald SMTP throughput benchmark\r\n\
         Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n\
         Message-ID: <herald-bench.1@example.com>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         Content-Transfer-Encoding: 7bit\r\n\
         \r\n"
    )
    .into_bytes();
    const TEXT: &str = "The quick brown fox jumps over the lazy dog while the herald \
                        carries the mail on. ";
    let mut line_no = 1;
    loop {
        let line = format!("{line_no:03} {TEXT}");
        let line = line.get(..74).unwrap_or(&line).trim_end();
        let room = size.saturating_sub(out.len());
        if room < 2 {
            break;
        }
        let take = line.len().min(room - 2);
        out.extend_from_slice(&line.as_bytes()[..take]);
        out.extend_from_slice(b"\r\n");
        line_no += 1;
    }
    out
}
