//! XOAUTH2 tokens that refresh, against a local OAuth 2.0 token endpoint
//! and a testkit relay that accepts only the tokens the endpoint issued,
//! each only while it lives: caching by the injected clock, one refresh
//! for many callers, a refused token replaced, endpoint errors that are
//! clear and secret-free, and a 10-second stream of mail kept flowing by
//! 2-second tokens.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::token_endpoint::{CLIENT_SECRET, REFRESH_TOKEN, TokenEndpoint, VARS};
use common::{Herald, config_text, manual_clock, message, temp_dir};
use herald_api::MessageStatus;
use herald_policy::SystemClock;
use herald_server::oauth2::RefreshingToken;
use herald_smtp::TokenSource as _;
use herald_testkit::{Credentials, ServerConfig, TestServer};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn a_token_is_cached_until_a_minute_before_it_expires() {
    let endpoint = TokenEndpoint::start(HOUR, Duration::ZERO).await;
    let (clock, shared) = manual_clock();
    let source = RefreshingToken::new("gmail", endpoint.config(), shared);
    let first = source.token().await.unwrap();
    assert_eq!(source.token().await.unwrap(), first);
    clock.advance(HOUR - Duration::from_secs(61));
    assert_eq!(source.token().await.unwrap(), first, "still fresh");
    assert_eq!(endpoint.requests(), 1);
    clock.advance(Duration::from_secs(2));
    let second = source.token().await.unwrap();
    assert_ne!(second, first, "refreshed within the last minute");
    assert_eq!(endpoint.requests(), 2);
    assert_eq!(source.refreshes(), 2);
    assert_eq!(endpoint.bad_forms(), 0, "a proper refresh_token grant");
}

#[tokio::test]
async fn a_refresh_margin_set_in_the_config_is_kept() {
    let endpoint = TokenEndpoint::start(HOUR, Duration::ZERO).await;
    let (clock, shared) = manual_clock();
    let mut config = endpoint.config();
    config.refresh_margin = Duration::from_secs(600);
    let source = RefreshingToken::new("gmail", config, shared);
    let first = source.token().await.unwrap();
    clock.advance(HOUR - Duration::from_secs(601));
    assert_eq!(source.token().await.unwrap(), first, "still fresh");
    clock.advance(Duration::from_secs(2));
    assert_ne!(source.token().await.unwrap(), first, "ten minutes before");
    assert_eq!(endpoint.requests(), 2);
}

/// The AUTH command's timeout may be shorter than the token request: a
/// caller that stops waiting does not cancel the refresh, whose token is
/// then there for the next caller, with no second request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_outlives_a_caller_that_stopped_waiting() {
    let endpoint = TokenEndpoint::start(HOUR, Duration::from_millis(300)).await;
    let source = RefreshingToken::new("gmail", endpoint.config(), SystemClock::shared());
    let gave_up = tokio::time::timeout(Duration::from_millis(20), source.token()).await;
    assert!(gave_up.is_err(), "the endpoint answers after 300 ms");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while source.refreshes() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refresh never finished"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let token = tokio::time::timeout(Duration::from_millis(20), source.token())
        .await
        .expect("from the cache, at once")
        .unwrap();
    assert!(!token.is_empty());
    assert_eq!(endpoint.requests(), 1);
}

