//! The retry loop: attempts until every recipient is delivered, refused,
//! ambiguous, or given up on; each attempt sends only to the recipients
//! still pending. Every attempt is logged (`attempt`, in the service's
//! outcome words: `delivered`, `deferred`, `failed`, `error`), and so is
//! every wait (`retry scheduled`).

use std::sync::PoisonError;
use std::time::Duration;

use herald_message::{Envelope, Rendered};
use herald_policy::Decision;
use herald_smtp::{Ctx, Error as SmtpError, RecipientOutcome, SendOptions};

use crate::{Error, Mailer, OnAmbiguous, Outcome, RecipientReport, Report};

/// One recipient on its way.
struct Entry {
    address: String,
    attempts: u32,
    outcome: Option<Outcome>,
    last: Option<SmtpError>,
}

impl Entry {
    fn pending(&self) -> bool {
        self.outcome.is_none()
    }
}

pub(crate) async fn run(
    mailer: &Mailer,
    envelope: &Envelope,
    rendered: &Rendered,
) -> Result<Report, Error> {
    let mut entries: Vec<Entry> = envelope
        .recipients()
        .iter()
        .map(|r| Entry {
            address: r.address().to_owned(),
            attempts: 0,
            outcome: None,
            last: None,
        })
        .collect();
    let relay = mailer.relay.as_str();
    let policy = &mailer.policy;
    let first_attempt = mailer.clock.now();
    let options = SendOptions {
        smtputf8: rendered.smtputf8,
    };
    let mut attempt = 0u32;

    while entries.iter().any(Entry::pending) {
        attempt += 1;
        let this = Envelope::new(
            envelope.sender().cloned(),
            envelope
                .recipients()
                .iter()
                .filter(|r| {
                    entries
                        .iter()
                        .any(|e| e.pending() && e.address == r.address())
                })
                .cloned(),
        )?;
        for entry in entries.iter_mut().filter(|e| e.pending()) {
            entry.attempts += 1;
        }
        // No attempt starts after the policy's deadline (next_step sees to
        // that); one that started before it runs under the relay's phase
        // timeouts, so that the last attempt, which the policy places at
        // the deadline itself, gets its full chance.
        let ctx = Ctx::default();
        let started = mailer.clock.instant();
        let result = mailer
            .pool
            .send(&this, &rendered.bytes, options, &ctx)
            .await;
        let elapsed_ms = millis(mailer.clock.instant().saturating_duration_since(started));
        match result {
            Ok(outcomes) => {
                for outcome in outcomes {
                    log_outcome(attempt, relay, elapsed_ms, &outcome);
                    let Some(entry) = entries
                        .iter_mut()
                        .find(|e| e.pending() && e.address == outcome.address)
                    else {
                        continue;
                    };
                    match outcome.result {
                        Ok(reply) => entry.outcome = Some(Outcome::Delivered(reply)),
                        Err(error) if !error.is_transient() => {
                            entry.outcome = Some(Outcome::Refused(error));
                        }
                        Err(error) => entry.last = Some(error),
                    }
                }
            }
            Err(error) => {
                let pending = entries.iter().filter(|e| e.pending()).count();
                log_error(attempt, relay, elapsed_ms, pending, &error);
                for entry in entries.iter_mut().filter(|e| e.pending()) {
                    if error.is_permanent() {
                        entry.outcome = Some(Outcome::Refused(error.clone()));
                    } else if error.is_ambiguous() && mailer.on_ambiguous == OnAmbiguous::Report {
                        entry.outcome = Some(Outcome::Ambiguous(error.clone()));
                    } else {
                        entry.last = Some(error.clone());
                    }
                }
            }
        }
        let pending = entries.iter().filter(|e| e.pending()).count();
        if pending == 0 {
            break;
        }
        let now = mailer.clock.now();
        let decision = {
            let mut rng = mailer.rng.lock().unwrap_or_else(PoisonError::into_inner);
            policy.next_step(attempt, first_attempt, now, &mut *rng)
        };
        match decision {
            Decision::RetryAt(at) => {
                let wait = Duration::try_from(at - now).unwrap_or_default();
                tracing::info!(
                    attempt,
                    relay,
                    delay_ms = millis(wait),
                    pending,
                    "retry scheduled"
                );
                mailer.sleeper.sleep(wait).await;
            }
            Decision::GiveUp(reason) => {
                tracing::warn!(attempt, relay, reason = ?reason, "giving up");
                for entry in entries.iter_mut().filter(|e| e.pending()) {
                    if let Some(last) = entry.last.take() {
                        entry.outcome = Some(Outcome::GaveUp { reason, last });
                    }
                }
                // Every pending recipient has failed at least once, so has
                // a last error; this guards the loop all the same.
                break;
            }
        }
    }

    Ok(Report {
        message_id: rendered.message_id.clone(),
        attempts: attempt,
        recipients: entries
            .into_iter()
            .filter_map(|e| {
                Some(RecipientReport {
                    outcome: e.outcome?,
                    address: e.address,
                    attempts: e.attempts,
                })
            })
            .collect(),
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
fn log_error(attempt: u32, relay: &str, duration_ms: u64, recipients: usize, error: &SmtpError) {
    tracing::warn!(
        attempt,
        relay,
        recipients,
        duration_ms,
        outcome = "error",
        retry = error.is_transient(),
        ambiguous = error.is_ambiguous(),
        phase = error.phase().as_str(),
        code = error.smtp_code(),
        enhanced_code = error.enhanced_code().map(tracing::field::display),
        error = %error,
        "attempt"
    );
}
