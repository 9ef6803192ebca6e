//! The figures of bounce classes, the suppression list and the webhook
//! sender: apart from the delivery figures, as they are apart in the code.

use std::time::Duration;

use ::metrics::Label;
use herald_policy::BounceClass;
use herald_store::{DeliveryOutcome, SuppressionReason};

use super::Metrics;
use crate::observe::metrics::{
    CONFIG_RELOADS, RECIPIENT_CLASSES, SUPPRESSIONS_ADDED, WEBHOOK_DELIVERIES,
    WEBHOOK_OLDEST_UNDELIVERED_AGE,
};

impl Metrics {
    /// One recipient failed or deferred with `class`.
    pub fn recipient_class(&self, class: BounceClass) {
        self.counter(RECIPIENT_CLASSES, vec![Label::new("class", class.as_str())])
            .increment(1);
    }

    /// An entry was added to the suppression list.
    pub fn suppression_added(&self, reason: SuppressionReason) {
        self.counter(
            SUPPRESSIONS_ADDED,
            vec![Label::new("reason", reason.as_str())],
        )
        .increment(1);
    }

    /// Zero series for a webhook endpoint, so its rates exist from the start.
    pub fn register_webhook(&self, webhook: &str) {
        for outcome in DeliveryOutcome::ALL {
            self.counter(
                WEBHOOK_DELIVERIES,
                vec![
                    Label::new("webhook", webhook.to_owned()),
                    Label::new("outcome", outcome.as_str()),
                ],
            )
            .increment(0);
        }
        self.webhook_backlog(webhook, Duration::ZERO);
    }

    /// One try to deliver an event to `webhook`.
    pub fn webhook_delivery(&self, webhook: &str, outcome: DeliveryOutcome) {
        self.counter(
            WEBHOOK_DELIVERIES,
            vec![
                Label::new("webhook", webhook.to_owned()),
                Label::new("outcome", outcome.as_str()),
            ],
        )
        .increment(1);
    }

    /// How old the oldest event not yet delivered to `webhook` is.
    pub fn webhook_backlog(&self, webhook: &str, age: Duration) {
        self.gauge(
            WEBHOOK_OLDEST_UNDELIVERED_AGE,
            vec![Label::new("webhook", webhook.to_owned())],
        )
        .set(age.as_secs_f64());
    }

    /// One configuration reload, `applied` or `refused`.
    pub fn config_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "refused" };
        self.counter(CONFIG_RELOADS, vec![Label::new("result", result)])
            .increment(1);
    }

    /// Zero series of the reload counter, so that its rate exists before
    /// the first reload.
    pub(super) fn register_reloads(&self) {
        for result in ["applied", "refused"] {
            self.counter(CONFIG_RELOADS, vec![Label::new("result", result)])
                .increment(0);
        }
    }
}
