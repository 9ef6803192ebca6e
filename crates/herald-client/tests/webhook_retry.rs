//! `Client::retry_webhook_delivery` against a real `herald serve`: the
//! route's problems come back as problems, never retried by the client
//! (each call would send an event again). The retry itself, to a real
//! receiver, is tested in herald-server's `tests/webhook_retry.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Herald, KEY};
use herald_client::Client;

#[tokio::test]
async fn an_unknown_delivery_is_a_404_problem() {
    let herald = Herald::start(None, "").await;
    let client = Client::new(&herald.base, KEY).unwrap();
    let error = client.retry_webhook_delivery(4242).await.unwrap_err();
    assert_eq!(error.status(), Some(404));
    let problem = error.problem().unwrap();
    assert_eq!(problem.kind, "/problems/not-found");
    assert!(problem.detail.contains("webhook delivery"), "{problem:?}");
    herald.stop().await;
}
