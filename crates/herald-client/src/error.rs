//! What can go wrong talking to herald, classified so that callers (and the
//! client's own retry loop) ask questions instead of matching on text.

use herald_api::Problem;

/// A failed call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// herald answered with a problem (a 4xx or 5xx with its details).
    #[error("herald refused the request: {0}")]
    Api(Problem),
    /// herald answered an error status without a problem body (a proxy in
    /// between, most likely).
    #[error("HTTP {status} without a problem body")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// No connection could be made: nothing reached the server.
    #[error("cannot connect to herald: {0}")]
    Connect(String),
    /// The connection failed after the request may have been sent.
    #[error("the connection to herald failed: {0}")]
    Transport(String),
    /// No answer within the client's timeout.
    #[error("no answer from herald within {0:?}")]
    Timeout(std::time::Duration),
    /// The answer was not what the API promises.
    #[error("unexpected answer from herald: {0}")]
    Decode(String),
    /// The base URL or a request could not be built.
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl Error {
    /// The HTTP status herald answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api(problem) => Some(problem.status),
            Self::Status { status } => Some(*status),
            _ => None,
        }
    }

    /// The problem herald answered, if any.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Api(problem) => Some(problem),
            _ => None,
        }
    }

    /// Whether the same request may succeed later: a 429, a 503, or a
    /// connection that could not be made or was lost.
    pub fn is_transient(&self) -> bool {
        matches!(self.status(), Some(429 | 503))
            || matches!(
                self,
                Self::Connect(_) | Self::Transport(_) | Self::Timeout(_)
            )
    }

    /// Whether nothing can have reached the server (a refused request or
    /// no connection): safe to repeat even without an idempotency key.
    pub(crate) fn nothing_done(&self) -> bool {
        matches!(self.status(), Some(429 | 503)) || matches!(self, Self::Connect(_))
    }
}
