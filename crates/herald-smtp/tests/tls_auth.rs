//! TLS modes and AUTH mechanisms against the testkit server: every way a
//! session is secured, and every way securing it can fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{MESSAGE, client, envelope};
use herald_smtp::{
    Connection, Credentials, Ctx, ErrorKind, Mechanism, Phase, SendOptions, TlsMode,
};
use herald_testkit::{
    Credentials as ServerCredentials, ServerConfig, TestServer, TlsMode as ServerTls,
};

async fn server(tls: ServerTls, auth: bool) -> TestServer {
    TestServer::start(ServerConfig {
        tls,
        auth: auth.then(|| {
            ServerCredentials::new("alice", "correct horse").with_xoauth2_token("ya29.tok")
        }),
        ..ServerConfig::default()
    })
    .await
    .unwrap()
}

async fn send_one(conn: &mut Connection) {
    let out = conn
        .send(
            &envelope(&["bob@example.com"]),
            MESSAGE,
            SendOptions::default(),
            &Ctx::default(),
        )
        .await
        .unwrap();
    assert!(out[0].is_delivered(), "{out:?}");
}

#[tokio::test]
async fn plain_starttls_and_implicit_tls_all_deliver() {
    for (server_tls, client_tls, encrypted) in [
        (ServerTls::None, TlsMode::None, false),
        (ServerTls::StartTls, TlsMode::StartTls, true),
        (ServerTls::StartTls, TlsMode::Opportunistic, true),
        (ServerTls::None, TlsMode::Opportunistic, false),
        (ServerTls::Implicit, TlsMode::Implicit, true),
    ] {
        let server = server(server_tls, false).await;
        let mut conn = Connection::open(Arc::new(client(&server, client_tls)), &Ctx::default())
            .await
            .unwrap();
        assert_eq!(conn.tls_info().is_some(), encrypted, "{client_tls:?}");
        if let Some(tls) = conn.tls_info() {
            assert!(
                tls.version == "TLSv1.3" || tls.version == "TLSv1.2",
                "{tls:?}"
            );
            assert!(
                tls.subject
                    .as_deref()
                    .unwrap_or_default()
                    .contains("localhost"),
                "{tls:?}"
            );
            assert!(tls.not_after.is_some());
        }
        send_one(&mut conn).await;
        conn.quit().await;
        let sessions = server.sessions();
        assert_eq!(sessions[0].tls, encrypted);
        if client_tls == TlsMode::StartTls {
            // EHLO again after STARTTLS (RFC 3207).
            assert_eq!(&sessions[0].verbs()[..3], ["EHLO", "STARTTLS", "EHLO"]);
        }
        assert_eq!(server.messages()[0].data, MESSAGE);
    }
}

#[tokio::test]
async fn every_auth_mechanism_authenticates() {
    let server = server(ServerTls::StartTls, true).await;
    for (credentials, mechanism) in [
        (
            Credentials::password("alice", "correct horse"),
            Mechanism::Plain,
        ),
        (
            Credentials {
                mechanism: Some(Mechanism::Login),
                ..Credentials::password("alice", "correct horse")
            },
            Mechanism::Login,
        ),
        (Credentials::oauth2("alice", "ya29.tok"), Mechanism::Xoauth2),
    ] {
        let mut config = client(&server, TlsMode::StartTls);
        config.credentials = Some(credentials);
        let mut conn = Connection::open(Arc::new(config), &Ctx::default())
            .await
            .unwrap();
        assert_eq!(conn.authenticated(), Some(mechanism));
        send_one(&mut conn).await;
        conn.quit().await;
    }
    let mechanisms: Vec<_> = server
        .sessions()
        .iter()
        .map(|s| (s.authenticated.clone(), s.auth_mechanism.clone()))
        .collect();
    assert_eq!(
        mechanisms,
        [
            (Some("alice".into()), Some("PLAIN".into())),
            (Some("alice".into()), Some("LOGIN".into())),
            (Some("alice".into()), Some("XOAUTH2".into())),
        ]
    );
    // The secret never reaches the server's command log.
    for session in server.sessions() {
        for command in &session.commands {
            assert!(
                !command.line.contains("Y29ycmVjdCBob3JzZ"),
                "{}",
                command.line
            );
        }
    }
}

#[tokio::test]
async fn wrong_password_and_wrong_token_are_permanent_auth_failures() {
    let server = server(ServerTls::Implicit, true).await;
    for credentials in [
        Credentials::password("alice", "wrong"),
        Credentials {
            mechanism: Some(Mechanism::Login),
            ..Credentials::password("alice", "wrong")
        },
        Credentials::oauth2("alice", "expired"),
    ] {
        let mut config = client(&server, TlsMode::Implicit);
        config.credentials = Some(credentials);
        let err = Connection::open(Arc::new(config), &Ctx::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AuthFailed, "{err}");
        assert_eq!(err.smtp_code(), Some(535));
        assert!(err.is_permanent());
        assert_eq!(err.phase(), Phase::Auth);
    }
}

#[tokio::test]
async fn credentials_are_never_sent_in_plain_text_unless_allowed() {
    let server = TestServer::start(ServerConfig {
        auth: Some(ServerCredentials::new("alice", "pw")),
        advertise_auth_without_tls: true,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut config = client(&server, TlsMode::None);
    config.credentials = Some(Credentials::password("alice", "pw"));
    let err = Connection::open(Arc::new(config.clone()), &Ctx::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthUnavailable);
    assert!(err.is_permanent());
    assert!(
        !server.sessions()[0].verbs().contains(&"AUTH"),
        "AUTH sent in clear"
    );

    config.allow_insecure_auth = true;
    let conn = Connection::open(Arc::new(config), &Ctx::default())
        .await
        .unwrap();
    assert_eq!(conn.authenticated(), Some(Mechanism::Plain));
}

#[tokio::test]
async fn required_starttls_is_never_silently_skipped() {
    let server = server(ServerTls::None, false).await;
    let err = Connection::open(
        Arc::new(client(&server, TlsMode::StartTls)),
        &Ctx::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TlsUnavailable);
    assert!(
        err.is_transient(),
        "a stripped STARTTLS may be an attack; retry later"
    );
    assert!(!server.sessions()[0].verbs().contains(&"MAIL"));
}

#[tokio::test]
async fn an_untrusted_certificate_fails_the_handshake() {
    let server = server(ServerTls::Implicit, false).await;
    let other = server_with_other_cert().await;
    let mut config = client(&server, TlsMode::Implicit);
    config.tls_config = herald_smtp::tls_config_from_pem(other.ca_pem().as_bytes()).unwrap();
    let err = Connection::open(Arc::new(config), &Ctx::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert_eq!(err.phase(), Phase::TlsHandshake);
    assert!(err.to_string().contains("certificate"), "{err}");
}

async fn server_with_other_cert() -> TestServer {
    TestServer::start(ServerConfig::default()).await.unwrap()
}
