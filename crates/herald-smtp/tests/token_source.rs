//! XOAUTH2 with a token source against the testkit, which accepts only
//! the tokens it is told are valid: the token is asked for at each AUTH,
//! a refused one is handed back and replaced once (never in a loop), and
//! a source that has no token fails AUTH clearly, without sending it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use common::{MESSAGE, client, envelope};
use herald_smtp::{
    Connection, Credentials, Ctx, ErrorKind, Mechanism, Phase, Pool, PoolConfig, SendOptions,
    TlsMode, TokenError, TokenFuture, TokenSource,
};
use herald_testkit::{Credentials as ServerCredentials, ServerConfig, TestServer, TokenBook};

/// Hands out scripted answers in order (the last one again once the
/// script runs out) and remembers what it was told.
#[derive(Debug, Default)]
struct Scripted {
    answers: Mutex<VecDeque<Result<String, TokenError>>>,
    last: Mutex<Option<Result<String, TokenError>>>,
    asked: Mutex<usize>,
    invalidated: Mutex<Vec<String>>,
}

impl Scripted {
    fn new(answers: Vec<Result<String, TokenError>>) -> Arc<Self> {
        Arc::new(Self {
            answers: Mutex::new(answers.into()),
            ..Self::default()
        })
    }

    fn asked(&self) -> usize {
        *self.asked.lock().unwrap()
    }

    fn invalidated(&self) -> Vec<String> {
        self.invalidated.lock().unwrap().clone()
    }
}

impl TokenSource for Scripted {
    fn token(&self) -> TokenFuture<'_> {
        *self.asked.lock().unwrap() += 1;
        let next = self.answers.lock().unwrap().pop_front();
        let answer = match next {
            Some(answer) => {
                *self.last.lock().unwrap() = Some(answer.clone());
                answer
            }
            None => self.last.lock().unwrap().clone().unwrap(),
        };
        Box::pin(async move { answer })
    }

    fn invalidate(&self, token: &str) {
        self.invalidated.lock().unwrap().push(token.to_owned());
    }
}

async fn server(book: &TokenBook) -> TestServer {
    TestServer::start(ServerConfig {
        tls: herald_testkit::TlsMode::StartTls,
        auth: Some(ServerCredentials::new("alice", "unused").with_xoauth2_tokens(book.clone())),
        ..ServerConfig::default()
    })
    .await
    .unwrap()
}

fn config(server: &TestServer, source: Arc<Scripted>) -> herald_smtp::ClientConfig {
    let mut config = client(server, TlsMode::StartTls);
    config.credentials = Some(Credentials::oauth2_source("alice", source));
    config
}

fn auth_commands(server: &TestServer) -> usize {
    server
        .sessions()
        .iter()
        .flat_map(|s| s.verbs())
        .filter(|v| *v == "AUTH")
        .count()
}

#[tokio::test]
async fn a_refused_token_is_replaced_and_auth_tried_once_more() {
    let book = TokenBook::new();
    book.grant_forever("ya29.new");
    let server = server(&book).await;
    let source = Scripted::new(vec![Ok("ya29.expired".into()), Ok("ya29.new".into())]);
    let mut conn = Connection::open(Arc::new(config(&server, source.clone())), &Ctx::default())
        .await
        .unwrap();
    assert_eq!(conn.authenticated(), Some(Mechanism::Xoauth2));
    assert_eq!(source.asked(), 2);
    assert_eq!(source.invalidated(), ["ya29.expired"]);
    // Gmail's refusal dance, then the second AUTH, on the same session.
    assert_eq!((book.refused(), book.accepted()), (1, 1));
    assert_eq!(server.connections(), 1);
    assert_eq!(auth_commands(&server), 2);
    let out = conn
        .send(
            &envelope(&["bob@example.com"]),
            MESSAGE,
            SendOptions::default(),
            &Ctx::default(),
        )
        .await
        .unwrap();
    assert!(out[0].is_delivered());
    // The tokens never reach the server's command log.
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD
        .encode("user=alice\x01auth=Bearer ya29.new\x01\x01");
    for session in server.sessions() {
        for command in &session.commands {
            assert!(!command.line.contains(&payload), "{}", command.line);
        }
    }
}

#[tokio::test]
async fn a_fresh_token_refused_too_fails_without_a_loop() {
    let book = TokenBook::new();
    let server = server(&book).await;
    let source = Scripted::new(vec![
        Ok("ya29.one".into()),
        Ok("ya29.two".into()),
        Ok("ya29.three".into()),
    ]);
    let err = Connection::open(Arc::new(config(&server, source.clone())), &Ctx::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthFailed, "{err}");
    assert_eq!(err.phase(), Phase::Auth);
    assert_eq!(err.smtp_code(), Some(535));
    // One refresh, not more: the second token was fresh.
    assert_eq!(source.asked(), 2);
    assert_eq!(source.invalidated(), ["ya29.one"]);
    assert_eq!(auth_commands(&server), 2);
    assert_eq!(book.refused(), 2);
}

#[tokio::test]
async fn no_token_fails_auth_clearly_and_sends_nothing() {
    let book = TokenBook::new();
    let server = server(&book).await;
    for (answer, transient) in [
        (
            TokenError::permanent("the token endpoint refused the refresh: invalid_grant"),
            false,
        ),
        (
            TokenError::transient("the token endpoint did not answer"),
            true,
        ),
    ] {
        let source = Scripted::new(vec![Err(answer)]);
        let err = Connection::open(Arc::new(config(&server, source)), &Ctx::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AuthFailed, "{err}");
        assert_eq!(err.phase(), Phase::Auth);
        assert_eq!(err.smtp_code(), None);
        assert_eq!(err.is_transient(), transient, "{err}");
        assert!(
            err.to_string().contains("no OAuth 2.0 access token"),
            "{err}"
        );
    }
    assert_eq!(auth_commands(&server), 0, "no AUTH without a token");
}

#[tokio::test]
async fn the_pool_asks_for_the_current_token_at_each_new_session() {
    let book = TokenBook::new();
    for token in ["t1", "t2", "t3"] {
        book.grant_forever(token);
    }
    let server = server(&book).await;
    let source = Scripted::new(vec![Ok("t1".into()), Ok("t2".into()), Ok("t3".into())]);
    let pool = Pool::new(
        config(&server, source.clone()),
        PoolConfig {
            max_connections: 1,
            max_messages_per_connection: 1,
            ..PoolConfig::default()
        },
    );
    for _ in 0..3 {
        let out = pool
            .send(
                &envelope(&["bob@example.com"]),
                MESSAGE,
                SendOptions::default(),
                &Ctx::default(),
            )
            .await
            .unwrap();
        assert!(out[0].is_delivered());
    }
    assert_eq!(source.asked(), 3);
    assert_eq!(book.distinct_accepted(), 3);
    assert_eq!(book.refused(), 0);
}

#[test]
fn a_token_source_is_never_shown() {
    let source = Scripted::new(vec![Ok("ya29.secret-token".into())]);
    let creds = Credentials::oauth2_source("alice", source);
    let shown = format!("{creds:?} {:?}", creds.secret);
    assert!(!shown.contains("ya29"), "{shown}");
    assert!(shown.contains("alice"));
}
