//! A tiny OAuth 2.0 token endpoint on 127.0.0.1, as Google's or
//! Microsoft's answers a refresh_token grant: it checks the form, issues
//! a new access token of a set lifetime (granted in a testkit
//! [`TokenBook`], so the SMTP side accepts exactly the tokens issued and
//! only while they live), or refuses with `invalid_grant`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use herald_testkit::TokenBook;
use serde_json::json;

pub(crate) const CLIENT_ID: &str = "herald-test-client";
pub(crate) const CLIENT_SECRET: &str = "client-secret-4711";
pub(crate) const REFRESH_TOKEN: &str = "1//refresh-token-0815";
pub(crate) const SCOPE: &str = "https://mail.google.com/";

/// The environment a herald using this endpoint needs.
pub(crate) const VARS: [(&str, &str); 2] = [
    ("TEST_CLIENT_SECRET", CLIENT_SECRET),
    ("TEST_REFRESH_TOKEN", REFRESH_TOKEN),
];

pub(crate) struct TokenEndpoint {
    pub(crate) url: String,
    pub(crate) book: TokenBook,
    state: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    book: TokenBook,
    lifetime: Duration,
    /// How long each answer takes.
    delay: Duration,
    refuse: AtomicBool,
    requests: AtomicUsize,
    issued: AtomicUsize,
    bad_forms: AtomicUsize,
}

impl TokenEndpoint {
    /// Issues tokens living `lifetime`, answering after `delay`.
    pub(crate) async fn start(lifetime: Duration, delay: Duration) -> Self {
        let book = TokenBook::new();
        let state = Arc::new(Shared {
            book: book.clone(),
            lifetime,
            delay,
            refuse: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
            issued: AtomicUsize::new(0),
            bad_forms: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/token", post(token))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url,
            book,
            state,
            task,
        }
    }

    /// From now on, answer `400 invalid_grant` (a revoked refresh token).
    pub(crate) fn refuse(&self) {
        self.state.refuse.store(true, Ordering::SeqCst);
    }

    /// Token requests received.
    pub(crate) fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests whose form was not a proper refresh_token grant.
    pub(crate) fn bad_forms(&self) -> usize {
        self.state.bad_forms.load(Ordering::SeqCst)
    }

    /// The OAuth2 settings pointing here.
    pub(crate) fn config(&self) -> herald_server::oauth2::OAuth2Config {
        herald_server::oauth2::OAuth2Config {
            token_url: self.url.clone(),
            client_id: CLIENT_ID.to_owned(),
            client_secret: Some(CLIENT_SECRET.to_owned()),
            refresh_token: REFRESH_TOKEN.to_owned(),
            scope: Some(SCOPE.to_owned()),
            timeout: herald_server::oauth2::DEFAULT_REQUEST_TIMEOUT,
            refresh_margin: herald_server::oauth2::DEFAULT_REFRESH_MARGIN,
        }
    }

    /// The `[relays.oauth2]` section pointing here.
    pub(crate) fn section(&self) -> String {
        format!(
            "[relays.oauth2]\ntoken_url = \"{}\"\nclient_id = \"{CLIENT_ID}\"\n\
             client_secret_env = \"TEST_CLIENT_SECRET\"\nrefresh_token_env = \"TEST_REFRESH_TOKEN\"\n\
             scope = \"{SCOPE}\"\n",
            self.url
        )
    }
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn token(State(state): State<Arc<Shared>>, body: String) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    let form = parse_form(&body);
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let proper = field("grant_type") == Some("refresh_token")
        && field("client_id") == Some(CLIENT_ID)
        && field("client_secret") == Some(CLIENT_SECRET)
        && field("refresh_token") == Some(REFRESH_TOKEN)
        && field("scope") == Some(SCOPE);
    if !proper {
        state.bad_forms.fetch_add(1, Ordering::SeqCst);
    }
    if !proper || state.refuse.load(Ordering::SeqCst) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({
                "error": "invalid_grant",
                "error_description": "Token has been expired or revoked.",
            })),
        )
            .into_response();
    }
    let n = state.issued.fetch_add(1, Ordering::SeqCst);
    let access_token = format!("ya29.test-{n}-{}", herald_message::new_id());
    state.book.grant(access_token.clone(), state.lifetime);
    axum::Json(json!({
        "access_token": access_token,
        "expires_in": state.lifetime.as_secs(),
        "scope": SCOPE,
        "token_type": "Bearer",
    }))
    .into_response()
}

/// `application/x-www-form-urlencoded` pairs, decoded.
fn parse_form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 3 <= bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}
