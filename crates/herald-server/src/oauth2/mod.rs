//! XOAUTH2 access tokens that keep working: a relay's `[relays.oauth2]`
//! gives a token endpoint, a client and a refresh token (Gmail and
//! Microsoft 365 both work this way); [`RefreshingToken`] exchanges the
//! refresh token for an access token (RFC 6749 §6), caches it until
//! shortly before it expires, and fetches a new one when it has aged or
//! when the relay refused it. Concurrent deliveries share one refresh.
//!
//! It lives in the service, not in herald-smtp: the SMTP client only asks
//! a [`TokenSource`] for a token at each AUTH; where tokens come from
//! (HTTPS to a provider, the injected clock deciding their age) is the
//! service's business.
//!
//! Secrets (the client secret, the refresh token, access tokens) appear in
//! no log line, no error and no `Debug` output.

mod endpoint;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_policy::SharedClock;
use herald_smtp::{TokenError, TokenFuture, TokenSource};

pub use endpoint::check_token_url;

/// `refresh_margin` unless set: a token is refreshed this long before its
/// expiry, or at half its lifetime for a token shorter than twice this (so
/// that even a 2-second token is refreshed in time).
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// `timeout` unless set: how long one token request may take, connect to
/// last byte.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// `[relays.oauth2]`, validated, with the secrets read from the
/// environment. `Debug` shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuth2Config {
    /// The token endpoint, `https://…` (plain `http://` only to
    /// 127.0.0.1, `::1` or localhost).
    pub token_url: String,
    /// The OAuth client's id.
    pub client_id: String,
    /// The OAuth client's secret (`None` for a public client).
    pub client_secret: Option<String>,
    /// The long-lived refresh token.
    pub refresh_token: String,
    /// The scope asked for, if any (`https://mail.google.com/`,
    /// `https://outlook.office.com/SMTP.Send offline_access`).
    pub scope: Option<String>,
    /// How long one token request may take.
    pub timeout: Duration,
    /// How long before its expiry a token is refreshed (at most half its
    /// lifetime).
    pub refresh_margin: Duration,
}

impl fmt::Debug for OAuth2Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Config")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("refresh_token", &"***")
            .field("scope", &self.scope)
            .field("timeout", &self.timeout)
            .field("refresh_margin", &self.refresh_margin)
            .finish()
    }
}

/// One relay's access tokens: fetched when first asked for, cached while
/// fresh, refreshed by one caller while the others wait for its answer.
///
/// A refresh runs on a task of its own: a caller that stops waiting (the
/// AUTH command's timeout, shorter than the token request's) does not
/// cancel it, so its token, or its error, is there for the next caller.
pub struct RefreshingToken {
    inner: Arc<Inner>,
}

struct Inner {
    relay: String,
    config: OAuth2Config,
    clock: SharedClock,
    state: Mutex<State>,
    /// Held by the one caller refreshing; the others queue behind it and
    /// then use its token (or its error).
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    current: Option<Cached>,
    /// Refreshes finished (successful or not): a caller that waited for
    /// the lock sees whether one finished meanwhile.
    refreshes: u64,
    /// The last refresh's error, while no token has been had since.
    failed: Option<TokenError>,
}

struct Cached {
    token: String,
    /// From here on a new token is fetched before use.
    refresh_at: Instant,
    /// The provider stops accepting it here.
    expires_at: Instant,
}

impl RefreshingToken {
    /// Tokens for relay `relay` per `config`, their age told by `clock`.
    pub fn new(relay: impl Into<String>, config: OAuth2Config, clock: SharedClock) -> Self {
        Self {
            inner: Arc::new(Inner {
                relay: relay.into(),
                config,
                clock,
                state: Mutex::new(State::default()),
                refreshing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// How many token requests were made (successful or not).
    pub fn refreshes(&self) -> u64 {
        crate::lock(&self.inner.state).refreshes
    }

    /// The current token, from the cache or a refresh run to its end on a
    /// task of its own.
    async fn current(&self) -> Result<String, TokenError> {
        if let Some(token) = self.inner.fresh() {
            return Ok(token);
        }
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move { inner.current().await })
            .await
            .unwrap_or_else(|_| Err(TokenError::transient("the token refresh task failed")))
    }
}

impl Inner {
    /// The cached token, if it is still fresh.
    fn fresh(&self) -> Option<String> {
        let now = self.clock.instant();
        let state = crate::lock(&self.state);
        state
            .current
            .as_ref()
            .filter(|c| now < c.refresh_at)
            .map(|c| c.token.clone())
    }

    async fn current(&self) -> Result<String, TokenError> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let seen = crate::lock(&self.state).refreshes;
        let _refreshing = self.refreshing.lock().await;
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        {
            let state = crate::lock(&self.state);
            if state.refreshes != seen
                && let Some(error) = &state.failed
            {
                // Another caller's refresh failed while this one waited:
                // its answer stands; no second request.
                return self.fallback(&state, error.clone());
            }
        }
        let asked = self.clock.instant();
        let answer = endpoint::request(&self.config, self.config.timeout).await;
        let mut state = crate::lock(&self.state);
        state.refreshes += 1;
        match answer {
            Ok(grant) => {
                let margin = self.config.refresh_margin.min(grant.lifetime / 2);
                // Counted from the request, not the answer: never late.
                state.current = Some(Cached {
                    token: grant.access_token.clone(),
                    refresh_at: asked + grant.lifetime.saturating_sub(margin),
                    expires_at: asked + grant.lifetime,
                });
                state.failed = None;
                tracing::info!(
                    relay = %self.relay,
                    expires_in_s = grant.lifetime.as_secs(),
                    "oauth2 access token refreshed"
                );
                Ok(grant.access_token)
            }
            Err(error) => {
                tracing::warn!(relay = %self.relay, error = %error, "oauth2 token refresh failed");
                state.failed = Some(error.clone());
                self.fallback(&state, error)
            }
        }
    }

    /// After a failed refresh: a token that has not expired yet still
    /// serves while the endpoint is in passing trouble; otherwise the
    /// error.
    fn fallback(&self, state: &State, error: TokenError) -> Result<String, TokenError> {
        let now = self.clock.instant();
        match state.current.as_ref() {
            Some(cached) if error.is_transient() && now < cached.expires_at => {
                Ok(cached.token.clone())
            }
            _ => Err(error),
        }
    }
}

impl TokenSource for RefreshingToken {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(self.current())
    }

    fn invalidate(&self, token: &str) {
        let mut state = crate::lock(&self.inner.state);
        if state.current.as_ref().is_some_and(|c| c.token == token) {
            tracing::info!(relay = %self.inner.relay, "oauth2 access token refused by the relay; it will be refreshed");
            state.current = None;
        }
    }
}

impl fmt::Debug for RefreshingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshingToken")
            .field("relay", &self.inner.relay)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A token source for `config` as a shared [`TokenSource`].
pub(crate) fn source(
    relay: &str,
    config: &OAuth2Config,
    clock: SharedClock,
) -> Arc<dyn TokenSource> {
    Arc::new(RefreshingToken::new(relay, config.clone(), clock))
}
