//! `herald-load`: HTTP load for `herald serve`, for `bench/service.sh`.
//!
//! It posts `--messages` messages of about `--size` rendered bytes to
//! `POST /v1/messages` over `--concurrency` keep-alive connections, either
//! as fast as answers come back (closed loop) or at a fixed offered load
//! (`--rate`, open loop: message i is due at i/rate seconds, and its
//! latency counts from then, so a stalled server cannot hide its queueing
//! behind a slowed-down client). It prints one JSON line: the accept rate,
//! accept latency percentiles, and optionally how long until every message
//! was delivered (`--wait-delivered`, polling the API until no message is
//! queued, sending or deferred) and the memory and CPU of the herald
//! process (`--pid`, from /proc).
//!
//! The HTTP/1.1 client is a minimal one over a Tokio `TcpStream`, so the
//! load generator costs little CPU of the machine it shares with herald.
//! A measurement tool: it never judges the figures.

#![forbid(unsafe_code)]
// A measurement tool: it times runs on the machine's clocks.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Post messages to a running herald and measure its answers.
#[derive(Debug, Parser)]
#[command(name = "herald-load", version, about)]
struct Args {
    /// herald's HTTP address, e.g. 127.0.0.1:8080 (loopback only).
    #[arg(long)]
    target: SocketAddr,
    /// The API key.
    #[arg(long, env = "HERALD_API_KEY", hide_env_values = true)]
    key: String,
    /// How many messages to post.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Keep-alive connections posting at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Approximate size of the rendered message in bytes.
    #[arg(long, default_value_t = 2048)]
    size: usize,
    /// Offered load in messages per second (open loop); without it, each
    /// connection posts the next message as soon as it has an answer.
    #[arg(long)]
    rate: Option<f64>,
    /// After posting, wait until nothing is queued, sending or deferred,
    /// and report the time from the first post (end-to-end).
    #[arg(long)]
    wait_delivered: bool,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 600)]
    wait_timeout: u64,
    /// The herald process, whose memory (VmRSS, VmHWM) and CPU time are
    /// reported.
    #[arg(long)]
    pid: Option<u32>,
    /// A label for the JSON line.
    #[arg(long, default_value = "load")]
    phase: String,
}

/// A minimal HTTP/1.1 keep-alive connection.
#[derive(Debug)]
struct Http {
    target: SocketAddr,
    conn: Option<(BufReader<OwnedReadHalf>, OwnedWriteHalf)>,
}

impl Http {
    fn new(target: SocketAddr) -> Self {
        Self { target, conn: None }
    }

    /// One request; reconnects when the server closed the connection.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        key: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let (reader, writer) = match self.conn.as_mut() {
            Some(conn) => conn,
            None => {
                let tcp = TcpStream::connect(self.target).await?;
                tcp.set_nodelay(true)?;
                let (r, w) = tcp.into_split();
                self.conn
                    .insert((BufReader::with_capacity(16 * 1024, r), w))
            }
        };
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\n",
            self.target
        );
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        let answer = async {
            writer.write_all(&bytes).await?;
            read_response(reader).await
        }
        .await;
        match answer {
            Ok((status, body, close)) => {
                if close {
                    self.conn = None;
                }
                Ok((status, body))
            }
            Err(error) => {
                self.conn = None;
                Err(error)
            }
        }
    }
}

/// Reads one response: status, body, and whether the server will close.
async fn read_response(
    reader: &mut BufReader<OwnedReadHalf>,
) -> anyhow::Result<(u16, Vec<u8>, bool)> {
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        bail!("connection closed before the answer");
    }
    let status: u16 = line
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            bail!("connection closed in the headers");
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().context("content-length")?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)
                .context("chunk size")?;
            let start = body.len();
            body.resize(start + size + 2, 0);
            reader.read_exact(&mut body[start..]).await?;
            body.truncate(start + size);
            if size == 0 {
                break;
            }
        }
    } else if let Some(length) = length {
        body.resize(length, 0);
        reader.read_exact(&mut body).await?;
    }
    Ok((status, body, close))
}

/// What the posting tasks share.
#[derive(Debug)]
struct Shared {
    args: Args,
    text: String,
    next: AtomicUsize,
    accepted: AtomicUsize,
    refused: AtomicUsize,
    failed: AtomicUsize,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn error(&self, what: String) {
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(what);
        }
    }

    /// The JSON body of message `n`.
    fn body(&self, n: usize) -> Vec<u8> {
        serde_json::json!({
            "from": "Bench Sender <from@example.com>",
            "to": ["Bench Recipient <to@example.com>"],
            "subject": format!("herald service benchmark, message {n}"),
            "text": self.text,
            "tags": ["bench"],
        })
        .to_string()
        .into_bytes()
    }
}

/// Plain ASCII lines that render to about `size` bytes with herald's
/// headers (about 450 bytes for this sender, recipient and subject).
fn body_text(size: usize) -> String {
    const LINE: &str = "The quick brown fox jumps over the lazy dog while the herald carries on.";
    let want = size.saturating_sub(450).max(1);
    let mut text = String::with_capacity(want + LINE.len());
    while text.len() < want {
        let room = want - text.len();
        let take = LINE.len().min(room.saturating_sub(1)).max(1);
        text.push_str(&LINE[..take]);
        text.push('\n');
    }
    text
}

