//! [`Metrics`]: one server's recorder and the typed methods the service
//! emits through, so that a name or a label value cannot be misspelt at
//! a call site.
//!
//! Built on `metrics` + `metrics-exporter-prometheus` rather than
//! `prometheus-client`: the exporter's `PrometheusRecorder` is a plain
//! value, so each server owns one (tests run many servers in one process
//! and read exact values from each) without installing the process-wide
//! recorder; it renders the classic Prometheus text format that every
//! scraper and `promtool check metrics` read; it does real histograms with
//! our own buckets; and `metrics` is the facade the Rust ecosystem emits
//! through, should a library's metrics ever be routed into the same
//! recorder. What `prometheus-client` adds, label sets as types, the enums
//! in [`super::metrics`] give us too.

use std::sync::Arc;
use std::time::Duration;

use ::metrics::{Key, Label, Level, Metadata, Recorder, SharedString};
use herald_alerts::ChannelStats;
use herald_policy::{BounceClass, BreakerState};
use herald_smtp::PoolStats;
use herald_store::{
    Enqueued, MessageStatus, QueueStats, RecipientStatus, StoreError, SuppressionReason,
};
use metrics_exporter_prometheus::{
    BuildError, Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use super::metrics::*;

mod lists;

/// One attempt's duration: from a few milliseconds (a pooled session on a
/// LAN) to the data timeout of a slow relay.
const ATTEMPT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Acceptance to delivery: sub-second when all is well, minutes to hours
/// when retries are involved.
const ACCEPT_TO_DELIVERY_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
];
/// HTTP handlers: a group commit takes milliseconds; a slow disk, more.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The final statuses [`MESSAGES_FINISHED`] counts.
const FINAL_STATUSES: [MessageStatus; 4] = [
    MessageStatus::Delivered,
    MessageStatus::Partial,
    MessageStatus::Failed,
    MessageStatus::Cancelled,
];

/// HTTP methods as a bounded label: anything unusual is `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// What the metrics layer records about the emitter (the exporter ignores it).
static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

