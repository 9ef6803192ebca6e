//! `[tracing] otlp_endpoint`: herald's spans exported over OTLP/HTTP with
//! JSON bodies, for `herald serve` only.
//!
//! The OpenTelemetry SDK batches finished spans and posts them from a
//! thread of its own (no async runtime involved), through [`UreqClient`]:
//! ureq is already herald's HTTP client, so export brings in neither
//! reqwest nor a second TLS stack. Which spans go out, and how they join a
//! message's trace, is `herald_server::trace::export`'s business.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use herald_server::config::TracingConfig;
use herald_server::trace::export::exported;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;

use crate::logging::ExtraLayer;

/// How long one export request may take, answer included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the exit waits for the last spans to be sent.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest collector answer read (the OTLP answer is tiny).
const MAX_ANSWER: u64 = 4 * 1024 * 1024;
/// At most one warning about failed exports per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// A running export: the provider whose batch thread posts the spans.
/// [`shutdown`](Self::shutdown) sends what is pending; it must be called
/// before the process exits, since the global subscriber is never dropped.
#[derive(Debug)]
pub(crate) struct Export {
    provider: SdkTracerProvider,
}

impl Export {
    /// Sends the spans still pending and stops the batch thread (waiting at
    /// most a few seconds for a slow collector).
    pub(crate) fn shutdown(self) {
        if let Err(error) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(error = %error, "sending the last spans failed");
        }
    }
}

/// The layer that hands herald's spans to the exporter, and the export to
/// shut down at exit; `None` when `config` turns export off.
pub(crate) fn layer(config: &TracingConfig) -> anyhow::Result<Option<(ExtraLayer, Export)>> {
    let Some(url) = config.traces_url() else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(UreqClient::new(EXPORT_TIMEOUT))
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(url.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .with_context(|| format!("tracing.otlp_endpoint: cannot export to {url}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::TraceIdRatioBased(config.sample_ratio))
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("herald");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(filter_fn(exported))
        .boxed();
    Ok(Some((layer, Export { provider })))
}

/// [`HttpClient`] over a blocking ureq agent. The SDK's batch thread polls
/// it outside any async runtime, so the request simply runs there; inside
/// a Tokio runtime it moves to a blocking thread instead.
#[derive(Debug)]
struct UreqClient {
    agent: ureq::Agent,
    last_warning: Mutex<Option<Instant>>,
}

impl UreqClient {
    fn new(timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // The exporter reads the status itself.
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        Self {
            agent,
            last_warning: Mutex::new(None),
        }
    }

    /// Logs a failed export, at most once per [`WARN_EVERY`]: a collector
    /// that is down must not flood the log.
    fn warn(&self, what: &dyn std::fmt::Display) {
        let Ok(mut last) = self.last_warning.lock() else {
            return;
        };
        if last.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(error = %what, "exporting spans failed (the spans are dropped)");
    }
}

fn post(agent: &ureq::Agent, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let (parts, body) = request.into_parts();
    let request = Request::from_parts(parts, &body[..]);
    let response = agent.run(request)?;
    let (parts, mut body) = response.into_parts();
    let bytes = body.with_config().limit(MAX_ANSWER).read_to_vec()?;
    Ok(Response::from_parts(parts, Bytes::from(bytes)))
}

#[async_trait]
impl HttpClient for UreqClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let agent = self.agent.clone();
        let result = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime
                .spawn_blocking(move || post(&agent, request))
                .await
                .map_err(HttpError::from)
                .and_then(|answer| answer),
            Err(_) => post(&agent, request),
        };
        match &result {
            Ok(response) if !response.status().is_success() => {
                self.warn(&format_args!(
                    "the collector answered {}",
                    response.status()
                ));
            }
            Ok(_) => {}
            Err(error) => self.warn(error),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_endpoint_no_layer() {
        let config = herald_server::config::Config::default_embedded().tracing;
        let built = layer(&config).unwrap();
        assert!(built.is_none());
    }

    /// A one-request HTTP server: answers `{}` and hands back the request.
    fn one_answer() -> (String, std::thread::JoinHandle<String>) {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&seen).contains("{\"x\":1}") {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "request ended early");
                seen.extend_from_slice(&buf[..n]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                .unwrap();
            String::from_utf8(seen).unwrap()
        });
        (url, server)
    }

    fn request(url: &str) -> Request<Bytes> {
        Request::post(url)
            .header("content-type", "application/json")
            .body(Bytes::from_static(b"{\"x\":1}"))
            .unwrap()
    }

    fn check(response: Response<Bytes>, server: std::thread::JoinHandle<String>) {
        assert_eq!(response.status(), 200);
        assert_eq!(response.body().as_ref(), b"{}");
        let seen = server.join().unwrap();
        assert!(seen.starts_with("POST /v1/traces HTTP/1.1\r\n"), "{seen}");
        assert!(
            seen.to_ascii_lowercase()
                .contains("content-type: application/json")
        );
    }

    #[test]
    fn outside_a_runtime_the_request_runs_inline() {
        // As on the SDK's batch thread: no runtime, so the future is ready
        // at its first poll.
        let (url, server) = one_answer();
        let client = UreqClient::new(Duration::from_secs(5));
        let mut future = client.send_bytes(request(&url));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let std::task::Poll::Ready(answer) = future.as_mut().poll(&mut cx) else {
            panic!("the request did not run inline");
        };
        check(answer.unwrap(), server);
    }

    #[test]
    fn inside_a_runtime_the_request_runs_on_a_blocking_thread() {
        let (url, server) = one_answer();
        let client = UreqClient::new(Duration::from_secs(5));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let answer = runtime.block_on(client.send_bytes(request(&url)));
        check(answer.unwrap(), server);
    }

    #[test]
    fn an_unreachable_collector_is_an_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = UreqClient::new(Duration::from_secs(5));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/v1/traces");
        assert!(runtime.block_on(client.send_bytes(request(&url))).is_err());
    }
}
