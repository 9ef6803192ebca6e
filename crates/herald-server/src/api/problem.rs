//! One error type for the whole API, rendered as RFC 9457 problem details
//! (herald-api's [`herald_api::Problem`]) with a stable `type`. Internal
//! causes go to the log, never to clients.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_message::FieldError;
use herald_store::StoreError;

/// The most field errors one problem lists; the rest are counted in
/// `omitted_errors`.
pub const MAX_FIELD_ERRORS: usize = 20;

/// A failed request: what the client will see (its [`Problem::body`]),
/// and the headers that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// A stable identifier of the problem kind, e.g. `/problems/validation`.
    pub kind: &'static str,
    /// A short human title.
    pub title: &'static str,
    /// The HTTP status, repeated in the body.
    pub status: u16,
    /// What exactly went wrong.
    pub detail: String,
    /// Field errors, for validation problems: at most
    /// [`MAX_FIELD_ERRORS`], in field order.
    pub errors: Vec<FieldError>,
    /// How many more field errors there were than `errors` lists.
    pub omitted_errors: usize,
    /// Seconds to wait before retrying (429, 503): the `Retry-After`
    /// header, not part of the body.
    pub retry_after: Option<u64>,
}

impl Problem {
    fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            title,
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            omitted_errors: 0,
            retry_after: None,
        }
    }

    /// 400: not JSON, or not the schema.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "/problems/malformed",
            "Malformed request",
            detail,
        )
    }

    /// 401: no or wrong API key.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "/problems/unauthorized",
            "Unauthorized",
            "a valid API key is required: Authorization: Bearer <key>",
        )
    }

    /// 403: the key is valid but lacks the scope the route needs.
    pub fn forbidden(needed: Option<crate::config::Scope>) -> Self {
        let detail = match needed {
            Some(scope) => format!("this API key lacks the {scope} scope this request needs"),
            None => "this API key may not make this request".to_owned(),
        };
        Self::new(
            StatusCode::FORBIDDEN,
            "/problems/forbidden",
            "Forbidden",
            detail,
        )
    }

    /// 404: no such message.
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "/problems/not-found",
            "Not found",
            "no message with that id",
        )
    }

    /// 404 for a path that is not part of the API.
    pub fn not_found_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "/problems/not-found",
            "Not found",
            "no such route",
        )
    }

    /// 405: the path exists, the method does not (axum adds `Allow`).
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "/problems/method-not-allowed",
            "Method not allowed",
            "this route does not accept that method; see the Allow header",
        )
    }

    /// 409: a state change not allowed, or an idempotency key reused.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "/problems/conflict",
            "Conflict",
            detail,
        )
    }

    /// 413: larger than the limits allow.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "/problems/too-large",
            "Message too large",
            detail,
        )
    }

    /// 422: well-formed but invalid; the first [`MAX_FIELD_ERRORS`] field
    /// errors listed, the rest counted, so that the answer stays small
    /// whatever the request holds.
    pub fn validation(mut errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [] => "invalid message".to_owned(),
            [one] => one.to_string(),
            [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
        };
        let omitted_errors = errors.len().saturating_sub(MAX_FIELD_ERRORS);
        errors.truncate(MAX_FIELD_ERRORS);
        Self {
            errors,
            omitted_errors,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "/problems/validation",
                "Invalid message",
                detail,
            )
        }
    }

    /// 422: a configuration reload refused: the file does not validate
    /// (`detail` is what `herald check-config` says about it); the running
    /// configuration stays in force.
    pub fn config_refused(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/config-refused",
            "Configuration refused",
            detail,
        )
    }

    /// 429: the queue is full.
    pub fn queue_full(depth: u64, max: u64) -> Self {
        Self {
            retry_after: Some(30),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "/problems/queue-full",
                "Queue full",
                format!("{depth} messages are waiting (limit {max}); try again later"),
            )
        }
    }

    /// 503: the store cannot be reached; nothing was acknowledged.
    pub fn unavailable() -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "/problems/unavailable",
                "Service unavailable",
                "the message store is unavailable; nothing was stored",
            )
        }
    }

    /// 500: a bug. Details are logged, not returned.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "/problems/internal",
            "Internal error",
            "an unexpected error occurred",
        )
    }

    /// The body the client reads.
    pub fn body(&self) -> herald_api::Problem {
        herald_api::Problem {
            kind: self.kind.to_owned(),
            title: self.title.to_owned(),
            status: self.status,
            detail: self.detail.clone(),
            errors: self.errors.clone(),
            omitted_errors: self.omitted_errors,
        }
    }

    /// The HTTP status.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::not_found(),
            StoreError::IdempotencyConflict => {
                Self::conflict("Idempotency-Key was used before with a different request body")
            }
            StoreError::IllegalState(status) => {
                Self::conflict(format!("not allowed while the message is {status}"))
            }
            StoreError::LeaseLost => Self::conflict("the message changed meanwhile; try again"),
            StoreError::Unavailable(cause) => {
                tracing::error!(error = %cause, "store unavailable");
                Self::unavailable()
            }
            other => {
                tracing::error!(error = %other, "unexpected store error");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let retry_after = self.retry_after;
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(herald_api::PROBLEM_CONTENT_TYPE),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