/// One server's metrics: a Prometheus recorder of its own and typed ways
/// to feed it. Cheap to share (`Arc`); every method takes `&self`.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set: every label-free series and every series whose labels
    /// are known in advance exist at zero from the start, so that rates
    /// and alerts see them before the first event.
    pub fn new() -> Self {
        let builder = match buckets(PrometheusBuilder::new()) {
            Ok(builder) => builder,
            Err(error) => {
                // Only empty bucket lists fail, and ours are constants.
                tracing::error!(error = %error, "histogram buckets rejected; using summaries");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let metrics = Self { recorder, handle };
        for (name, kind, help) in HELP {
            let (name, help) = ((*name).into(), SharedString::const_str(help));
            match kind {
                Kind::Counter => metrics.recorder.describe_counter(name, None, help),
                Kind::Gauge => metrics.recorder.describe_gauge(name, None, help),
                Kind::Histogram => metrics.recorder.describe_histogram(name, None, help),
            }
        }
        metrics
            .gauge(
                BUILD_INFO,
                vec![Label::new("version", env!("CARGO_PKG_VERSION"))],
            )
            .set(1.0);
        for source in [
            AcceptSource::Api,
            AcceptSource::Batch,
            AcceptSource::Smtp,
            AcceptSource::Raw,
        ] {
            metrics
                .counter(
                    MESSAGES_ACCEPTED,
                    vec![Label::new("source", source.as_str())],
                )
                .increment(0);
        }
        for outcome in RECIPIENT_OUTCOMES {
            metrics
                .counter(RECIPIENTS, vec![Label::new("outcome", outcome.as_str())])
                .increment(0);
        }
        for class in BounceClass::ALL {
            metrics
                .counter(RECIPIENT_CLASSES, vec![Label::new("class", class.as_str())])
                .increment(0);
        }
        for reason in SuppressionReason::ALL {
            metrics
                .counter(
                    SUPPRESSIONS_ADDED,
                    vec![Label::new("reason", reason.as_str())],
                )
                .increment(0);
        }
        for status in FINAL_STATUSES {
            metrics
                .counter(
                    MESSAGES_FINISHED,
                    vec![Label::new("status", status.as_str())],
                )
                .increment(0);
        }
        // Registered, not recorded: an empty histogram renders as zeros.
        let _ = metrics.histogram(ACCEPT_TO_DELIVERY, Vec::new());
        metrics.gauge(DELIVERIES_IN_FLIGHT, Vec::new()).set(0.0);
        metrics.gauge(QUEUE_OLDEST_DUE_AGE, Vec::new()).set(0.0);
        metrics.counter(ALERT_EVALUATIONS, Vec::new()).increment(0);
        metrics.register_reloads();
        for status in MessageStatus::ALL {
            metrics
                .gauge(QUEUE_MESSAGES, vec![Label::new("status", status.as_str())])
                .set(0.0);
        }
        metrics
    }

    /// Creates the zero series of one relay (every outcome and code class),
    /// so that a relay that never failed still shows `0` failures.
    pub fn register_relay(&self, relay: &str) {
        for outcome in AttemptOutcome::ALL {
            self.counter(
                DELIVERY_ATTEMPTS,
                relay_and("outcome", outcome.as_str(), relay),
            )
            .increment(0);
        }
        for class in CodeClass::ALL {
            self.counter(SMTP_REPLIES, relay_and("class", class.as_str(), relay))
                .increment(0);
        }
        self.counter(RETRIES_SCHEDULED, vec![relay_label(relay)])
            .increment(0);
        let _ = self.histogram(DELIVERY_ATTEMPT_DURATION, vec![relay_label(relay)]);
    }

    /// `n` messages accepted from `source`.
    pub fn accepted(&self, source: AcceptSource, n: u64) {
        self.counter(
            MESSAGES_ACCEPTED,
            vec![Label::new("source", source.as_str())],
        )
        .increment(n);
    }

    /// The messages a batch created (`source="batch"`): its results that
    /// stored a new message.
    pub fn accepted_batch(&self, results: &[Result<Enqueued, StoreError>]) {
        let created = results
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|e| e.created))
            .count();
        self.accepted(AcceptSource::Batch, created as u64);
    }

    /// One attempt at `relay` that went `outcome` and took `duration`.
    pub fn attempt(&self, relay: &str, outcome: AttemptOutcome, duration: Duration) {
        self.counter(
            DELIVERY_ATTEMPTS,
            relay_and("outcome", outcome.as_str(), relay),
        )
        .increment(1);
        self.histogram(DELIVERY_ATTEMPT_DURATION, vec![relay_label(relay)])
            .record(duration.as_secs_f64());
    }

    /// One SMTP reply from `relay` with `code` (`None`: no reply).
    pub fn smtp_reply(&self, relay: &str, code: Option<u16>) {
        let class = CodeClass::of(code);
        self.counter(SMTP_REPLIES, relay_and("class", class.as_str(), relay))
            .increment(1);
    }

    /// One recipient's outcome in a recorded attempt.
    pub fn recipient(&self, outcome: RecipientStatus) {
        self.counter(RECIPIENTS, vec![Label::new("outcome", outcome.as_str())])
            .increment(1);
    }

    /// A message reached `status`; statuses that are not final are ignored.
    pub fn finished(&self, status: MessageStatus) {
        if status.is_final() {
            self.counter(
                MESSAGES_FINISHED,
                vec![Label::new("status", status.as_str())],
            )
            .increment(1);
        }
    }

    /// A retry was scheduled after an attempt at `relay`.
    pub fn retry_scheduled(&self, relay: &str) {
        self.counter(RETRIES_SCHEDULED, vec![relay_label(relay)])
            .increment(1);
    }

    /// A message was delivered to every recipient `elapsed` after it was
    /// accepted.
    pub fn accept_to_delivery(&self, elapsed: Duration) {
        self.histogram(ACCEPT_TO_DELIVERY, Vec::new())
            .record(elapsed.as_secs_f64());
    }

    /// Counts a delivery as running until the guard is dropped (however
    /// the delivery ends).
    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        self.gauge(DELIVERIES_IN_FLIGHT, Vec::new()).increment(1.0);
        InFlight {
            metrics: self.clone(),
        }
    }

    /// One HTTP request for `route` (a template, or [`ROUTE_UNMATCHED`])
    /// answered with `status` after `elapsed`.
    pub fn http_request(
        &self,
        route: &str,
        method: &axum::http::Method,
        status: u16,
        elapsed: Duration,
    ) {
        let route = Label::new("route", route.to_owned());
        let method = Label::new("method", method_label(method));
        self.counter(
            HTTP_REQUESTS,
            vec![
                route.clone(),
                method.clone(),
                Label::new("status", status.to_string()),
            ],
        )
        .increment(1);
        self.histogram(HTTP_REQUEST_DURATION, vec![route, method])
            .record(elapsed.as_secs_f64());
    }

    /// Sets the queue gauges from the store's figures.
    pub fn sample_queue(&self, stats: &QueueStats) {
        for status in MessageStatus::ALL {
            let n = stats.by_status.get(&status).copied().unwrap_or(0);
            self.gauge(QUEUE_MESSAGES, vec![Label::new("status", status.as_str())])
                .set(n as f64);
        }
        let age = stats.oldest_due_age.unwrap_or_default();
        self.gauge(QUEUE_OLDEST_DUE_AGE, Vec::new())
            .set(age.as_secs_f64());
    }

    /// Sets one relay's pool and circuit gauges.
    pub fn sample_relay(&self, relay: &str, pool: PoolStats, circuit: BreakerState) {
        self.gauge(RELAY_CONNECTIONS_OPEN, vec![relay_label(relay)])
            .set(pool.open as f64);
        self.gauge(RELAY_CONNECTIONS_IDLE, vec![relay_label(relay)])
            .set(pool.idle as f64);
        self.counter(RELAY_CONNECTIONS_OPENED, vec![relay_label(relay)])
            .absolute(pool.opened_total as u64);
        self.counter(RELAY_CONNECTIONS_REUSED, vec![relay_label(relay)])
            .absolute(pool.reused_total as u64);
        self.gauge(RELAY_CIRCUIT_STATE, vec![relay_label(relay)])
            .set(circuit_value(circuit));
    }

    /// Sets the alert figures: evaluations so far, and per channel what
    /// became of its notifications and how many are pending.
    pub fn sample_alerts(&self, evaluations: u64, channels: &[ChannelStats]) {
        self.counter(ALERT_EVALUATIONS, Vec::new())
            .absolute(evaluations);
        for channel in channels {
            let label = || Label::new("channel", channel.name.clone());
            for (outcome, n) in [
                ("sent", channel.sent),
                ("failed", channel.failed),
                ("dropped", channel.dropped),
            ] {
                self.counter(
                    ALERT_NOTIFICATIONS,
                    vec![label(), Label::new("outcome", outcome)],
                )
                .absolute(n);
            }
            self.gauge(ALERT_NOTIFICATIONS_PENDING, vec![label()])
                .set(channel.pending as f64);
        }
    }

    /// Everything, in the Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds recorded histogram samples into their buckets. Rendering does
    /// it too; call this periodically so that memory stays bounded when
    /// nobody scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> ::metrics::Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    fn gauge(&self, name: &'static str, labels: Vec<Label>) -> ::metrics::Gauge {
        self.recorder
            .register_gauge(&Key::from_parts(name, labels), &METADATA)
    }

    fn histogram(&self, name: &'static str, labels: Vec<Label>) -> ::metrics::Histogram {
        self.recorder
            .register_histogram(&Key::from_parts(name, labels), &METADATA)
    }
}

