//! Every metric herald exports, in one place: the names (constants, all
//! `herald_`-prefixed), their help text, and the label values (typed and
//! bounded: relay names come from the configuration, routes are
//! templates, never a recipient or a message id). [`Metrics`](super::Metrics)
//! is the facade that emits them.

/// `gauge{version}`, always 1: which build is running.
pub const BUILD_INFO: &str = "herald_build_info";
/// `counter{source}`: messages accepted (committed) by the API, by `source`
/// (`api` for `POST /v1/messages`, `batch` for `POST /v1/messages/batch`).
/// An idempotent replay is not counted again.
pub const MESSAGES_ACCEPTED: &str = "herald_messages_accepted_total";
/// `counter{relay, outcome}`: delivery attempts, one per message handed to
/// a relay (or the outbox), by how the attempt went; see
/// [`AttemptOutcome`].
pub const DELIVERY_ATTEMPTS: &str = "herald_delivery_attempts_total";
/// `histogram{relay}`: how long one attempt at one relay took, in seconds.
pub const DELIVERY_ATTEMPT_DURATION: &str = "herald_delivery_attempt_duration_seconds";
/// `counter{relay, class}`: SMTP replies that decided a recipient's fate
/// (or a session's, when the relay failed as a whole), by code class; see
/// [`CodeClass`].
pub const SMTP_REPLIES: &str = "herald_smtp_replies_total";
/// `counter{outcome}`: recipients after each recorded attempt: `delivered`,
/// `deferred` (to be retried) or `failed` (for good, including recipients
/// still deferred when retries run out).
pub const RECIPIENTS: &str = "herald_recipients_total";
/// `counter{status}`: messages that reached a final status (`delivered`,
/// `partial`, `failed`, `cancelled`).
pub const MESSAGES_FINISHED: &str = "herald_messages_finished_total";
/// `counter{relay}`: retries scheduled after an attempt left recipients
/// deferred, by the relay of that attempt.
pub const RETRIES_SCHEDULED: &str = "herald_retries_scheduled_total";
/// `histogram`: seconds from acceptance to the attempt that delivered the
/// message to every recipient (status `delivered`).
pub const ACCEPT_TO_DELIVERY: &str = "herald_accept_to_delivery_seconds";
/// `gauge`: deliveries running now.
pub const DELIVERIES_IN_FLIGHT: &str = "herald_deliveries_in_flight";
/// `gauge{status}`: messages in the store by status (sampled at scrape).
pub const QUEUE_MESSAGES: &str = "herald_queue_messages";
/// `gauge`: age in seconds of the oldest message due now, counted from when
/// it became due; 0 when nothing is due (sampled at scrape).
pub const QUEUE_OLDEST_DUE_AGE: &str = "herald_queue_oldest_due_age_seconds";
/// `gauge{relay}`: SMTP sessions open to the relay, busy and idle (sampled
/// at scrape).
pub const RELAY_CONNECTIONS_OPEN: &str = "herald_relay_connections_open";
/// `gauge{relay}`: SMTP sessions idle in the relay's pool (sampled at
/// scrape).
pub const RELAY_CONNECTIONS_IDLE: &str = "herald_relay_connections_idle";
/// `counter{relay}`: SMTP sessions opened to the relay.
pub const RELAY_CONNECTIONS_OPENED: &str = "herald_relay_connections_opened_total";
/// `counter{relay}`: times an idle session was reused for another message.
pub const RELAY_CONNECTIONS_REUSED: &str = "herald_relay_connections_reused_total";
/// `gauge{relay}`: the relay's circuit breaker: 0 closed, 1 half-open,
/// 2 open (sampled at scrape).
pub const RELAY_CIRCUIT_STATE: &str = "herald_relay_circuit_state";
/// `counter{channel, outcome}`: alert notifications by what became of
/// them: `sent`, `failed` (given up after every try) or `dropped` (the
/// channel's queue was full). Sampled at scrape from the alert channels.
pub const ALERT_NOTIFICATIONS: &str = "herald_alert_notifications_total";
/// `gauge{channel}`: alert notifications queued or being sent now
/// (sampled at scrape).
pub const ALERT_NOTIFICATIONS_PENDING: &str = "herald_alert_notifications_pending";
/// `counter`: alert rule evaluations this node ran; it stays put on a node
/// that does not hold the evaluator's role (sampled at scrape).
pub const ALERT_EVALUATIONS: &str = "herald_alert_evaluations_total";
/// `counter{route, method, status}`: HTTP requests answered, by route
/// template (`unmatched` for none), method and status code.
pub const HTTP_REQUESTS: &str = "herald_http_requests_total";
/// `histogram{route, method}`: seconds from request to response head.
pub const HTTP_REQUEST_DURATION: &str = "herald_http_request_duration_seconds";
/// Counter `{class}`: recipients failed or deferred, by bounce class.
pub const RECIPIENT_CLASSES: &str = "herald_recipient_failures_total";
/// Counter `{reason}`: entries added to the suppression list.
pub const SUPPRESSIONS_ADDED: &str = "herald_suppressions_added_total";
/// Counter `{webhook, outcome}`: tries to deliver an event to an endpoint.
pub const WEBHOOK_DELIVERIES: &str = "herald_webhook_deliveries_total";
/// Gauge `{webhook}`: age of the oldest event not yet delivered to the
/// endpoint (0 when it is caught up).
pub const WEBHOOK_OLDEST_UNDELIVERED_AGE: &str = "herald_webhook_oldest_undelivered_age_seconds";
/// Counter `{result}`: configuration reloads (SIGHUP or
/// `POST /v1/admin/reload`), `applied` or `refused` (the file did not
/// validate; the running configuration stayed).
pub const CONFIG_RELOADS: &str = "herald_config_reloads_total";