#[tokio::test]
async fn a_short_token_is_refreshed_at_half_its_lifetime() {
    let endpoint = TokenEndpoint::start(Duration::from_secs(2), Duration::ZERO).await;
    let (clock, shared) = manual_clock();
    let source = RefreshingToken::new("gmail", endpoint.config(), shared);
    let first = source.token().await.unwrap();
    clock.advance(Duration::from_millis(900));
    assert_eq!(source.token().await.unwrap(), first);
    clock.advance(Duration::from_millis(100));
    assert_ne!(source.token().await.unwrap(), first);
    assert_eq!(endpoint.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_refresh() {
    // A slow endpoint: every caller arrives while the first request runs.
    let endpoint = TokenEndpoint::start(HOUR, Duration::from_millis(300)).await;
    let source = Arc::new(RefreshingToken::new(
        "gmail",
        endpoint.config(),
        SystemClock::shared(),
    ));
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let source = source.clone();
        callers.spawn(async move { source.token().await });
    }
    let tokens: Vec<String> = callers
        .join_all()
        .await
        .into_iter()
        .map(|t| t.unwrap())
        .collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    assert_eq!(endpoint.requests(), 1);
}

#[tokio::test]
async fn invalidating_the_current_token_refreshes_it_and_no_other() {
    let endpoint = TokenEndpoint::start(HOUR, Duration::ZERO).await;
    let (_clock, shared) = manual_clock();
    let source = RefreshingToken::new("gmail", endpoint.config(), shared);
    let first = source.token().await.unwrap();
    source.invalidate("ya29.some-older-token");
    assert_eq!(source.token().await.unwrap(), first);
    assert_eq!(endpoint.requests(), 1);
    source.invalidate(&first);
    let second = source.token().await.unwrap();
    assert_ne!(second, first);
    // A late refusal of the old token does not throw away the new one.
    source.invalidate(&first);
    assert_eq!(source.token().await.unwrap(), second);
    assert_eq!(endpoint.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_refusal_is_one_clear_error_without_secrets() {
    let endpoint = TokenEndpoint::start(HOUR, Duration::from_millis(200)).await;
    endpoint.refuse();
    let source = Arc::new(RefreshingToken::new(
        "gmail",
        endpoint.config(),
        SystemClock::shared(),
    ));
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let source = source.clone();
        callers.spawn(async move { source.token().await });
    }
    for answer in callers.join_all().await {
        let error = answer.unwrap_err();
        assert!(!error.is_transient(), "{error}");
        let shown = format!("{error} {error:?}");
        assert!(shown.contains("invalid_grant"), "{shown}");
        assert!(shown.contains("HTTP 400"), "{shown}");
        for secret in [CLIENT_SECRET, REFRESH_TOKEN] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
    assert_eq!(endpoint.requests(), 1, "waiting callers share the failure");

    // An unreachable endpoint is a passing fault.
    let mut config = endpoint.config();
    config.token_url = "http://127.0.0.1:1/token".into();
    let gone = RefreshingToken::new("gmail", config, SystemClock::shared());
    let error = gone.token().await.unwrap_err();
    assert!(error.is_transient(), "{error}");

    let shown = format!("{source:?} {:?}", endpoint.config());
    for secret in [CLIENT_SECRET, REFRESH_TOKEN] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("herald-test-client"), "{shown}");
}

/// The relay for `server`, authenticating with tokens from `endpoint`; a
/// new session (so a new AUTH) for every message.
fn relay(server: &TestServer, endpoint: &TokenEndpoint) -> String {
    format!(
        "[[relays]]\nname = \"gmail\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         allow_insecure_auth = true\nmax_connections = 2\nmax_messages_per_connection = 1\n\
         username = \"alice@example.com\"\n{}",
        server.port(),
        endpoint.section()
    )
}

async fn relay_server(endpoint: &TokenEndpoint) -> TestServer {
    TestServer::start(ServerConfig {
        auth: Some(
            Credentials::new("alice@example.com", "unused")
                .with_xoauth2_tokens(endpoint.book.clone()),
        ),
        require_auth: true,
        ..ServerConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_second_tokens_keep_a_ten_second_stream_flowing() {
    let endpoint = TokenEndpoint::start(Duration::from_secs(2), Duration::ZERO).await;
    let server = relay_server(&endpoint).await;
    let dir = temp_dir();
    let text = config_text(&dir, None, &relay(&server, &endpoint));
    let herald = Herald::start_in_with_env(dir, &text, SystemClock::shared(), &VARS).await;

    // A message every 200 ms for 10 seconds: five token lifetimes.
    let mut ids = Vec::new();
    let mut every = tokio::time::interval(Duration::from_millis(200));
    for n in 0..50 {
        every.tick().await;
        ids.push(
            herald
                .queue(message(&[&format!("s{n}@example.com")]))
                .await
                .id,
        );
    }
    for id in &ids {
        let done = herald.wait_status(id, MessageStatus::Delivered).await;
        assert_eq!(
            done.attempts, 1,
            "no delivery failed for its token: {done:#?}"
        );
    }
    assert_eq!(server.message_count(), 50);
    assert!(
        endpoint.requests() >= 4,
        "refreshed as tokens aged: {} requests",
        endpoint.requests()
    );
    assert!(
        endpoint.book.distinct_accepted() >= 4,
        "{:?}",
        endpoint.book
    );
    assert!(endpoint.book.accepted() >= 50, "{:?}", endpoint.book);
    assert_eq!(endpoint.bad_forms(), 0);
    herald.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_defers_mail_as_an_auth_failure() {
    let endpoint = TokenEndpoint::start(HOUR, Duration::ZERO).await;
    endpoint.refuse();
    let server = relay_server(&endpoint).await;
    let dir = temp_dir();
    let text = config_text(&dir, None, &relay(&server, &endpoint));
    let herald = Herald::start_in_with_env(dir, &text, SystemClock::shared(), &VARS).await;
    let id = herald.queue(message(&["r@example.com"])).await.id;
    let seen = herald
        .wait_for(&id, Duration::from_secs(15), |m| m.attempts >= 1)
        .await;
    assert_ne!(seen.status, MessageStatus::Failed, "{seen:#?}");
    let recipient = &seen.recipients[0];
    let response = recipient.response.as_deref().unwrap_or_default();
    assert!(response.contains("invalid_grant"), "{seen:#?}");
    assert_eq!(recipient.class, Some(herald_api::BounceClass::Auth));
    for secret in [CLIENT_SECRET, REFRESH_TOKEN] {
        assert!(!format!("{seen:?}").contains(secret), "{secret} leaked");
    }
    assert_eq!(server.message_count(), 0);
    herald.stop().await.unwrap();
}
