//! The HTTP API (docs/api.md; its types are herald-api's): routes, the state they share,
//! API-key authentication, and the health endpoints. Handlers validate
//! into herald-message types and commit through the store before they
//! answer `202`.

mod answers;
mod batch;
mod body_limit;
mod error_groups;
mod messages;
pub(crate) use messages::queued;
mod problem;
mod raw;
mod relays;
mod reload;
mod scrape;
mod suppressions;
mod template_cache;
mod templates;
mod webhooks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use herald_policy::{SharedClock, SystemClock};
use herald_store::Store;
use tokio::sync::Notify;

pub(crate) use messages::admit;
pub use problem::{MAX_FIELD_ERRORS, Problem};

use crate::config::{ApiKey, Scope};
use crate::dispatch::Dispatcher;
use crate::live::Live;
use crate::observe::Metrics;

/// What the API needs to know about limits.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// Largest rendered message (413 above).
    pub max_message_bytes: usize,
    /// Most messages in one batch.
    pub max_batch: usize,
    /// Most messages not yet final before new ones are refused (429).
    pub max_queue_depth: u64,
    /// Bounds on one message's content.
    pub message: herald_message::Limits,
}

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    pub(crate) store: Arc<dyn Store>,
    /// The accepted keys; a reload replaces them.
    pub(crate) keys: Live<Vec<ApiKey>>,
    /// What requests may hold; a reload replaces them (read once per
    /// request with [`limits`](Self::limits)).
    pub(crate) live_limits: Live<ApiLimits>,
    /// Wakes the dispatcher when there is new work.
    pub(crate) wake: Arc<Notify>,
    /// Set while delivery workers run (for `/readyz`).
    pub(crate) workers_running: Arc<AtomicBool>,
    /// This server's metrics (its own recorder, never a global one).
    pub(crate) metrics: Arc<Metrics>,
    /// Where `/metrics` samples relay pools and circuits from; `None` for a
    /// router without delivery workers.
    pub(crate) dispatcher: Option<Arc<Dispatcher>>,
    /// Error groups for `GET /v1/errors`; `None` without delivery workers.
    pub(crate) alerting: Option<Arc<herald_alerts::Alerting>>,
    /// Re-reads the configuration for `POST /v1/admin/reload`; `None` for
    /// a server that cannot reload (tests' routers).
    pub(crate) reloader: Option<Arc<crate::reload::Reloader>>,
    /// Where handlers read the time (acceptance, `send_at`, retry, cancel).
    pub(crate) clock: SharedClock,
    /// Compiled template versions, shared by this node's handlers.
    pub(crate) templates: Arc<template_cache::TemplateCache>,
    /// The configured webhook endpoints (`GET /v1/webhooks`, manual
    /// retries).
    pub(crate) webhooks: Live<Vec<crate::config::WebhookConfig>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("keys", &self.keys.get().len())
            .field("limits", &self.limits())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State for a router over `store`.
    pub fn new(
        store: Arc<dyn Store>,
        keys: Vec<ApiKey>,
        limits: ApiLimits,
        wake: Arc<Notify>,
        workers_running: Arc<AtomicBool>,
    ) -> Self {
        Self {
            store,
            keys: Live::new(keys),
            live_limits: Live::new(limits),
            wake,
            workers_running,
            metrics: Arc::new(Metrics::new()),
            dispatcher: None,
            alerting: None,
            reloader: None,
            clock: SystemClock::shared(),
            templates: Arc::default(),
            webhooks: Live::new(Vec::new()),
        }
    }

    /// The same state, reporting to `metrics` and sampling `dispatcher`'s
    /// relays at each scrape.
    pub(crate) fn with_observability(
        mut self,
        metrics: Arc<Metrics>,
        dispatcher: Arc<Dispatcher>,
    ) -> Self {
        self.metrics = metrics;
        self.dispatcher = Some(dispatcher);
        self
    }

    /// The configured key `presented` is, if any: compared against every
    /// key, whatever matches, so that timing says nothing about which.
    pub(crate) fn key_for(&self, presented: &str) -> Option<ApiKey> {
        let keys = self.keys.get();
        let mut matched = None;
        for key in keys.iter() {
            if key.matches(presented) && matched.is_none() {
                matched = Some(key);
            }
        }
        matched.cloned()
    }

    /// The limits now (a reload may replace them for later requests).
    pub(crate) fn limits(&self) -> Arc<ApiLimits> {
        self.live_limits.get()
    }

    /// Serves `POST /v1/admin/reload` with `reloader`.
    pub(crate) fn with_reloader(mut self, reloader: Arc<crate::reload::Reloader>) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// The same state, reading the time from `clock`.
    pub(crate) fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Shows and retries to these webhook endpoints.
    pub(crate) fn with_webhooks(
        mut self,
        webhooks: Live<Vec<crate::config::WebhookConfig>>,
    ) -> Self {
        self.webhooks = webhooks;
        self
    }

    /// Serves `GET /v1/errors` from `alerting`'s error groups.
    pub(crate) fn with_alerting(mut self, alerting: Arc<herald_alerts::Alerting>) -> Self {
        self.alerting = Some(alerting);
        self
    }
}

