//! STARTTLS, implicit TLS and AUTH (PLAIN, LOGIN, XOAUTH2), including the
//! failures a client must handle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Client, connect, connect_greeted, tls_handshake};
use herald_testkit::{Credentials, ServerConfig, TestServer, TlsMode};

fn creds() -> Credentials {
    Credentials::new("bob", "s3cret")
}

fn b64(s: &str) -> String {
    B64.encode(s)
}

#[tokio::test]
async fn starttls_then_ehlo_then_auth_plain() {
    let server = TestServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        require_tls: true,
        auth: Some(creds()),
        require_auth: true,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut c = connect_greeted(&server).await;
    let ehlo = c.ehlo().await;
    assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"));
    assert!(
        !ehlo.lines.iter().any(|l| l.starts_with("AUTH")),
        "{ehlo:?}"
    );
    let refused = c.cmd("MAIL FROM:<a@x.test>").await;
    assert_eq!(refused.code, 530);
    assert!(refused.text().starts_with("5.7.0"));
    assert_eq!(c.cmd("AUTH PLAIN AGJvYgBzM2NyZXQ=").await.code, 530);

    // Plain-text bytes pipelined behind STARTTLS must be thrown away.
    c.send("STARTTLS\r\nNOOP\r\n").await;
    assert_eq!(c.reply().await.code, 220);
    let tls = tls_handshake(&server, c.into_inner(), "localhost").await;
    let mut c = Client::new(tls);

    // State was reset: EHLO again first.
    assert_eq!(c.cmd("MAIL FROM:<a@x.test>").await.code, 503);
    let ehlo = c.ehlo().await;
    assert!(!ehlo.lines.iter().any(|l| l == "STARTTLS"));
    assert!(
        ehlo.lines.iter().any(|l| l == "AUTH PLAIN LOGIN"),
        "{ehlo:?}"
    );
    assert_eq!(c.cmd("MAIL FROM:<a@x.test>").await.code, 530);
    let auth = c.cmd(&format!("AUTH PLAIN {}", b64("\0bob\0s3cret"))).await;
    assert_eq!(auth.code, 235);
    assert!(auth.text().starts_with("2.7.0"));
    assert_eq!(c.cmd("AUTH PLAIN AGJvYgBzM2NyZXQ=").await.code, 503);
    assert_eq!(
        c.send_message("a@x.test", &["b@y.test"], "secret\r\n")
            .await
            .code,
        250
    );
    assert_eq!(c.cmd("QUIT").await.code, 221);

    let log = &server.sessions()[0];
    assert!(log.tls);
    assert_eq!(log.tls_version.as_deref(), Some("TLSv1.3"));
    assert_eq!(log.authenticated.as_deref(), Some("bob"));
    assert_eq!(log.auth_mechanism.as_deref(), Some("PLAIN"));
    assert!(!log.verbs().contains(&"NOOP"), "{:?}", log.verbs());
    assert!(
        log.commands
            .iter()
            .filter(|c| c.verb == "AUTH")
            .all(|c| c.line == "AUTH PLAIN ***")
    );
    assert_eq!(server.messages()[0].data, b"secret\r\n");
}

