//! The one place where a try at a relay (or the outbox) becomes metrics,
//! a log line and a sample for error groups, and where a recorded attempt
//! becomes the recipient and message counts. Every path of the dispatcher
//! reports through here, so the three always agree and speak one
//! vocabulary: the store's [`AttemptOutcome`].

use std::time::Duration;

use herald_policy::BounceClass;
use herald_store::{
    AttemptOutcome, Claimed, MessageStatus, NextStep, RecipientResult, RecipientStatus, Recorded,
};

use super::{Dispatcher, attempt};
use herald_alerts::{FailureClass, FailureSample};

/// One try of one message at one destination, as it went.
#[derive(Debug)]
pub(super) struct Tried {
    /// The relay's name, [`RELAY_OUTBOX`](crate::observe::metrics::RELAY_OUTBOX)
    /// or [`RELAY_NONE`](crate::observe::metrics::RELAY_NONE).
    pub(super) relay: String,
    pub(super) outcome: AttemptOutcome,
    pub(super) results: Vec<RecipientResult>,
    pub(super) duration: Duration,
    /// When to try again instead of the retry policy's time (a quota's
    /// reset), if the policy does not give up.
    pub(super) retry_at: Option<time::OffsetDateTime>,
}

impl Tried {
    /// A try whose outcome follows from its recipients' results.
    pub(super) fn new(relay: &str, results: Vec<RecipientResult>, duration: Duration) -> Self {
        Self {
            relay: relay.to_owned(),
            outcome: AttemptOutcome::of(&results),
            results,
            duration,
            retry_at: None,
        }
    }
}

/// Where the try went, which says whether SMTP replies were heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    /// An SMTP session with a relay.
    Relay,
    /// The file outbox.
    Outbox,
    /// Nowhere: the message could not be tried (every circuit open, or a
    /// stored envelope that no longer parses).
    Nowhere,
}

impl Dispatcher {
    /// Metrics, the `delivery attempt` log line and the error-group
    /// samples of one try.
    pub(super) fn report(&self, message: &Claimed, tried: &Tried, via: Via) {
        let relay = tried.relay.as_str();
        self.metrics.attempt(relay, tried.outcome, tried.duration);
        if via == Via::Relay {
            // A relay that failed as a whole gave one reply (or none) for
            // the session, not one per recipient.
            let replies = match tried.outcome {
                AttemptOutcome::Error => &tried.results[..tried.results.len().min(1)],
                _ => &tried.results[..],
            };
            for result in replies {
                self.metrics.smtp_reply(relay, result.smtp_code);
            }
        }
        let (code, enhanced_code, detail) = attempt::headline(&tried.results);
        let detail = (tried.outcome != AttemptOutcome::Delivered).then_some(detail.as_str());
        // Codes only when a server gave them: a refused connection has
        // none, and says so by leaving the fields out.
        macro_rules! line {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    id = %message.id,
                    relay,
                    attempt = message.attempts + 1,
                    outcome = tried.outcome.as_str(),
                    code,
                    enhanced_code = enhanced_code.as_deref(),
                    class = attempt::headline_class(&tried.results).map(|c| c.as_str()),
                    duration_ms = tried.duration.as_millis() as u64,
                    detail,
                    "delivery attempt"
                )
            };
        }
        if tried.outcome == AttemptOutcome::Error {
            line!(tracing::Level::WARN);
        } else {
            line!(tracing::Level::INFO);
        }
        self.feed_alerting(relay, &message.id, &tried.results);
    }

    /// Every recipient tried counts as an attempt for rate rules; every one
    /// not delivered is a failure sample for error groups.
    fn feed_alerting(&self, relay: &str, message_id: &str, results: &[RecipientResult]) {
        let now = self.clock.now();
        for result in results {
            self.alerting.record_attempt(relay, now);
            let class = match result.status {
                RecipientStatus::Deferred => FailureClass::Transient,
                RecipientStatus::Failed => FailureClass::Permanent,
                _ => continue,
            };
            self.alerting.record_failure(FailureSample {
                relay: relay.to_owned(),
                class,
                smtp_code: result.smtp_code,
                enhanced_code: result.enhanced_code.clone(),
                response: result.response.clone().unwrap_or_default(),
                message_id: message_id.to_owned(),
                at: now,
            });
        }
    }

    /// What a recorded attempt did to its recipients and its message.
    pub(super) fn count_recorded(
        &self,
        message: &Claimed,
        relay: &str,
        recipients: &[(RecipientStatus, Option<BounceClass>)],
        next: NextStep,
        recorded: Recorded,
    ) {
        let status = recorded.status;
        for (recipient, class) in recipients {
            self.metrics.recipient(match (*recipient, next) {
                (RecipientStatus::Deferred, NextStep::RetryAt(_)) => RecipientStatus::Deferred,
                // Giving up turns the deferred into failed.
                (RecipientStatus::Deferred, NextStep::GiveUp) => RecipientStatus::Failed,
                (other, _) => other,
            });
            if let Some(class) = class {
                self.metrics.recipient_class(*class);
            }
        }
        // The entries the store added: an address already listed is not
        // counted again.
        for _ in 0..recorded.suppressed {
            self.metrics
                .suppression_added(herald_store::SuppressionReason::Bounce);
        }
        if let NextStep::RetryAt(_) = next {
            self.metrics.retry_scheduled(relay);
        }
        if status == MessageStatus::Delivered {
            let elapsed = self.clock.now() - message.created_at;
            self.metrics
                .accept_to_delivery(elapsed.try_into().unwrap_or_default());
        }
        self.metrics.finished(status);
    }
}