/// Every metric name above, in the order the operations guide lists them.
pub const ALL: &[&str] = &[
    BUILD_INFO,
    MESSAGES_ACCEPTED,
    DELIVERY_ATTEMPTS,
    DELIVERY_ATTEMPT_DURATION,
    SMTP_REPLIES,
    RECIPIENTS,
    MESSAGES_FINISHED,
    RETRIES_SCHEDULED,
    ACCEPT_TO_DELIVERY,
    DELIVERIES_IN_FLIGHT,
    QUEUE_MESSAGES,
    QUEUE_OLDEST_DUE_AGE,
    RELAY_CONNECTIONS_OPEN,
    RELAY_CONNECTIONS_IDLE,
    RELAY_CONNECTIONS_OPENED,
    RELAY_CONNECTIONS_REUSED,
    RELAY_CIRCUIT_STATE,
    ALERT_NOTIFICATIONS,
    ALERT_NOTIFICATIONS_PENDING,
    ALERT_EVALUATIONS,
    HTTP_REQUESTS,
    HTTP_REQUEST_DURATION,
    RECIPIENT_CLASSES,
    SUPPRESSIONS_ADDED,
    WEBHOOK_DELIVERIES,
    WEBHOOK_OLDEST_UNDELIVERED_AGE,
    CONFIG_RELOADS,
];

/// The `relay` label of attempts made without a relay: the message could
/// not be sent anywhere (every circuit open, or a stored envelope that no
/// longer parses).
pub const RELAY_NONE: &str = "none";
/// The `relay` label of messages written to the file outbox.
pub const RELAY_OUTBOX: &str = "outbox";
/// The `route` label of requests no route matched.
pub const ROUTE_UNMATCHED: &str = "unmatched";