#[tokio::test]
async fn implicit_tls_from_the_first_byte() {
    let server = TestServer::start(ServerConfig {
        tls: TlsMode::Implicit,
        auth: Some(creds()),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let tcp = connect(&server).await.into_inner();
    // The certificate also names the IP address.
    let tls = tls_handshake(&server, tcp, "127.0.0.1").await;
    let mut c = Client::new(tls);
    assert_eq!(c.reply().await.code, 220);
    let ehlo = c.ehlo().await;
    assert!(!ehlo.lines.iter().any(|l| l == "STARTTLS"));
    assert!(ehlo.lines.iter().any(|l| l.starts_with("AUTH ")));
    assert_eq!(c.cmd("STARTTLS").await.code, 503);
    assert_eq!(
        c.send_message("a@x.test", &["b@y.test"], "hi\r\n")
            .await
            .code,
        250
    );
    assert!(server.sessions()[0].tls);
    assert!(server.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
}

#[tokio::test]
async fn auth_login_wrong_password_then_right() {
    let server = TestServer::start(ServerConfig {
        auth: Some(creds()),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut c = connect_greeted(&server).await;
    c.ehlo().await;
    let user = c.cmd("AUTH LOGIN").await;
    assert_eq!((user.code, user.text()), (334, "VXNlcm5hbWU6"));
    let pass = c.cmd(&b64("bob")).await;
    assert_eq!((pass.code, pass.text()), (334, "UGFzc3dvcmQ6"));
    let denied = c.cmd(&b64("wrong")).await;
    assert_eq!(denied.code, 535);
    assert!(denied.text().starts_with("5.7.8"));
    assert_eq!(server.sessions()[0].authenticated, None);

    // The initial-response form of LOGIN carries the user name.
    assert_eq!(c.cmd(&format!("AUTH LOGIN {}", b64("bob"))).await.code, 334);
    assert_eq!(c.cmd(&b64("s3cret")).await.code, 235);
    let log = &server.sessions()[0];
    assert_eq!(log.authenticated.as_deref(), Some("bob"));
    assert_eq!(log.auth_mechanism.as_deref(), Some("LOGIN"));
    // Continuation lines are not commands.
    assert_eq!(log.verbs(), ["EHLO", "AUTH", "AUTH"]);
}

#[tokio::test]
async fn auth_plain_continuation_and_cancel() {
    let server = TestServer::start(ServerConfig {
        auth: Some(creds()),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut c = connect_greeted(&server).await;
    c.ehlo().await;
    assert_eq!(c.cmd("AUTH PLAIN").await.code, 334);
    assert_eq!(c.cmd("*").await.code, 501);
    assert_eq!(c.cmd("AUTH PLAIN").await.code, 334);
    assert_eq!(c.cmd("not base64!").await.code, 501);
    assert_eq!(c.cmd("AUTH CRAM-MD5").await.code, 504);
    assert_eq!(c.cmd("AUTH PLAIN").await.code, 334);
    assert_eq!(c.cmd(&b64("\0bob\0s3cret")).await.code, 235);
}

#[tokio::test]
async fn xoauth2_success_and_failure_dance() {
    let server = TestServer::start(ServerConfig {
        auth: Some(creds().with_xoauth2_token("ya29.token")),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut c = connect_greeted(&server).await;
    let ehlo = c.ehlo().await;
    assert!(
        ehlo.lines.iter().any(|l| l == "AUTH PLAIN LOGIN XOAUTH2"),
        "{ehlo:?}"
    );

    let bad = b64("user=bob\x01auth=Bearer expired\x01\x01");
    let challenge = c.cmd(&format!("AUTH XOAUTH2 {bad}")).await;
    assert_eq!(challenge.code, 334);
    let json = String::from_utf8(B64.decode(challenge.text()).unwrap()).unwrap();
    assert!(json.contains("\"status\":\"401\""), "{json}");
    assert_eq!(c.cmd("").await.code, 535);

    let good = b64("user=bob\x01auth=Bearer ya29.token\x01\x01");
    assert_eq!(c.cmd(&format!("AUTH XOAUTH2 {good}")).await.code, 235);
    assert_eq!(
        server.sessions()[0].auth_mechanism.as_deref(),
        Some("XOAUTH2")
    );
}

#[tokio::test]
async fn auth_policy_before_tls_and_mechanism_override() {
    let server = TestServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        auth: Some(creds()),
        auth_mechanisms: vec!["login".into()],
        require_auth: true,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut c = connect_greeted(&server).await;
    c.ehlo().await;
    // Not advertised before TLS, so not accepted either.
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", b64("\0bob\0s3cret")))
            .await
            .code,
        538
    );
    assert_eq!(c.cmd("MAIL FROM:<a@x.test>").await.code, 530);
    assert_eq!(c.cmd("STARTTLS").await.code, 220);
    let tls = tls_handshake(&server, c.into_inner(), "localhost").await;
    let mut c = Client::new(tls);
    let ehlo = c.ehlo().await;
    assert!(ehlo.lines.iter().any(|l| l == "AUTH LOGIN"), "{ehlo:?}");
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", b64("\0bob\0s3cret")))
            .await
            .code,
        504
    );

    // With advertise_auth_without_tls the same server offers AUTH in clear.
    let open = TestServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        auth: Some(creds()),
        advertise_auth_without_tls: true,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut c = connect_greeted(&open).await;
    let ehlo = c.ehlo().await;
    assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"));
    assert!(ehlo.lines.iter().any(|l| l == "AUTH PLAIN LOGIN"));
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", b64("\0bob\0s3cret")))
            .await
            .code,
        235
    );
}
