//! Sending without the service: one call that composes a message with
//! herald-message, delivers it through an SMTP relay with herald-smtp, and
//! retries what failed for now as herald-policy's [`RetryPolicy`] says, then
//! answers with a [`Report`]: each recipient delivered, refused for good,
//! given up on after transient failures, or left ambiguous.
//!
//! This is the crate for an application that wants a `MailClient` of its
//! own (and for `herald send`). Nothing is queued: if the process stops,
//! the message is gone. For mail that must survive a crash, queue it in
//! `herald serve` through herald-client instead.
//!
//! ```no_run
//! use herald_mailer::{Mailer, Outcome};
//! use herald_message::MessageRequest;
//! use herald_smtp::{ClientConfig, Credentials, TlsMode, system_tls_config};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut relay = ClientConfig::new("smtp.example.com", 587, TlsMode::StartTls, system_tls_config(None)?);
//! relay.credentials = Some(Credentials::password("app", std::env::var("SMTP_PASSWORD")?));
//! let mailer = Mailer::builder(relay).build()?;
//!
//! let report = mailer
//!     .send_request(&MessageRequest {
//!         from: Some("App <app@example.com>".into()),
//!         to: vec!["ada@example.net".into()],
//!         subject: Some("Your code".into()),
//!         text: Some("424242".into()),
//!         ..MessageRequest::default()
//!     })
//!     .await?;
//! for recipient in &report.recipients {
//!     match &recipient.outcome {
//!         Outcome::Delivered(reply) => println!("{} delivered: {reply}", recipient.address),
//!         other => println!("{} not delivered after {} attempts: {other}", recipient.address, recipient.attempts),
//!     }
//! }
//! mailer.close().await;
//! # Ok(()) }
//! ```
//!
//! # How it retries
//!
//! Each attempt sends one transaction to the recipients still pending: a
//! recipient the relay accepted is never sent to again, and one it refused
//! with a 5xx is reported as refused at once. After an attempt that left
//! recipients with transient failures (4xx, a dropped or refused
//! connection, a timeout), the policy's [`next_step`](RetryPolicy::next_step)
//! says when to try again or that it is time to give up (`max_attempts`, or
//! `max_age` after the first attempt; the last attempt may be placed at that
//! deadline itself). No attempt starts after the deadline; one that started
//! runs under the relay's phase timeouts ([`Timeouts`](herald_smtp::Timeouts)),
//! so a send returns at most `max_age` plus one attempt's timeouts after it
//! began. The waits go through a [`Sleeper`]
//! and the time is read from a [`Clock`](herald_policy::Clock), both
//! injected, so that tests move a [`ManualClock`](herald_policy::ManualClock)
//! instead of waiting.
//!
//! # The ambiguous final dot
//!
//! When the whole message, final dot included, was written and no answer
//! came (a timeout or a dropped connection), the relay may have accepted
//! it. By default ([`OnAmbiguous::Report`]) the mailer does not send it
//! again: the recipients of that attempt are reported as
//! [`Outcome::Ambiguous`], and the application decides. With
//! [`OnAmbiguous::Retry`] it is treated as a transient failure and retried
//! like one (what RFC 5321 section 6.1 and herald's service do; a receiver
//! may then get the message twice, with the same Message-ID).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod deliver;
mod report;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_message::{
    Envelope, EnvelopeError, Limits, Message, MessageRequest, RenderOptions, Rendered,
    ValidationErrors, message_id_for, new_id,
};
use herald_policy::{InvalidPolicy, Jitter, RetryPolicy, SharedClock, SystemClock};
use herald_smtp::{ClientConfig, Pool, PoolConfig};
use rand::SeedableRng as _;
use rand::rngs::StdRng;

pub use herald_policy::{ManualSleeper, Sleeper, TokioSleeper};
pub use report::{Outcome, RecipientReport, Report};

/// What to do when the relay never answered the final dot (see the crate
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnAmbiguous {
    /// Report the recipients as [`Outcome::Ambiguous`]; send nothing more.
    #[default]
    Report,
    /// Retry as after a transient failure (may deliver twice).
    Retry,
}

