//! The client against a real `herald serve` on a port-0 socket: what a
//! program using it would check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Herald, KEY};
use futures_util::TryStreamExt as _;
use herald_api::{BatchRequest, BatchResult, ListQuery, MessageRequest, MessageStatus};
use herald_client::{Client, Error, RetryConfig, Sleeper};
use herald_testkit::{ServerConfig, TestServer};

fn message(to: &str, subject: &str) -> MessageRequest {
    MessageRequest {
        from: Some("Shop <shop@example.com>".into()),
        to: vec![to.into()],
        subject: Some(subject.into()),
        text: Some(format!("hello {to}")),
        ..MessageRequest::default()
    }
}

/// Polls until the message is final.
async fn final_state(client: &Client, id: &str) -> herald_api::Message {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let message = client.get(id).await.unwrap();
        if message.status.is_final() {
            return message;
        }
        assert!(tokio::time::Instant::now() < deadline, "{message:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn send_get_and_list_across_pages() {
    let relay = TestServer::start(ServerConfig::default()).await.unwrap();
    let herald = Herald::start(Some(&relay), "").await;
    let client = Client::new(&herald.base, KEY).unwrap();

    let mut ids = Vec::new();
    for n in 0..5 {
        let to = format!("user{n}@example.org");
        let accepted = client
            .send(&message(&to, &format!("order {n}")))
            .await
            .unwrap();
        assert_eq!(accepted.status, MessageStatus::Queued);
        ids.push(accepted.id);
    }
    let batch = BatchRequest {
        messages: vec![
            message("b1@example.org", "b1"),
            message("b2@example.org", "b2"),
        ],
    };
    let answer = client.send_batch(&batch).await.unwrap();
    for result in answer.results {
        let BatchResult::Accepted(accepted) = result else {
            panic!("refused: {result:?}");
        };
        ids.push(accepted.id);
    }

    let shown = final_state(&client, &ids[0]).await;
    assert_eq!(shown.status, MessageStatus::Delivered);
    assert_eq!(shown.recipients[0].address, "user0@example.org");
    assert!(
        shown.events.is_some(),
        "one message is shown with its events"
    );
    assert!(relay.wait_for_messages(7, Duration::from_secs(10)).await);

    // Pages of 2: four requests, every message once, newest first.
    let query = ListQuery {
        limit: Some(2),
        ..ListQuery::default()
    };
    let first_page = client.list(&query).await.unwrap();
    assert_eq!(first_page.messages.len(), 2);
    assert!(first_page.next_cursor.is_some());
    let listed: Vec<String> = client
        .messages(query)
        .map_ok(|m| m.id)
        .try_collect()
        .await
        .unwrap();
    // Newest first is by id (ULIDs; two of one millisecond in any order).
    let mut newest_first = ids.clone();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(listed, newest_first);

    herald.stop().await;
}

#[tokio::test]
async fn an_unknown_message_is_a_problem_not_a_retry() {
    let herald = Herald::start(None, "").await;
    let sleeper = Arc::new(Recorder::default());
    let client = Client::builder(&herald.base, KEY)
        .sleeper(sleeper.clone())
        .build()
        .unwrap();
    let error = client.get("01NOSUCHMESSAGE").await.unwrap_err();
    assert_eq!(error.status(), Some(404));
    assert_eq!(error.problem().unwrap().kind, "/problems/not-found");
    assert!(sleeper.waits().is_empty());

    let wrong_key = Client::new(&herald.base, "not-the-key").unwrap();
    let error = wrong_key.get("01NOSUCHMESSAGE").await.unwrap_err();
    assert_eq!(error.status(), Some(401));
    herald.stop().await;
}

/// Records the waits asked for instead of spending them, and runs an
/// action at the first (what frees the queue while the client waits).
#[derive(Default)]
struct Recorder {
    waits: Mutex<Vec<Duration>>,
    on_first_wait: Mutex<Option<Pin<Box<dyn Future<Output = ()> + Send>>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    fn waits(&self) -> Vec<Duration> {
        self.waits.lock().unwrap().clone()
    }
}

impl Sleeper for Recorder {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.waits.lock().unwrap().push(duration);
        let action = self.on_first_wait.lock().unwrap().take();
        Box::pin(async move {
            if let Some(action) = action {
                action.await;
            }
        })
    }
}