/// Every route the API serves, as (method, path template); the OpenAPI
/// document must list exactly these (a test checks both ways).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/messages"),
    ("GET", "/v1/messages"),
    ("POST", "/v1/messages/batch"),
    ("POST", "/v1/messages/raw"),
    ("GET", "/v1/messages/{id}"),
    ("POST", "/v1/messages/{id}/retry"),
    ("POST", "/v1/messages/{id}/cancel"),
    ("GET", "/v1/errors"),
    ("GET", "/v1/suppressions"),
    ("POST", "/v1/suppressions"),
    ("GET", "/v1/suppressions/{address}"),
    ("DELETE", "/v1/suppressions/{address}"),
    ("GET", "/v1/webhooks"),
    ("GET", "/v1/webhooks/deliveries"),
    ("POST", "/v1/webhooks/deliveries/{id}/retry"),
    ("POST", "/v1/templates"),
    ("GET", "/v1/templates"),
    ("GET", "/v1/templates/{name}"),
    ("PUT", "/v1/templates/{name}"),
    ("DELETE", "/v1/templates/{name}"),
    ("POST", "/v1/templates/{name}/render"),
    ("GET", "/v1/relays"),
    ("POST", "/v1/admin/reload"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

/// The complete HTTP API.
pub fn router(state: AppState) -> Router {
    // The body caps follow the live limits (see body_limit.rs), so axum's
    // fixed default is off on these routes.
    let capped = |messages: usize| {
        middleware::from_fn_with_state((state.clone(), messages), body_limit::limit)
    };
    let v1 = Router::new()
        .route(
            "/v1/messages",
            post(messages::create)
                .get(messages::list)
                .route_layer(capped(1))
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/v1/messages/raw",
            post(raw::create)
                .route_layer(capped(1))
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/v1/messages/batch",
            post(batch::create_batch)
                .route_layer(capped(4))
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/messages/{id}", get(messages::show))
        .route("/v1/messages/{id}/retry", post(messages::retry))
        .route("/v1/messages/{id}/cancel", post(messages::cancel))
        .route("/v1/errors", get(error_groups::list))
        .route(
            "/v1/suppressions",
            get(suppressions::list).post(suppressions::add),
        )
        .route(
            "/v1/suppressions/{address}",
            get(suppressions::show).delete(suppressions::remove),
        )
        .route("/v1/webhooks", get(webhooks::endpoints))
        .route("/v1/webhooks/deliveries", get(webhooks::list))
        .route("/v1/webhooks/deliveries/{id}/retry", post(webhooks::retry))
        .route(
            "/v1/templates",
            post(templates::create).get(templates::list),
        )
        .route(
            "/v1/templates/{name}",
            get(templates::show)
                .put(templates::update)
                .delete(templates::delete),
        )
        .route("/v1/templates/{name}/render", post(templates::render))
        .route("/v1/relays", get(relays::list))
        .route("/v1/admin/reload", post(reload::reload))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    Router::new()
        .merge(v1)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(scrape::metrics))
        .fallback(|| async { Problem::not_found_route() })
        // After every route: it is set on the routes registered so far.
        .method_not_allowed_fallback(|| async { Problem::method_not_allowed() })
        // Outermost, so that it sees every answer (401s, 404s, 405s too)
        // and, inside a route, its template.
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            scrape::track_http,
        ))
        .layer(middleware::map_response(security_headers))
        .with_state(state)
}