/// Why a send could not start. What happened to each recipient once it
/// started is in the [`Report`], never here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The retry policy makes no sense.
    #[error("retry policy: {0}")]
    Policy(#[from] InvalidPolicy),
    /// The message request is not a valid message; each error names its
    /// field.
    #[error("invalid message: {0}")]
    Invalid(#[from] ValidationErrors),
    /// The envelope could not be built.
    #[error("envelope: {0}")]
    Envelope(#[from] EnvelopeError),
}

/// The retry policy a [`Mailer`] uses unless told otherwise, made for a
/// caller that waits for the answer: 5 attempts in all, 2 s after the
/// first failure, doubling up to 1 min (full jitter), and nothing tried
/// more than 10 min after the first attempt. `herald send` uses it too.
pub fn default_retry_policy() -> RetryPolicy {
    RetryPolicy {
        initial_delay: Duration::from_secs(2),
        max_delay: Duration::from_secs(60),
        max_attempts: 5,
        max_age: Duration::from_secs(600),
        jitter: Jitter::Full,
        ..RetryPolicy::default()
    }
}

/// Sends messages through one relay, with retries. Cheap to share: `send`
/// takes `&self`, and concurrent sends share the relay's connection pool.
#[derive(Debug)]
pub struct Mailer {
    pool: Pool,
    relay: String,
    policy: RetryPolicy,
    clock: SharedClock,
    sleeper: Arc<dyn Sleeper>,
    rng: Mutex<StdRng>,
    on_ambiguous: OnAmbiguous,
    limits: Limits,
}

/// Builds a [`Mailer`]; see [`Mailer::builder`].
#[derive(Debug)]
pub struct MailerBuilder {
    relay: ClientConfig,
    policy: RetryPolicy,
    clock: Option<SharedClock>,
    sleeper: Option<Arc<dyn Sleeper>>,
    seed: Option<u64>,
    on_ambiguous: OnAmbiguous,
    limits: Limits,
    pool: PoolConfig,
}

impl MailerBuilder {
    /// The retry policy (default [`default_retry_policy`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Where the time comes from (default the system's clocks).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How to wait between attempts (default [`TokioSleeper`]; a test
    /// gives a [`ManualSleeper`], which moves its manual clock instead).
    pub fn sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = Some(sleeper);
        self
    }

    /// Seeds the jitter's random numbers (default: from the system), for
    /// reproducible waits.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// What to do when the final dot got no answer (default
    /// [`OnAmbiguous::Report`]).
    pub fn on_ambiguous(mut self, choice: OnAmbiguous) -> Self {
        self.on_ambiguous = choice;
        self
    }

    /// Limits a [`MessageRequest`] is validated against (default
    /// [`Limits::default`], the service's).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Connections to the relay (default [`PoolConfig::default`]).
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self
    }

    /// The mailer; fails only on a retry policy that makes no sense.
    /// Nothing connects until the first send.
    pub fn build(self) -> Result<Mailer, Error> {
        self.policy.validate()?;
        let rng = match self.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let relay = format!("{}:{}", self.relay.host, self.relay.port);
        Ok(Mailer {
            pool: Pool::new(self.relay, self.pool),
            relay,
            policy: self.policy,
            clock: self.clock.unwrap_or_else(SystemClock::shared),
            sleeper: self.sleeper.unwrap_or_else(|| Arc::new(TokioSleeper)),
            rng: Mutex::new(rng),
            on_ambiguous: self.on_ambiguous,
            limits: self.limits,
        })
    }
}

impl Mailer {
    /// A builder for a mailer that sends through the relay `relay`
    /// describes.
    pub fn builder(relay: ClientConfig) -> MailerBuilder {
        MailerBuilder {
            relay,
            policy: default_retry_policy(),
            clock: None,
            sleeper: None,
            seed: None,
            on_ambiguous: OnAmbiguous::default(),
            limits: Limits::default(),
            pool: PoolConfig::default(),
        }
    }

    /// Validates `request` (the JSON of `POST /v1/messages`, without
    /// templates: those live in the service), renders it and sends it. An
    /// invalid request is [`Error::Invalid`], and nothing is sent.
    pub async fn send_request(&self, request: &MessageRequest) -> Result<Report, Error> {
        let message = request.validate(&self.limits)?;
        self.send(&message).await
    }

    /// Renders `message` (a new Message-ID, the Date from the clock) and
    /// sends it to its envelope's recipients.
    pub async fn send(&self, message: &Message) -> Result<Report, Error> {
        let rendered = message.render(&RenderOptions {
            message_id: message_id_for(&new_id(), message.from()),
            date: self.clock.now(),
            extra_headers: Vec::new(),
        });
        self.send_rendered(message.envelope(), &rendered).await
    }

    /// Sends a message already rendered (what `herald send` does, so that
    /// `--dry-run` shows the same bytes) to `envelope`'s recipients.
    pub async fn send_rendered(
        &self,
        envelope: &Envelope,
        rendered: &Rendered,
    ) -> Result<Report, Error> {
        deliver::run(self, envelope, rendered).await
    }

    /// Closes the idle connections to the relay with QUIT.
    pub async fn close(&self) {
        self.pool.close_idle().await;
    }
}
