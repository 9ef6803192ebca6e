//! The suppression list and the webhook delivery log through the client,
//! and the client over HTTPS (herald behind a TLS-terminating proxy),
//! against a real `herald serve`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Herald, KEY};
use futures_util::TryStreamExt as _;
use herald_api::{
    AddStatus, AddSuppressions, DeliveryOutcome, DeliveryQuery, SuppressionQuery,
    SuppressionReason, WebhookEventType,
};
use herald_client::{Client, Error, RetryConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

fn add(addresses: &[&str], reason: SuppressionReason) -> AddSuppressions {
    AddSuppressions {
        addresses: addresses.iter().map(|a| a.to_string()).collect(),
        reason,
        expires_at: None,
    }
}

#[tokio::test]
async fn suppressions_are_added_read_streamed_across_pages_and_removed() {
    let herald = Herald::start(None, "").await;
    let client = Client::new(&herald.base, KEY).unwrap();

    let answer = client
        .add_suppressions(&add(
            &[
                "a@example.org",
                "b@example.org",
                "c@example.org",
                "not an address",
            ],
            SuppressionReason::Manual,
        ))
        .await
        .unwrap();
    let statuses: Vec<_> = answer.results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            AddStatus::Added,
            AddStatus::Added,
            AddStatus::Added,
            AddStatus::Invalid
        ]
    );
    let again = client
        .add_suppressions(&add(&["b@example.org"], SuppressionReason::Manual))
        .await
        .unwrap();
    assert_eq!(again.results[0].status, AddStatus::Exists);
    client
        .add_suppressions(&add(&["d@example.org"], SuppressionReason::Complaint))
        .await
        .unwrap();

    let one = client.suppression("c@example.org").await.unwrap();
    assert_eq!(one.address, "c@example.org");
    assert_eq!(one.reason, SuppressionReason::Manual);

    // Pages of one, followed to the end: every entry once.
    let page = client
        .suppression_page(&SuppressionQuery {
            limit: Some(1),
            ..SuppressionQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.suppressions.len(), 1);
    assert!(page.next_cursor.is_some());
    let all: Vec<_> = client
        .suppressions(SuppressionQuery {
            limit: Some(1),
            ..SuppressionQuery::default()
        })
        .try_collect()
        .await
        .unwrap();
    let mut addresses: Vec<_> = all.iter().map(|s| s.address.as_str()).collect();
    addresses.sort_unstable();
    assert_eq!(
        addresses,
        [
            "a@example.org",
            "b@example.org",
            "c@example.org",
            "d@example.org"
        ]
    );
    let manual: Vec<_> = client
        .suppressions(SuppressionQuery {
            reason: Some(SuppressionReason::Manual),
            limit: Some(2),
            ..SuppressionQuery::default()
        })
        .try_collect()
        .await
        .unwrap();
    assert_eq!(manual.len(), 3, "{manual:?}");

    let removed = client.remove_suppression("c@example.org").await.unwrap();
    assert_eq!(removed.address, "c@example.org");
    let gone = client.suppression("c@example.org").await.unwrap_err();
    assert_eq!(gone.status(), Some(404), "{gone}");
    let twice = client
        .remove_suppression("c@example.org")
        .await
        .unwrap_err();
    assert_eq!(twice.status(), Some(404), "{twice}");
    herald.stop().await;
}

/// An HTTP receiver that answers every request 204.
async fn receiver() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then as many body bytes as Content-Length says.
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    url
}

#[tokio::test]
async fn webhook_deliveries_are_listed_and_streamed_across_pages() {
    let url = receiver().await;
    let herald = Herald::start(
        None,
        &format!(
            "[[webhooks]]\nname = \"app\"\nurl = \"{url}\"\nsecret_env = \"WEBHOOK_SECRET\"\n\
             retry_initial_delay = \"50ms\"\n"
        ),
    )
    .await;
    let client = Client::new(&herald.base, KEY).unwrap();
    // Three events: suppression.added, each.
    client
        .add_suppressions(&add(
            &["a@example.org", "b@example.org", "c@example.org"],
            SuppressionReason::Manual,
        ))
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let all = loop {
        let all: Vec<_> = client
            .webhook_deliveries(DeliveryQuery {
                limit: Some(1),
                ..DeliveryQuery::default()
            })
            .try_collect()
            .await
            .unwrap();
        if all.len() >= 3 {
            break all;
        }
        assert!(tokio::time::Instant::now() < deadline, "{all:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(all.len(), 3, "{all:?}");
    for delivery in &all {
        assert_eq!(delivery.webhook, "app");
        assert_eq!(delivery.event_type, WebhookEventType::SuppressionAdded);
        assert_eq!(delivery.http_status, Some(204));
        assert_eq!(delivery.outcome, DeliveryOutcome::Delivered);
    }
    let ids: Vec<_> = all.iter().map(|d| d.id).collect();
    let mut newest_first = ids.clone();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, newest_first, "newest first, each once");

    let page = client
        .webhook_delivery_page(&DeliveryQuery {
            limit: Some(2),
            cursor: None,
        })
        .await
        .unwrap();
    assert_eq!(page.deliveries.len(), 2);
    let rest = client
        .webhook_delivery_page(&DeliveryQuery {
            limit: Some(2),
            cursor: page.next_cursor.clone(),
        })
        .await
        .unwrap();
    assert_eq!(rest.deliveries.len(), 1);
    assert_eq!(rest.next_cursor, None);
    herald.stop().await;
}

/// A TLS-terminating proxy for `upstream` (a `host:port`), with a fresh
/// certificate for `localhost`; its address and the certificate (PEM).
async fn tls_proxy(upstream: String) -> (u16, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, cert.pem())
}

#[tokio::test]
async fn the_client_speaks_https_and_checks_the_certificate() {
    let herald = Herald::start(None, "").await;
    let upstream = herald.base.trim_start_matches("http://").to_owned();
    let (port, ca_pem) = tls_proxy(upstream).await;
    let base = format!("https://localhost:{port}");

    let trusting = Client::builder(&base, KEY)
        .tls_config(herald_tls::tls_config_from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    trusting
        .add_suppressions(&add(&["tls@example.org"], SuppressionReason::Manual))
        .await
        .unwrap();
    let shown = trusting.suppression("tls@example.org").await.unwrap();
    assert_eq!(shown.address, "tls@example.org");

    // The same certificate as an extra CA file, besides the system's roots.
    let dir = std::env::temp_dir().join(format!("herald-client-ca-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let with_file = Client::builder(&base, KEY)
        .extra_ca(&ca_file)
        .build()
        .unwrap();
    assert_eq!(
        with_file
            .suppression("tls@example.org")
            .await
            .unwrap()
            .address,
        "tls@example.org"
    );

    // Not trusted: refused in the handshake, nothing sent.
    let doubting = Client::builder(&base, KEY)
        .retry(RetryConfig::never())
        .build()
        .unwrap();
    let error = doubting.suppression("tls@example.org").await.unwrap_err();
    assert!(matches!(error, Error::Connect(_)), "{error:?}");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );

    // A CA file that does not exist is a clear error at build time.
    let missing = Client::builder(&base, KEY)
        .extra_ca(dir.join("missing.pem"))
        .build()
        .unwrap_err();
    assert!(matches!(missing, Error::Invalid(_)), "{missing:?}");
    assert!(missing.to_string().contains("missing.pem"), "{missing}");
    std::fs::remove_dir_all(&dir).ok();
    herald.stop().await;
}