/// One posting task: latencies in microseconds.
async fn poster(shared: Arc<Shared>, start: Instant) -> Vec<u32> {
    let mut http = Http::new(shared.args.target);
    let mut latencies = Vec::new();
    loop {
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        if n >= shared.args.messages {
            break;
        }
        let body = shared.body(n);
        let due = match shared.args.rate {
            Some(rate) => {
                let due = start + Duration::from_secs_f64(n as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        match http
            .request("POST", "/v1/messages", &shared.args.key, &body)
            .await
        {
            Ok((202, _)) => {
                shared.accepted.fetch_add(1, Ordering::Relaxed);
                let micros = due.elapsed().as_micros();
                latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
            }
            Ok((status, body)) => {
                shared.refused.fetch_add(1, Ordering::Relaxed);
                shared.error(format!("{status}: {}", String::from_utf8_lossy(&body)));
            }
            Err(error) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                shared.error(error.to_string());
            }
        }
    }
    latencies
}

/// Whether any message is still queued, sending or deferred.
async fn anything_open(http: &mut Http, key: &str) -> anyhow::Result<bool> {
    for status in ["queued", "sending", "deferred"] {
        let (code, body) = http
            .request(
                "GET",
                &format!("/v1/messages?status={status}&limit=1"),
                key,
                &[],
            )
            .await?;
        if code != 200 {
            bail!(
                "GET /v1/messages?status={status}: {code} {}",
                String::from_utf8_lossy(&body)
            );
        }
        let page: serde_json::Value = serde_json::from_slice(&body).context("list answer")?;
        if page["messages"].as_array().is_some_and(|m| !m.is_empty()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `VmRSS` and `VmHWM` of `pid`, in KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_ascii_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User plus system CPU seconds of `pid` so far (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_ascii_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// The `q`-quantile of sorted microseconds, in milliseconds.
fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    let micros = sorted[rank - 1];
    (f64::from(micros) / 10.0).round() / 100.0
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
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
    if args.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        bail!("--rate must be more than 0");
    }
    let pid = args.pid;
    let shared = Arc::new(Shared {
        text: body_text(args.size),
        args,
        next: AtomicUsize::new(0),
        accepted: AtomicUsize::new(0),
        refused: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        first_error: std::sync::Mutex::new(None),
    });

    // Peak RSS of herald while we run, sampled every 50 ms (VmHWM is the
    // peak of the whole process life, this is the peak of this run).
    let sampling = Arc::new(AtomicBool::new(true));
    let rss_peak = Arc::new(AtomicU64::new(0));
    let sampler = pid.map(|pid| {
        let (sampling, rss_peak) = (sampling.clone(), rss_peak.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Some((rss, _)) = memory_kib(pid) {
                    rss_peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    });

    let cpu_before = pid.and_then(cpu_seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..shared.args.concurrency)
        .map(|_| tokio::spawn(poster(shared.clone(), start)))
        .collect();
    let mut latencies = Vec::with_capacity(shared.args.messages);
    for task in tasks {
        latencies.extend(task.await.context("a posting task panicked")?);
    }
    let posted_in = start.elapsed().as_secs_f64();
    let cpu_posted = pid.and_then(cpu_seconds);
    let memory_posted = pid.and_then(memory_kib);
    latencies.sort_unstable();

    let mut delivered_in = None;
    if shared.args.wait_delivered {
        let mut http = Http::new(shared.args.target);
        let deadline = start + Duration::from_secs(shared.args.wait_timeout);
        loop {
            if !anything_open(&mut http, &shared.args.key).await? {
                delivered_in = Some(start.elapsed().as_secs_f64());
                break;
            }
            if Instant::now() > deadline {
                eprintln!("herald-load: deliveries not done within --wait-timeout");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    sampling.store(false, Ordering::Relaxed);
    if let Some(sampler) = sampler {
        let _ = sampler.await;
    }
    let cpu_after = pid.and_then(cpu_seconds);
    let memory_end = pid.and_then(memory_kib);

    let accepted = shared.accepted.load(Ordering::Relaxed);
    let messages = shared.args.messages;
    let kib_to_mib = |kib: u64| round(kib as f64 / 1024.0, 1);
    let line = serde_json::json!({
        "phase": shared.args.phase,
        "messages": messages,
        "concurrency": shared.args.concurrency,
        "size": shared.args.size,
        "offered_rate": shared.args.rate,
        "accepted": accepted,
        "refused": shared.refused.load(Ordering::Relaxed),
        "failed": shared.failed.load(Ordering::Relaxed),
        "first_error": shared.first_error.lock().ok().and_then(|e| e.clone()),
        "post_seconds": round(posted_in, 3),
        "accept_rate": round(accepted as f64 / posted_in.max(1e-9), 0),
        "p50_ms": quantile_ms(&latencies, 0.50),
        "p90_ms": quantile_ms(&latencies, 0.90),
        "p99_ms": quantile_ms(&latencies, 0.99),
        "p999_ms": quantile_ms(&latencies, 0.999),
        "max_ms": quantile_ms(&latencies, 1.0),
        "e2e_seconds": delivered_in.map(|s| round(s, 3)),
        "e2e_rate": delivered_in.map(|s| round(accepted as f64 / s.max(1e-9), 0)),
        "rss_mib_after_posts": memory_posted.map(|(rss, _)| kib_to_mib(rss)),
        "rss_mib_end": memory_end.map(|(rss, _)| kib_to_mib(rss)),
        "rss_mib_peak_sampled": pid.map(|_| kib_to_mib(rss_peak.load(Ordering::Relaxed))),
        "vm_hwm_mib": memory_end.map(|(_, hwm)| kib_to_mib(hwm)),
        "herald_cpu_us_per_msg_posting": cpu_before.zip(cpu_posted).map(|(a, b)| round((b - a) * 1e6 / messages.max(1) as f64, 0)),
        "herald_cpu_us_per_msg_total": cpu_before.zip(cpu_after).map(|(a, b)| round((b - a) * 1e6 / messages.max(1) as f64, 0)),
    });
    println!("{line}");
    Ok(())
}
