//! One request to herald, tried until it succeeds or [`RetryConfig`] says
//! stop: hyper's pooled HTTP/1 client underneath, problem bodies turned
//! into [`Error::Api`], `Retry-After` read for the retry decision.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

use herald_api::Problem;

use crate::tls::Connector;
use crate::{Error, RetryConfig, Sleeper};

pub(crate) struct Transport {
    http: HyperClient<Connector, Full<Bytes>>,
    base: String,
    auth: HeaderValue,
    retry: RetryConfig,
    timeout: Duration,
    sleeper: Arc<dyn Sleeper>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never printed.
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("api_key", &"<redacted>")
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to.
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Bytes,
}

impl Transport {
    pub(crate) fn new(
        base: &str,
        api_key: &str,
        retry: RetryConfig,
        timeout: Duration,
        sleeper: Arc<dyn Sleeper>,
        tls: impl FnOnce() -> Result<Arc<rustls::ClientConfig>, Error>,
    ) -> Result<Self, Error> {
        let base = base.trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|_| Error::Invalid("the base URL is not a URL".into()))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(Error::Invalid(
                    "the base URL must be http(s)://host[:port][/prefix]".into(),
                ));
            }
        };
        if uri.host().is_none() {
            return Err(Error::Invalid(
                "the base URL must be http(s)://host[:port][/prefix]".into(),
            ));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {api_key}"))
            .map_err(|_| Error::Invalid("the API key is not a valid header value".into()))?;
        auth.set_sensitive(true);
        let connector = Connector::new(if https { Some(tls()?) } else { None });
        let http = HyperClient::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            http,
            base,
            auth,
            retry,
            timeout,
            sleeper,
        })
    }

    /// `method path` with `body` (JSON), its answer read as `T`, retried
    /// as [`RetryConfig::delay`] decides. `repeatable`: whether the
    /// request may be repeated after it may have reached the server.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        idempotency_key: Option<&str>,
        repeatable: bool,
    ) -> Result<T, Error> {
        let body = Bytes::from(body.unwrap_or_default());
        let mut attempt = 1;
        loop {
            let (error, retry_after) = match self
                .once(method.clone(), path, body.clone(), idempotency_key)
                .await
            {
                Ok(answer) if answer.status.is_success() => {
                    // 204 has no body: read as JSON's null (a `()`).
                    let body: &[u8] = if answer.body.is_empty() {
                        b"null"
                    } else {
                        &answer.body
                    };
                    return serde_json::from_slice(body).map_err(|e| Error::Decode(e.to_string()));
                }
                Ok(answer) => (refusal(&answer), answer.retry_after),
                Err(error) => (error, None),
            };
            let jitter = rand::random::<f64>();
            let Some(wait) = self
                .retry
                .delay(attempt, &error, retry_after, repeatable, jitter)
            else {
                return Err(error);
            };
            self.sleeper.sleep(wait).await;
            attempt += 1;
        }
    }

    async fn once(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, Error> {
        let uri: Uri = format!("{}{path}", self.base)
            .parse()
            .map_err(|_| Error::Invalid(format!("cannot build a URL for {path}")))?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, self.auth.clone());
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                if e.is_connect() {
                    Error::Connect(causes(&e))
                } else {
                    Error::Transport(causes(&e))
                }
            })?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Error::Transport(e.to_string()))?
                .to_bytes();
            Ok(Answer {
                status,
                retry_after,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Error::Timeout(self.timeout))?
    }
}

/// An error with its causes (hyper's own words say only "client error
/// (Connect)"; the cause says which: refused, a certificate not trusted…).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An error answer: its problem if it carries one.
fn refusal(answer: &Answer) -> Error {
    match serde_json::from_slice::<Problem>(&answer.body) {
        Ok(problem) => Error::Api(problem),
        Err(_) => Error::Status {
            status: answer.status.as_u16(),
        },
    }
}