/// The name of the API key a request was authenticated with, as an
/// extension of every request that passed [`require_api_key`]. Handlers
/// can take it (`Extension<ApiKeyName>`) to record who did what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyName(pub String);

/// The scope a route needs (`None` for a route the API does not know,
/// which the router answers with 404 or 405 before this matters).
pub fn required_scope(method: &str, template: &str) -> Option<Scope> {
    Some(match (method, template) {
        ("POST", "/v1/messages" | "/v1/messages/batch" | "/v1/messages/raw") => Scope::Send,
        ("GET" | "HEAD", "/v1/messages" | "/v1/messages/{id}" | "/v1/relays") => Scope::Read,
        ("POST", "/v1/messages/{id}/retry" | "/v1/messages/{id}/cancel") => Scope::Manage,
        ("GET" | "HEAD", "/v1/errors") | ("POST", "/v1/admin/reload") => Scope::Admin,
        ("GET" | "HEAD", "/v1/suppressions" | "/v1/suppressions/{address}") => Scope::Read,
        ("GET" | "HEAD", "/v1/webhooks" | "/v1/webhooks/deliveries") => Scope::Read,
        ("POST", "/v1/webhooks/deliveries/{id}/retry") => Scope::Manage,
        ("POST", "/v1/suppressions") | ("DELETE", "/v1/suppressions/{address}") => Scope::Manage,
        ("GET" | "HEAD", "/v1/templates" | "/v1/templates/{name}") => Scope::Read,
        ("POST", "/v1/templates/{name}/render") => Scope::Read,
        ("POST", "/v1/templates") | ("PUT" | "DELETE", "/v1/templates/{name}") => Scope::Manage,
        _ => return None,
    })
}

/// `Authorization: Bearer <key>`, compared in constant time against every
/// configured key (401 without a match); then the key's scopes against
/// the route's (403 when it lacks the scope). The key's name goes with
/// the request as [`ApiKeyName`].
/// The scheme is case-insensitive (RFC 9110 §11.1).
async fn require_api_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty());
    let Some(presented) = presented else {
        return Problem::unauthorized().into_response();
    };
    let Some(key) = state.key_for(presented) else {
        return Problem::unauthorized().into_response();
    };
    let needed = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|path| required_scope(request.method().as_str(), path.as_str()));
    // A route without a scope is a route this table forgot: refused, not
    // open.
    if !needed.is_some_and(|scope| key.scopes().allows(scope)) {
        return Problem::forbidden(needed).into_response();
    }
    request
        .extensions_mut()
        .insert(ApiKeyName(key.name().to_owned()));
    next.run(request).await
}

/// `X-Content-Type-Options: nosniff` and `Cache-Control: no-store` on every
/// answer: API answers are data for one client, never a page to render or
/// to keep in a shared cache.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let store_ok = state.store.ping().await.is_ok();
    let workers = state.workers_running.load(Ordering::Relaxed);
    if store_ok && workers {
        (StatusCode::OK, "ready").into_response()
    } else {
        let mut problem = Problem::unavailable();
        problem.detail = match (store_ok, workers) {
            (false, _) => "the message store does not answer".into(),
            _ => "delivery workers are not running".into(),
        };
        problem.into_response()
    }
}
