//! Alert delivery, kept away from mail delivery: each channel has a bounded
//! queue (offering to a full queue drops the alert and counts it, never
//! waits) and one worker that posts with a timeout and retries with
//! backoff. The HTTP client is synchronous (ureq) and runs on the blocking
//! pool. Logs name the channel, never its URL (which carries the token).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use herald_policy::SharedClock;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::channels::{ChannelKind, Outgoing, check_reply, render};
use crate::config::{ChannelConfig, SendPolicy};
use crate::rules::AlertEvent;

/// Bytes of a webhook's answer read to check it.
const MAX_REPLY_BYTES: u64 = 64 * 1024;

/// What happened to one channel's alerts since start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelStats {
    /// The channel's name.
    pub name: String,
    /// Its kind (`webhook`, `wecom`, …).
    pub kind: &'static str,
    /// Alerts delivered.
    pub sent: u64,
    /// Alerts given up on after every try.
    pub failed: u64,
    /// Alerts dropped because the queue was full.
    pub dropped: u64,
    /// Tries repeated after a failure.
    pub retries: u64,
    /// Alerts queued or being sent now.
    pub pending: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
    /// Queued and not yet sent, failed or abandoned.
    pending: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The sending side of a channel's queue.
#[derive(Debug)]
pub(crate) struct ChannelHandle {
    config: Arc<ChannelConfig>,
    tx: mpsc::Sender<Arc<AlertEvent>>,
    counters: Arc<Counters>,
}

/// The receiving side, until a worker takes it.
#[derive(Debug)]
pub(crate) struct Worker {
    config: Arc<ChannelConfig>,
    rx: mpsc::Receiver<Arc<AlertEvent>>,
    counters: Arc<Counters>,
    policy: SendPolicy,
    agent: ureq::Agent,
    clock: SharedClock,
}

/// A channel's queue of `capacity` (at least one) and its worker.
pub(crate) fn channel(
    config: ChannelConfig,
    capacity: usize,
    policy: SendPolicy,
    clock: SharedClock,
) -> (ChannelHandle, Worker) {
    let config = Arc::new(config);
    let counters = Arc::new(Counters::default());
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(policy.timeout))
        .http_status_as_error(false)
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    (
        ChannelHandle {
            config: Arc::clone(&config),
            tx,
            counters: Arc::clone(&counters),
        },
        Worker {
            config,
            rx,
            counters,
            policy,
            agent,
            clock,
        },
    )
}

impl ChannelHandle {
    /// The channel's name.
    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    /// Queues `event` for the worker; a full (or closed) queue drops it and
    /// counts the drop. Never waits.
    pub(crate) fn offer(&self, event: Arc<AlertEvent>) -> bool {
        // Counted before the worker can take it, so that `pending` never
        // goes below zero.
        self.counters.pending.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(_) => {
                self.counters.pending.fetch_sub(1, Ordering::SeqCst);
                Counters::bump(&self.counters.dropped);
                false
            }
        }
    }

    /// The counts so far.
    pub(crate) fn stats(&self) -> ChannelStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ChannelStats {
            name: self.config.name.clone(),
            kind: self.config.kind.as_str(),
            sent: load(&self.counters.sent),
            failed: load(&self.counters.failed),
            dropped: load(&self.counters.dropped),
            retries: load(&self.counters.retries),
            pending: self.counters.pending.load(Ordering::SeqCst),
        }
    }
}

impl Worker {
    /// Sends queued alerts one at a time until `stop` (an alert being sent
    /// then is abandoned; its request ends at its timeout).
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                event = self.rx.recv() => match event {
                    Some(event) => event,
                    None => return,
                },
            };
            self.deliver(&event, &stop).await;
            self.counters.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    async fn deliver(&self, event: &AlertEvent, stop: &CancellationToken) {
        let name = self.config.name.as_str();
        let kind = self.config.kind;
        let attempts = self.policy.attempts.max(1);
        for attempt in 1..=attempts {
            // Rendered per try: signatures carry the send time.
            let outgoing = match render(&self.config, event, self.clock.now()) {
                Ok(outgoing) => outgoing,
                Err(reason) => {
                    Counters::bump(&self.counters.failed);
                    tracing::error!(channel = name, kind = kind.as_str(), rule = %event.rule, error = %reason, "cannot build the alert request");
                    return;
                }
            };
            let agent = self.agent.clone();
            let request = tokio::task::spawn_blocking(move || post(&agent, kind, &outgoing));
            let result = tokio::select! {
                () = stop.cancelled() => return,
                joined = request => joined.unwrap_or_else(|_| Err("the sending thread failed".to_owned())),
            };
            let reason = match result {
                Ok(()) => {
                    Counters::bump(&self.counters.sent);
                    tracing::debug!(channel = name, kind = kind.as_str(), rule = %event.rule, key = %event.key, attempt, "alert delivered");
                    return;
                }
                Err(reason) => reason,
            };
            if attempt == attempts {
                Counters::bump(&self.counters.failed);
                tracing::error!(
                    channel = name,
                    kind = kind.as_str(),
                    rule = %event.rule,
                    key = %event.key,
                    attempts,
                    error = %reason,
                    "alert not delivered; giving up"
                );
                return;
            }
            Counters::bump(&self.counters.retries);
            let delay = self.policy.delay(attempt);
            tracing::warn!(
                channel = name,
                kind = kind.as_str(),
                rule = %event.rule,
                attempt,
                retry_in = ?delay,
                error = %reason,
                "alert delivery failed; will retry"
            );
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// One POST, on a blocking thread. Errors are described without the URL.
fn post(agent: &ureq::Agent, kind: ChannelKind, outgoing: &Outgoing) -> Result<(), String> {
    let mut request = agent.post(&outgoing.url);
    for (name, value) in &outgoing.headers {
        request = request.header(*name, value);
    }
    let mut response = request
        .send(outgoing.body.as_slice())
        .map_err(|e| describe(&e))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_REPLY_BYTES)
        .read_to_string()
        .unwrap_or_default();
    check_reply(kind, status, &body)
}

/// A ureq error in words that cannot contain the URL (some variants quote
/// it, and the URL carries the channel's token): for logs and delivery
/// logs of any outgoing POST (alert channels, event webhooks).
pub fn describe(error: &ureq::Error) -> String {
    match error {
        ureq::Error::StatusCode(code) => format!("HTTP {code}"),
        ureq::Error::Timeout(which) => format!("timed out ({which})"),
        ureq::Error::Io(io) => format!("I/O error: {}", io.kind()),
        ureq::Error::HostNotFound => "host not found".to_owned(),
        ureq::Error::ConnectionFailed => "connection failed".to_owned(),
        ureq::Error::Tls(what) => format!("TLS: {what}"),
        ureq::Error::Rustls(e) => format!("TLS: {e}"),
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => {
            "redirect not followed".to_owned()
        }
        ureq::Error::BadUri(_) => "invalid URL".to_owned(),
        _ => "request failed".to_owned(),
    }
}
