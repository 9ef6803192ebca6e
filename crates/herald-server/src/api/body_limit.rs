//! The body cap of the message routes, read from the live limits at each
//! request: a reload that raises `limits.max_message_bytes` takes effect
//! for the next body, with no restart. A body past the cap stops being
//! read there and is answered `413`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::Limited;

use super::AppState;

/// The most bytes one request body may have: the JSON of a message
/// carries its attachments in base64 (4/3 of their bytes) plus its text
/// parts, so 4/3 of `max_message_bytes` and 1 MiB; `messages` times that
/// for a route that takes several (a batch).
pub(super) fn cap(max_message_bytes: usize, messages: usize) -> usize {
    let one = max_message_bytes.saturating_mul(4) / 3 + 1024 * 1024;
    one.saturating_mul(messages)
}

/// Middleware: caps the body at [`cap`] of the limits in force, for a
/// route that takes up to `messages` messages per request.
pub(super) async fn limit(
    State((state, messages)): State<(AppState, usize)>,
    request: Request,
    next: Next,
) -> Response {
    let max = cap(state.limits().max_message_bytes, messages);
    next.run(request.map(|body| Body::new(Limited::new(body, max))))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_may_carry_its_attachments_in_base64_and_a_batch_four() {
        assert_eq!(cap(3 * 1024 * 1024, 1), 5 * 1024 * 1024);
        assert_eq!(cap(3 * 1024 * 1024, 4), 20 * 1024 * 1024);
        assert_eq!(cap(usize::MAX, 4), usize::MAX, "saturates");
    }
}
