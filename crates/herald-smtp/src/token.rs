//! Where an XOAUTH2 access token comes from at each AUTH: a fixed string,
//! or a source that fetches, caches and refreshes it (OAuth 2.0 refresh
//! tokens, as Gmail and Microsoft 365 issue). The session asks for the
//! current token every time it authenticates, and tells the source when
//! the server refused one, so that an expired token is replaced instead
//! of being tried again.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// What [`TokenSource::token`] returns: a boxed future, so that sources
/// can be shared as `Arc<dyn TokenSource>`.
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<String, TokenError>> + Send + 'a>>;

/// A source of OAuth 2.0 access tokens for AUTH XOAUTH2.
///
/// `Debug` implementations must not show any secret.
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// The access token to use now (cached while it is fresh).
    fn token(&self) -> TokenFuture<'_>;

    /// The server refused `token` (it may have expired or been revoked):
    /// forget it, so that the next [`token`](Self::token) fetches a new
    /// one. A token other than the current one is ignored (a newer one
    /// was fetched meanwhile).
    fn invalidate(&self, token: &str);
}

/// Why no token could be had (the token endpoint refused or could not be
/// reached). The text never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    detail: String,
    transient: bool,
}

impl TokenError {
    /// A refusal that trying again will not change (`invalid_grant`, a
    /// wrong client secret): the operator must act.
    pub fn permanent(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            transient: false,
        }
    }

    /// A fault that may pass (the endpoint unreachable, a timeout, a 5xx).
    pub fn transient(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            transient: true,
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// What went wrong, without secrets.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for TokenError {}
