//! A typed async client of herald's HTTP API (docs/api.md). It speaks in
//! herald-api's types, the same the server serializes, so no JSON is
//! written or picked apart by hand on either side.
//!
//! Every send carries an idempotency key, generated once per logical send
//! and reused by each of its retries, so that a retry after a lost answer
//! never queues the message twice. Transient failures (`429` with its
//! `Retry-After`, `503`, connection errors) are retried within
//! [`RetryConfig`]'s bounds; anything else is returned at once.
//!
//! ```no_run
//! use futures_util::TryStreamExt as _;
//! use herald_api::{ListQuery, MessageRequest, MessageStatus};
//! use herald_client::Client;
//!
//! # async fn example() -> Result<(), herald_client::Error> {
//! let herald = Client::new("http://127.0.0.1:8080", "my-api-key")?;
//! let accepted = herald
//!     .send(&MessageRequest {
//!         from: Some("Shop <shop@example.com>".into()),
//!         to: vec!["ada@example.org".into()],
//!         subject: Some("Your order".into()),
//!         text: Some("It ships today.".into()),
//!         ..MessageRequest::default()
//!     })
//!     .await?;
//! let message = herald.get(&accepted.id).await?;
//! println!("{} is {}", message.id, message.status);
//!
//! // Every deferred message, page after page.
//! let query = ListQuery { status: Some(MessageStatus::Deferred), ..ListQuery::default() };
//! let deferred: Vec<_> = herald.messages(query).try_collect().await?;
//! println!("{} deferred", deferred.len());
//! # Ok(())
//! # }
//! ```
//!
//! The client speaks HTTP/1.1, over TLS for an `https://` base URL (herald
//! behind a TLS-terminating proxy): the server's certificate is checked
//! against the system's trust roots (webpki's when the system has none),
//! plus an extra CA if given ([`ClientBuilder::extra_ca`]), or against
//! the roots of a rustls configuration of the caller's
//! ([`ClientBuilder::tls_config`]).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

// The README's example is compiled as a doc test here.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExamples;

mod error;
mod lists;
mod retry;
mod tls;
mod transport;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use herald_api::{
    Accepted, BatchAnswer, BatchRequest, ListQuery, Message, MessagePage, MessageRequest,
    RawRequest, Reloaded, RenderRequest, RenderedTemplate, Template, TemplateList, TemplateRequest,
    WebhookDelivery,
};
use hyper::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::Error;
/// Waits between attempts: the client asks it rather than the runtime, so
/// that a test sees the waits asked for (a `Retry-After` honoured) without
/// spending them.
pub use herald_policy::{Sleeper, TokioSleeper};
pub use retry::RetryConfig;

use transport::Transport;

/// A client of one herald server with one API key. Cheap to clone: clones
/// share the connection pool.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Transport>,
}

/// Builds a [`Client`] with other than the default settings.
#[derive(Debug)]
pub struct ClientBuilder {
    base: String,
    api_key: String,
    retry: RetryConfig,
    timeout: Duration,
    sleeper: Arc<dyn Sleeper>,
    tls: Option<Arc<rustls::ClientConfig>>,
    extra_ca: Option<PathBuf>,
}

impl ClientBuilder {
    /// For an `https://` URL: trust the CA certificates in this PEM file
    /// besides the system's.
    pub fn extra_ca(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.extra_ca = Some(pem_file.into());
        self
    }

    /// For an `https://` URL: these TLS settings (and their trust roots)
    /// instead of the system's roots. Takes precedence over
    /// [`extra_ca`](Self::extra_ca).
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// How transient failures are retried ([`RetryConfig::default`]
    /// otherwise).
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// How long one attempt may take, answer included (30 s otherwise).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What waits between attempts ([`TokioSleeper`] otherwise): a test
    /// can see the waits asked for without spending them.
    pub fn sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// The client. The base URL must be `http://host[:port][/prefix]` or
    /// `https://…`; for `https`, the trust roots are read now (a CA file
    /// that cannot be read is [`Error::Invalid`]).
    pub fn build(self) -> Result<Client, Error> {
        let (tls, extra_ca) = (self.tls, self.extra_ca);
        let transport = Transport::new(
            &self.base,
            &self.api_key,
            self.retry,
            self.timeout,
            self.sleeper,
            move || match tls {
                Some(config) => Ok(config),
                None => herald_tls::system_tls_config(extra_ca.as_deref())
                    .map_err(|e| Error::Invalid(format!("TLS: {e}"))),
            },
        )?;
        Ok(Client {
            inner: Arc::new(transport),
        })
    }
}

