//! Delivery through the relays: in order, skipping a relay whose circuit
//! is open or whose quota is spent, waiting for a rate slot, feeding each
//! relay's breaker, and never trying the next relay after one may already
//! have taken the message.

use super::*;

impl Dispatcher {
    /// Tries the relays in order, skipping those whose circuit is open;
    /// the first that takes the transaction decides the outcome. Every
    /// relay tried is reported on its own. `None` when cancelled by
    /// shutdown.
    pub(super) async fn via_relays(
        &self,
        message: &Claimed,
        envelope: &Envelope,
        abort: &CancellationToken,
    ) -> Option<Tried> {
        let ctx = Ctx {
            deadline: None,
            cancel: abort.clone(),
        };
        let options = SendOptions {
            smtputf8: message.smtputf8,
        };
        let mut last: Option<Tried> = None;
        let mut skipped: Option<&Relay> = None;
        // The first relay skipped for its quota, and when the first of
        // those quotas resets.
        let mut spent: Option<(&Relay, time::OffsetDateTime)> = None;
        // This message's relays: a reload meanwhile changes the next
        // message's, not this one's.
        let relays = self.relays.get();
        for relay in relays.iter().map(Arc::as_ref) {
            let quota = self.take_quota(relay).await;
            if let Quota::Spent(reset) = quota {
                tracing::debug!(relay = %relay.name, %reset, "daily quota spent; skipping relay");
                spent = Some(match spent {
                    Some((first, at)) => (first, at.min(reset)),
                    None => (relay, reset),
                });
                continue;
            }
            let allowed = relay
                .breaker
                .lock()
                .map(|mut b| b.allow(self.clock.instant()))
                .unwrap_or(true);
            if !allowed {
                tracing::debug!(relay = %relay.name, "circuit open; skipping relay");
                self.return_quota(relay, quota).await;
                skipped = skipped.or(Some(relay));
                continue;
            }
            // Over the rate, the message waits here for a slot, under its
            // lease; shutdown's abort gives it back untried.
            if !self.wait_for_slot(relay, abort).await {
                self.return_quota(relay, quota).await;
                return None;
            }
            let started = self.clock.instant();
            // Exported only: the relay's SMTP session for this message,
            // with an event per reply (the phases) and per recipient.
            let span = tracing::info_span!(
                target: EXPORT_TARGET,
                "smtp",
                otel.kind = "client",
                relay = %relay.name,
                server.address = %relay.pool.client_config().host,
                otel.status_code = tracing::field::Empty,
                otel.status_description = tracing::field::Empty,
            );
            let sent = relay
                .pool
                .send(envelope, &message.rendered, options, &ctx)
                .instrument(span.clone())
                .await;
            match sent {
                Ok(outcomes) => {
                    record_breaker(
                        relay,
                        BreakerOutcome::Success,
                        started,
                        self.clock.instant(),
                    );
                    let results: Vec<_> = outcomes.iter().map(attempt::recipient_result).collect();
                    for (index, result) in results.iter().enumerate() {
                        tracing::info!(
                            target: EXPORT_TARGET,
                            parent: &span,
                            recipient = index,
                            status = result.status.as_str(),
                            code = result.smtp_code,
                            "recipient"
                        );
                    }
                    let tried = Tried::new(&relay.name, results, self.elapsed(started));
                    self.report(message, &tried, Via::Relay);
                    return Some(tried);
                }
                Err(error) if error.kind() == ErrorKind::Cancelled && !error.is_ambiguous() => {
                    self.return_quota(relay, quota).await;
                    return None;
                }
                Err(error) => {
                    if !error.is_ambiguous() {
                        // Refused before it could count at the relay.
                        self.return_quota(relay, quota).await;
                    }
                    span.record("otel.status_code", "error");
                    span.record("otel.status_description", error.to_string());
                    record_breaker(
                        relay,
                        breaker_outcome(&error),
                        started,
                        self.clock.instant(),
                    );
                    let results = message
                        .recipients
                        .iter()
                        .map(|r| attempt::failed_result(r, &error))
                        .collect();
                    let tried = Tried {
                        relay: relay.name.clone(),
                        outcome: AttemptOutcome::Error,
                        results,
                        duration: self.elapsed(started),
                        retry_at: None,
                    };
                    self.report(message, &tried, Via::Relay);
                    if error.is_ambiguous() {
                        // The relay may have taken it: another relay now
                        // could deliver it twice. Later, as a retry.
                        return Some(tried);
                    }
                    last = Some(tried);
                }
            }
        }
        if let Some(tried) = last {
            return Some(tried);
        }
        if let (None, Some((relay, reset))) = (skipped, spent) {
            // Every relay's quota is spent: retried at the first reset.
            let limit = relay.quota.map_or(0, |q| q.limit);
            let reason = format!(
                "not tried: the daily quota of relay {} ({limit}) is spent; quota resets at {}",
                relay.name,
                reset
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_else(|_| reset.to_string()),
            );
            let mut tried = Tried::new(
                &relay.name,
                defer_all(&message.recipients, &reason),
                Duration::ZERO,
            );
            // Not an attempt: the message is put off to the reset
            // (`deliver` postpones it), so no attempt is reported.
            tried.retry_at = Some(reset);
            return Some(tried);
        }
        // Nothing was tried: every circuit is open. The deferral is the
        // first skipped relay's, so that its panels show it.
        let relay = skipped.map_or(RELAY_NONE, |r| r.name.as_str());
        let reason = format!("not tried: the circuit of relay {relay} is open");
        let tried = Tried::new(
            relay,
            defer_all(&message.recipients, &reason),
            Duration::ZERO,
        );
        self.report(message, &tried, Via::Nowhere);
        Some(tried)
    }
}

/// Feeds the breaker a call that ran from `started` to `now`.
fn record_breaker(relay: &Relay, outcome: BreakerOutcome, started: Instant, now: Instant) {
    if let Ok(mut breaker) = relay.breaker.lock() {
        breaker.record_call(outcome, now.saturating_duration_since(started), now);
    }
}

/// What a failed send says about the relay's health: a timeout, a `421`,
/// or any other fault of the connection (refused, TLS, AUTH, a dropped
/// session) counts against it; a refusal of this message or of its
/// recipients (size, content, "user unknown") is no fault of the relay's.
fn breaker_outcome(error: &herald_smtp::Error) -> BreakerOutcome {
    if error.is_timeout() {
        BreakerOutcome::Timeout
    } else if error.smtp_code() == Some(421) {
        BreakerOutcome::Throttled
    } else if error.scope() == herald_smtp::Scope::Connection {
        BreakerOutcome::ConnectionFailure
    } else {
        BreakerOutcome::RecipientRejected
    }
}