/// A running delivery, counted in [`DELIVERIES_IN_FLIGHT`] until dropped.
#[derive(Debug)]
#[must_use = "the delivery counts as running only while the guard lives"]
pub struct InFlight {
    metrics: Arc<Metrics>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics
            .gauge(DELIVERIES_IN_FLIGHT, Vec::new())
            .decrement(1.0);
    }
}

fn buckets(builder: PrometheusBuilder) -> Result<PrometheusBuilder, BuildError> {
    builder
        .set_buckets_for_metric(
            Matcher::Full(DELIVERY_ATTEMPT_DURATION.into()),
            ATTEMPT_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(ACCEPT_TO_DELIVERY.into()),
            ACCEPT_TO_DELIVERY_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full(HTTP_REQUEST_DURATION.into()), HTTP_BUCKETS)
}

fn relay_label(relay: &str) -> Label {
    Label::new("relay", relay.to_owned())
}

fn relay_and(key: &'static str, value: &'static str, relay: &str) -> Vec<Label> {
    vec![relay_label(relay), Label::new(key, value)]
}

/// The circuit as a number: 0 closed, 1 half-open, 2 open.
fn circuit_value(state: BreakerState) -> f64 {
    match state {
        BreakerState::Closed => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Open { .. } => 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the series `name{labels}` (labels in rendered order
    /// do not matter: every pair must be present).
    fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .find(|line| {
                let (series, _) = line.rsplit_once(' ').unwrap_or((line, ""));
                let bare = series.split('{').next().unwrap_or_default();
                bare == name
                    && labels
                        .iter()
                        .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
            })
            .and_then(|line| line.rsplit_once(' '))
            .and_then(|(_, v)| v.parse().ok())
    }

    #[test]
    fn code_classes() {
        let table = [
            (Some(250), "2xx"),
            (Some(251), "2xx"),
            (Some(421), "4xx"),
            (Some(451), "4xx"),
            (Some(550), "5xx"),
            (Some(554), "5xx"),
            (Some(354), "none"),
            (Some(0), "none"),
            (None, "none"),
        ];
        for (code, want) in table {
            assert_eq!(CodeClass::of(code).as_str(), want, "{code:?}");
        }
    }

    #[test]
    fn every_name_is_prefixed_described_and_rendered() {
        let metrics = Arc::new(Metrics::new());
        metrics.register_relay("primary");
        metrics.register_webhook("app");
        metrics.sample_alerts(
            0,
            &[ChannelStats {
                name: "ops".into(),
                kind: "webhook",
                sent: 0,
                failed: 0,
                dropped: 0,
                retries: 0,
                pending: 0,
            }],
        );
        metrics.sample_queue(&QueueStats::default());
        metrics.sample_relay("primary", PoolStats::default(), BreakerState::HalfOpen);
        metrics.http_request("/healthz", &axum::http::Method::GET, 200, Duration::ZERO);
        metrics.sample_alerts(
            7,
            &[ChannelStats {
                name: "ops".to_owned(),
                kind: "webhook",
                sent: 1,
                failed: 2,
                dropped: 3,
                retries: 4,
                pending: 5,
            }],
        );
        let text = metrics.render();
        assert_eq!(HELP.len(), ALL.len());
        for name in ALL {
            assert!(name.starts_with("herald_"), "{name}");
            assert!(HELP.iter().any(|(n, _, _)| n == name), "no help for {name}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}:\n{text}");
        }
        assert_eq!(
            value(&text, RELAY_CIRCUIT_STATE, &[("relay", "primary")]),
            Some(1.0)
        );
        assert_eq!(
            value(&text, BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))]),
            Some(1.0)
        );
        let ops = |outcome| [("channel", "ops"), ("outcome", outcome)];
        assert_eq!(value(&text, ALERT_NOTIFICATIONS, &ops("sent")), Some(1.0));
        assert_eq!(value(&text, ALERT_NOTIFICATIONS, &ops("failed")), Some(2.0));
        assert_eq!(
            value(&text, ALERT_NOTIFICATIONS, &ops("dropped")),
            Some(3.0)
        );
        assert_eq!(
            value(&text, ALERT_NOTIFICATIONS_PENDING, &[("channel", "ops")]),
            Some(5.0)
        );
        assert_eq!(value(&text, ALERT_EVALUATIONS, &[]), Some(7.0));
    }

    #[test]
    fn counters_add_up_and_servers_do_not_share() {
        let one = Arc::new(Metrics::new());
        let two = Arc::new(Metrics::new());
        one.attempt("r", AttemptOutcome::Delivered, Duration::from_millis(3));
        one.attempt("r", AttemptOutcome::Delivered, Duration::from_millis(30));
        one.smtp_reply("r", Some(451));
        one.finished(MessageStatus::Sending);
        one.finished(MessageStatus::Failed);
        one.accepted(AcceptSource::Batch, 7);
        let text = one.render();
        let attempts = [("relay", "r"), ("outcome", "delivered")];
        assert_eq!(value(&text, DELIVERY_ATTEMPTS, &attempts), Some(2.0));
        assert_eq!(
            value(&text, SMTP_REPLIES, &[("relay", "r"), ("class", "4xx")]),
            Some(1.0)
        );
        assert_eq!(
            value(&text, MESSAGES_FINISHED, &[("status", "failed")]),
            Some(1.0)
        );
        assert_eq!(
            value(&text, MESSAGES_FINISHED, &[("status", "sending")]),
            None
        );
        assert_eq!(
            value(&text, MESSAGES_ACCEPTED, &[("source", "batch")]),
            Some(7.0)
        );
        let count = format!("{DELIVERY_ATTEMPT_DURATION}_count");
        assert_eq!(value(&text, &count, &[("relay", "r")]), Some(2.0));
        let bucket = format!("{DELIVERY_ATTEMPT_DURATION}_bucket");
        assert_eq!(
            value(&text, &bucket, &[("relay", "r"), ("le", "0.005")]),
            Some(1.0)
        );
        assert_eq!(value(&two.render(), DELIVERY_ATTEMPTS, &attempts), None);
    }

    #[test]
    fn in_flight_counts_live_guards() {
        let metrics = Arc::new(Metrics::new());
        let a = metrics.in_flight();
        let b = metrics.in_flight();
        assert_eq!(
            value(&metrics.render(), DELIVERIES_IN_FLIGHT, &[]),
            Some(2.0)
        );
        drop(a);
        drop(b);
        assert_eq!(
            value(&metrics.render(), DELIVERIES_IN_FLIGHT, &[]),
            Some(0.0)
        );
    }
}