impl Client {
    /// A client of the herald at `base_url` (`http://host:port`, or
    /// `https://…`) using
    /// `api_key`, with the default settings.
    pub fn new(base_url: &str, api_key: &str) -> Result<Self, Error> {
        Self::builder(base_url, api_key).build()
    }

    /// A builder for other settings.
    pub fn builder(base_url: &str, api_key: &str) -> ClientBuilder {
        ClientBuilder {
            base: base_url.to_owned(),
            api_key: api_key.to_owned(),
            retry: RetryConfig::default(),
            timeout: Duration::from_secs(30),
            sleeper: Arc::new(TokioSleeper),
            tls: None,
            extra_ca: None,
        }
    }

    /// `POST /v1/messages`: queue one message.
    pub async fn send(&self, message: &MessageRequest) -> Result<Accepted, Error> {
        self.send_with_key(message, &new_key()).await
    }

    /// [`send`](Self::send) under an idempotency key of the caller's: the
    /// same key and body, sent again (even from another process), answer
    /// the first acceptance instead of queueing twice.
    pub async fn send_with_key(
        &self,
        message: &MessageRequest,
        idempotency_key: &str,
    ) -> Result<Accepted, Error> {
        self.post_json("/v1/messages", message, Some(idempotency_key))
            .await
    }

    /// `POST /v1/messages/batch`: queue many messages in one request; each
    /// is accepted or refused on its own.
    pub async fn send_batch(&self, batch: &BatchRequest) -> Result<BatchAnswer, Error> {
        self.post_json("/v1/messages/batch", batch, Some(&new_key()))
            .await
    }

    /// `POST /v1/messages/raw`: queue a message rendered by the caller.
    pub async fn send_raw(&self, raw: &RawRequest) -> Result<Accepted, Error> {
        self.post_json("/v1/messages/raw", raw, Some(&new_key()))
            .await
    }

    /// `GET /v1/messages/{id}`: one message with its history.
    pub async fn get(&self, id: &str) -> Result<Message, Error> {
        let path = format!("/v1/messages/{}", encode(id));
        self.inner.call(Method::GET, &path, None, None, true).await
    }

    /// `GET /v1/messages`: one page of messages, newest first.
    pub async fn list(&self, query: &ListQuery) -> Result<MessagePage, Error> {
        let qs = query.to_query_string();
        let path = if qs.is_empty() {
            "/v1/messages".to_owned()
        } else {
            format!("/v1/messages?{qs}")
        };
        self.inner.call(Method::GET, &path, None, None, true).await
    }