#[tokio::test]
async fn a_full_queue_is_waited_out_for_as_long_as_retry_after_says() {
    let herald = Herald::start(None, "[limits]\nmax_queue_depth = 1\n").await;
    let plain = Client::new(&herald.base, KEY).unwrap();
    // A message scheduled far ahead fills the queue.
    let mut tomorrow = message("first@example.org", "first");
    tomorrow.send_at = Some(time::macros::datetime!(2099-01-01 00:00 UTC));
    let first = plain.send(&tomorrow).await.unwrap();
    assert_eq!(first.status, MessageStatus::Scheduled);

    // The next is refused with 429 until the first is cancelled, which
    // the recorder does while the client waits.
    let recorder = Arc::new(Recorder::default());
    let canceller = plain.clone();
    let first_id = first.id.clone();
    *recorder.on_first_wait.lock().unwrap() = Some(Box::pin(async move {
        canceller.cancel(&first_id).await.unwrap();
    }));
    let client = Client::builder(&herald.base, KEY)
        .sleeper(recorder.clone())
        .build()
        .unwrap();
    let second = client
        .send(&message("second@example.org", "second"))
        .await
        .unwrap();

    assert_eq!(recorder.waits(), vec![Duration::from_secs(30)]);
    assert_eq!(second.status, MessageStatus::Queued);
    let all: Vec<_> = client
        .messages(ListQuery::default())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "the retried send queued one message");

    // A client that will not wait that long gives the 429 back.
    final_state(&client, &second.id).await;
    let first = plain.send(&tomorrow).await.unwrap();
    let impatient = Client::builder(&herald.base, KEY)
        .retry(RetryConfig {
            max_delay: Duration::from_secs(5),
            ..RetryConfig::default()
        })
        .build()
        .unwrap();
    let error = impatient
        .send(&message("third@example.org", "third"))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(429));
    assert_eq!(error.problem().unwrap().kind, "/problems/queue-full");
    plain.cancel(&first.id).await.unwrap();
    herald.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_queues_once() {
    let herald = Herald::start(None, "").await;
    let client = Client::new(&herald.base, KEY).unwrap();
    let request = message("once@example.org", "once");
    let a = client.send_with_key(&request, "order-42").await.unwrap();
    let b = client.send_with_key(&request, "order-42").await.unwrap();
    assert_eq!(a.id, b.id);
    let c = client.send(&request).await.unwrap();
    assert_ne!(a.id, c.id, "each logical send has its own key");
    herald.stop().await;
}

#[tokio::test]
async fn connection_refused_is_retried_within_bounds() {
    // A port that was just free: nothing listens there.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let recorder = Arc::new(Recorder::default());
    let client = Client::builder(&base, KEY)
        .retry(RetryConfig {
            max_attempts: 3,
            ..RetryConfig::default()
        })
        .sleeper(recorder.clone())
        .build()
        .unwrap();
    let error = client
        .send(&message("x@example.org", "x"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Connect(_)), "{error}");
    assert_eq!(recorder.waits().len(), 2, "three attempts, two waits");

    assert!(matches!(
        Client::new("ftp://herald.example", KEY),
        Err(Error::Invalid(_))
    ));
}

#[tokio::test]
async fn templates_are_stored_versioned_rendered_and_sent() {
    use herald_api::{RenderRequest, TemplateRequest};
    let herald = Herald::start(None, "").await;
    let client = Client::new(&herald.base, KEY).unwrap();
    let v1 = client
        .create_template(&TemplateRequest {
            name: Some("welcome".into()),
            subject: "Welcome {{ name }}".into(),
            text: Some("v1".into()),
            ..TemplateRequest::default()
        })
        .await
        .unwrap();
    let v2 = client
        .update_template(
            "welcome",
            &TemplateRequest {
                subject: "Welcome {{ name }}".into(),
                html: Some("<b>{{ name }}</b>".into()),
                ..TemplateRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(client.template("welcome", Some(1)).await.unwrap(), v1);
    assert_eq!(client.templates().await.unwrap(), vec![v2]);

    let mut variables = serde_json::Map::new();
    variables.insert("name".into(), "<Ada>".into());
    let rendered = client
        .render_template(
            "welcome",
            &RenderRequest {
                version: None,
                variables: variables.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(rendered.html.as_deref(), Some("<b>&lt;Ada&gt;</b>"));

    let accepted = client
        .send(&MessageRequest {
            from: Some("shop@example.com".into()),
            to: vec!["ada@example.org".into()],
            template: Some("welcome".into()),
            variables: Some(variables),
            ..MessageRequest::default()
        })
        .await
        .unwrap();
    let message = client.get(&accepted.id).await.unwrap();
    assert_eq!(message.metadata["herald.template_version"], "2");

    client.delete_template("welcome").await.unwrap();
    let error = client.template("welcome", None).await.unwrap_err();
    assert_eq!(error.status(), Some(404));
    herald.stop().await;
}