/// A metric's type, for its `# TYPE` line's sake.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Type and help text (promtool wants `# HELP` for every metric).
pub(crate) const HELP: &[(&str, Kind, &str)] = &[
    (
        BUILD_INFO,
        Kind::Gauge,
        "Always 1; the version label says which herald runs.",
    ),
    (
        MESSAGES_ACCEPTED,
        Kind::Counter,
        "Messages accepted and committed, by API source.",
    ),
    (
        DELIVERY_ATTEMPTS,
        Kind::Counter,
        "Delivery attempts, by relay and outcome.",
    ),
    (
        DELIVERY_ATTEMPT_DURATION,
        Kind::Histogram,
        "Duration of one delivery attempt at one relay, in seconds.",
    ),
    (
        SMTP_REPLIES,
        Kind::Counter,
        "SMTP replies that decided a recipient (or a failed session), by relay and code class.",
    ),
    (
        RECIPIENTS,
        Kind::Counter,
        "Recipients after each recorded attempt, by outcome.",
    ),
    (
        MESSAGES_FINISHED,
        Kind::Counter,
        "Messages that reached a final status, by status.",
    ),
    (
        RETRIES_SCHEDULED,
        Kind::Counter,
        "Retries scheduled after an attempt left recipients deferred, by relay.",
    ),
    (
        ACCEPT_TO_DELIVERY,
        Kind::Histogram,
        "Seconds from acceptance to delivery to every recipient.",
    ),
    (DELIVERIES_IN_FLIGHT, Kind::Gauge, "Deliveries running now."),
    (
        QUEUE_MESSAGES,
        Kind::Gauge,
        "Messages in the store, by status.",
    ),
    (
        QUEUE_OLDEST_DUE_AGE,
        Kind::Gauge,
        "Age in seconds of the oldest message due now (0 when none is due).",
    ),
    (
        RELAY_CONNECTIONS_OPEN,
        Kind::Gauge,
        "SMTP sessions open to the relay (busy and idle).",
    ),
    (
        RELAY_CONNECTIONS_IDLE,
        Kind::Gauge,
        "SMTP sessions idle in the relay's pool.",
    ),
    (
        RELAY_CONNECTIONS_OPENED,
        Kind::Counter,
        "SMTP sessions opened to the relay.",
    ),
    (
        RELAY_CONNECTIONS_REUSED,
        Kind::Counter,
        "Times an idle SMTP session was reused.",
    ),
    (
        RELAY_CIRCUIT_STATE,
        Kind::Gauge,
        "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
    ),
    (
        ALERT_NOTIFICATIONS,
        Kind::Counter,
        "Alert notifications, by channel and outcome (sent, failed, dropped).",
    ),
    (
        ALERT_NOTIFICATIONS_PENDING,
        Kind::Gauge,
        "Alert notifications queued or being sent, by channel.",
    ),
    (
        ALERT_EVALUATIONS,
        Kind::Counter,
        "Alert rule evaluations run by this node.",
    ),
    (
        HTTP_REQUESTS,
        Kind::Counter,
        "HTTP requests answered, by route template, method and status.",
    ),
    (
        HTTP_REQUEST_DURATION,
        Kind::Histogram,
        "Seconds from an HTTP request to its response, by route template and method.",
    ),
    (
        RECIPIENT_CLASSES,
        Kind::Counter,
        "Recipients failed or deferred after a recorded attempt, by bounce class.",
    ),
    (
        SUPPRESSIONS_ADDED,
        Kind::Counter,
        "Entries added to the suppression list, by reason.",
    ),
    (
        WEBHOOK_DELIVERIES,
        Kind::Counter,
        "Tries to deliver an event to a webhook endpoint, by endpoint and outcome.",
    ),
    (
        WEBHOOK_OLDEST_UNDELIVERED_AGE,
        Kind::Gauge,
        "Age in seconds of the oldest event not yet delivered to the endpoint (0 when caught up).",
    ),
    (
        CONFIG_RELOADS,
        Kind::Counter,
        "Configuration reloads, by result (applied, or refused with the running configuration kept).",
    ),
];

/// Where an accepted message came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptSource {
    /// `POST /v1/messages`.
    Api,
    /// `POST /v1/messages/batch`.
    Batch,
    /// The SMTP submission listener.
    Smtp,
    /// `POST /v1/messages/raw`.
    Raw,
}

impl AcceptSource {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Batch => "batch",
            Self::Smtp => "smtp",
            Self::Raw => "raw",
        }
    }
}

/// How one attempt at one relay went: the store's outcome, one vocabulary
/// for the API's events, the logs and this label.
pub use herald_store::AttemptOutcome;

/// The `outcome` label values of [`RECIPIENTS`]: a recipient's status
/// after the attempt (deferred recipients whose retries ran out count as
/// `failed`; recipients on the suppression list, not sent to, count as
/// `suppressed`).
pub const RECIPIENT_OUTCOMES: [herald_store::RecipientStatus; 4] = [
    herald_store::RecipientStatus::Delivered,
    herald_store::RecipientStatus::Deferred,
    herald_store::RecipientStatus::Failed,
    herald_store::RecipientStatus::Suppressed,
];

/// An SMTP reply code's class: the `class` label of [`SMTP_REPLIES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeClass {
    /// 200–299.
    Success,
    /// 400–499.
    Transient,
    /// 500–599.
    Permanent,
    /// No reply (the connection failed, timed out or was dropped), or a
    /// code outside the classes above.
    None,
}

impl CodeClass {
    /// Every class, for pre-registering zero series.
    pub const ALL: [Self; 4] = [Self::Success, Self::Transient, Self::Permanent, Self::None];

    /// The class of `code`.
    pub fn of(code: Option<u16>) -> Self {
        match code {
            Some(200..=299) => Self::Success,
            Some(400..=499) => Self::Transient,
            Some(500..=599) => Self::Permanent,
            _ => Self::None,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "2xx",
            Self::Transient => "4xx",
            Self::Permanent => "5xx",
            Self::None => "none",
        }
    }
}