    /// Every message `query` selects, newest first, following the cursors
    /// page after page (pages of `query.limit`). The stream ends after the
    /// last page, or after the first error.
    pub fn messages(&self, query: ListQuery) -> impl Stream<Item = Result<Message, Error>> + '_ {
        let state = Pages {
            query: Some(query),
            buffered: VecDeque::new(),
        };
        futures_util::stream::unfold(state, move |mut state| async move {
            loop {
                if let Some(message) = state.buffered.pop_front() {
                    return Some((Ok(message), state));
                }
                let query = state.query.take()?;
                match self.list(&query).await {
                    Ok(page) => {
                        state.buffered.extend(page.messages);
                        state.query = page.next_cursor.map(|cursor| ListQuery {
                            cursor: Some(cursor),
                            ..query
                        });
                    }
                    Err(error) => return Some((Err(error), state)),
                }
            }
        })
    }

    /// `POST /v1/messages/{id}/retry`: put failed recipients back in the
    /// queue.
    pub async fn retry(&self, id: &str) -> Result<Message, Error> {
        let path = format!("/v1/messages/{}/retry", encode(id));
        self.inner
            .call(Method::POST, &path, None, None, false)
            .await
    }

    /// `POST /v1/messages/{id}/cancel`: stop a message that is not final.
    pub async fn cancel(&self, id: &str) -> Result<Message, Error> {
        let path = format!("/v1/messages/{}/cancel", encode(id));
        self.inner
            .call(Method::POST, &path, None, None, false)
            .await
    }

    /// `POST /v1/webhooks/deliveries/{id}/retry`: send that try's event to
    /// its endpoint once more, now (same `webhook-id`, fresh signature);
    /// the new try, whatever the endpoint answered. Never repeated by the
    /// client: each call sends the event again.
    pub async fn retry_webhook_delivery(&self, id: i64) -> Result<WebhookDelivery, Error> {
        let path = format!("/v1/webhooks/deliveries/{id}/retry");
        self.inner
            .call(Method::POST, &path, None, None, false)
            .await
    }

    /// `POST /v1/admin/reload` (scope `admin`): the server reads its
    /// configuration file again. A file that does not validate is an
    /// [`Error::Api`] `422` whose detail is `herald check-config`'s error.
    /// Repeating it is harmless: a reload of an unchanged file changes
    /// nothing.
    pub async fn reload(&self) -> Result<Reloaded, Error> {
        self.inner
            .call(Method::POST, "/v1/admin/reload", None, None, true)
            .await
    }

    /// `POST /v1/templates`: store a new template (`template.name` set).
    pub async fn create_template(&self, template: &TemplateRequest) -> Result<Template, Error> {
        self.post_json("/v1/templates", template, None).await
    }

    /// `PUT /v1/templates/{name}`: store a new version of a template.
    pub async fn update_template(
        &self,
        name: &str,
        template: &TemplateRequest,
    ) -> Result<Template, Error> {
        let bytes = serde_json::to_vec(template).map_err(|e| Error::Invalid(e.to_string()))?;
        let path = format!("/v1/templates/{}", encode(name));
        // A repeated PUT would make one more version than meant.
        self.inner
            .call(Method::PUT, &path, Some(bytes), None, false)
            .await
    }

    /// `GET /v1/templates/{name}`: its latest version, or `version`.
    pub async fn template(&self, name: &str, version: Option<u32>) -> Result<Template, Error> {
        let mut path = format!("/v1/templates/{}", encode(name));
        if let Some(version) = version {
            path.push_str(&format!("?version={version}"));
        }
        self.inner.call(Method::GET, &path, None, None, true).await
    }

    /// `GET /v1/templates`: the latest version of every template.
    pub async fn templates(&self) -> Result<Vec<Template>, Error> {
        let list: TemplateList = self
            .inner
            .call(Method::GET, "/v1/templates", None, None, true)
            .await?;
        Ok(list.templates)
    }

    /// `DELETE /v1/templates/{name}`: every version.
    pub async fn delete_template(&self, name: &str) -> Result<(), Error> {
        let path = format!("/v1/templates/{}", encode(name));
        self.inner
            .call(Method::DELETE, &path, None, None, true)
            .await
    }

    /// `POST /v1/templates/{name}/render`: what a message would say.
    pub async fn render_template(
        &self,
        name: &str,
        request: &RenderRequest,
    ) -> Result<RenderedTemplate, Error> {
        let bytes = serde_json::to_vec(request).map_err(|e| Error::Invalid(e.to_string()))?;
        let path = format!("/v1/templates/{}/render", encode(name));
        self.inner
            .call(Method::POST, &path, Some(bytes), None, true)
            .await
    }

    async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        idempotency_key: Option<&str>,
    ) -> Result<T, Error> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::Invalid(e.to_string()))?;
        let repeatable = idempotency_key.is_some();
        self.inner
            .call(Method::POST, path, Some(bytes), idempotency_key, repeatable)
            .await
    }
}

/// Where [`Client::messages`] stands: the messages of the page read and
/// not yet handed out, and the query of the next page (`None` after the
/// last).
struct Pages {
    query: Option<ListQuery>,
    buffered: VecDeque<Message>,
}

/// A new idempotency key: one per logical send, kept across its retries.
fn new_key() -> String {
    format!("herald-client-{}", herald_message::new_id())
}

/// Percent-encodes a path segment.
pub(crate) fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
