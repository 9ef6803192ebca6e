//! XOAUTH2 tokens the server accepts, granted and revoked while it runs,
//! each until its own expiry: what a test's OAuth 2.0 token endpoint
//! issues, the SMTP server checks, as Gmail's does.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::lock;

/// A shared book of valid XOAUTH2 tokens. Clones share the book: give one
/// to [`Credentials::with_xoauth2_tokens`](crate::Credentials::with_xoauth2_tokens)
/// and keep one to grant tokens and read the counts. Times are tokio's
/// clock's.
#[derive(Clone, Default)]
pub struct TokenBook {
    inner: Arc<Mutex<Book>>,
}

#[derive(Default)]
struct Book {
    /// Token → the instant it stops being accepted (`None`: never).
    valid: HashMap<String, Option<Instant>>,
    accepted: usize,
    refused: usize,
    expired_presented: usize,
    distinct_accepted: HashMap<String, usize>,
}

impl TokenBook {
    /// An empty book: no token is accepted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `token` from now until `valid_for` has passed.
    pub fn grant(&self, token: impl Into<String>, valid_for: Duration) {
        let until = Instant::now() + valid_for;
        lock(&self.inner).valid.insert(token.into(), Some(until));
    }

    /// Accepts `token` until it is revoked.
    pub fn grant_forever(&self, token: impl Into<String>) {
        lock(&self.inner).valid.insert(token.into(), None);
    }

    /// Stops accepting `token`.
    pub fn revoke(&self, token: &str) {
        lock(&self.inner).valid.remove(token);
    }

    /// Checks a presented token, counting the answer.
    pub(crate) fn check(&self, token: &str) -> bool {
        let now = Instant::now();
        let mut book = lock(&self.inner);
        let verdict = book.valid.get(token).copied();
        match verdict {
            Some(until) if until.is_none_or(|until| now < until) => {
                book.accepted += 1;
                *book.distinct_accepted.entry(token.to_owned()).or_default() += 1;
                true
            }
            Some(_) => {
                book.expired_presented += 1;
                book.refused += 1;
                false
            }
            None => {
                book.refused += 1;
                false
            }
        }
    }

    /// XOAUTH2 exchanges that succeeded.
    pub fn accepted(&self) -> usize {
        lock(&self.inner).accepted
    }

    /// How many different tokens were accepted at least once.
    pub fn distinct_accepted(&self) -> usize {
        lock(&self.inner).distinct_accepted.len()
    }

    /// XOAUTH2 exchanges refused (unknown, revoked or expired token).
    pub fn refused(&self) -> usize {
        lock(&self.inner).refused
    }

    /// Of the refused, those whose token had been granted but had expired.
    pub fn expired_presented(&self) -> usize {
        lock(&self.inner).expired_presented
    }
}

impl PartialEq for TokenBook {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for TokenBook {}

// The tokens are secrets: only the counts show.
impl fmt::Debug for TokenBook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let book = lock(&self.inner);
        f.debug_struct("TokenBook")
            .field("tokens", &book.valid.len())
            .field("accepted", &book.accepted)
            .field("refused", &book.refused)
            .finish()
    }
}
