//! `GET /metrics` and the middleware that counts every HTTP request. The
//! figures that describe the present (queue, pools, circuits, alert
//! channels) are sampled here, at scrape time, rather than kept up to date
//! on every change.

use std::sync::Arc;
use tokio::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::observe::Metrics;
use crate::observe::metrics::ROUTE_UNMATCHED;

/// The text exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: samples the gauges, then renders everything.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    match state.store.stats(state.clock.now()).await {
        Ok(stats) => state.metrics.sample_queue(&stats),
        // The queue gauges keep their last values; /readyz says the store
        // is down.
        Err(error) => tracing::warn!(error = %error, "queue figures unavailable for /metrics"),
    }
    if let Some(dispatcher) = &state.dispatcher {
        for relay in dispatcher.relay_samples() {
            state
                .metrics
                .sample_relay(&relay.name, relay.pool, relay.circuit);
        }
    }
    if let Some(alerting) = &state.alerting {
        state
            .metrics
            .sample_alerts(alerting.evaluations(), &alerting.channel_stats());
    }
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

/// Counts the request by route template (never the concrete path, which
/// holds message ids), method and status, and times it.
pub(crate) async fn track_http(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let method = request.method().clone();
    let response = next.run(request).await;
    metrics.http_request(
        route.as_deref().unwrap_or(ROUTE_UNMATCHED),
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
