//! Observability: what herald tells its operators about itself besides the
//! log. The metric names and label values live in [`metrics`]; [`Metrics`]
//! is the typed facade every part of the service emits through, and
//! `GET /metrics` renders it.

mod facade;
pub mod metrics;

pub use facade::{InFlight, Metrics};
