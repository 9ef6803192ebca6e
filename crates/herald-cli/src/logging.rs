//! Log output for every command: human-readable lines or JSON, always on
//! stderr so that stdout carries only results. `herald serve` may add a
//! layer that exports spans (`[tracing]`, see `otlp`).

use clap::ValueEnum;
use herald_server::trace::export::EXPORT_TARGET;
use tracing_subscriber::filter::{Directive, FilterExt as _, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per event (for log shippers).
    Json,
}

/// Libraries whose debug and trace output would print credentials: ureq
/// logs every request line (alert webhook URLs with their tokens) and
/// hex-dumps what it sends (the OTLP exporter's Authorization header);
/// rustls, hyper and the OpenTelemetry SDK log connection and export
/// internals; the PostgreSQL driver logs every statement with its
/// parameters (message bodies and addresses). Their lines are kept at
/// `info` and above, whatever `RUST_LOG` says.
const QUIET_TARGETS: &[&str] = &[
    "ureq",
    "ureq_proto",
    "rustls",
    "hyper",
    "hyper_util",
    "h2",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "opentelemetry_http",
    "tracing_opentelemetry",
    "tokio_postgres",
    "postgres_protocol",
    "deadpool",
    "deadpool_postgres",
];

/// The ceiling on [`QUIET_TARGETS`], applied after the user's filter: a
/// `RUST_LOG=ureq::unversioned=trace` still gets no more than `info`.
fn ceiling() -> Targets {
    QUIET_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, target| t.with_target(*target, LevelFilter::INFO),
    )
}

/// A layer of the global subscriber besides the log lines.
pub(crate) type ExtraLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the global subscriber. `RUST_LOG` overrides the default level
/// (`info`).
pub(crate) fn init(format: LogFormat) {
    init_with(format, None);
}

/// Installs the global subscriber, with `extra` (span export) beside the
/// log lines. `RUST_LOG` chooses the log lines only: what `extra` sees is
/// its own filter's decision.
pub(crate) fn init_with(format: LogFormat, extra: Option<ExtraLayer>) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The spans that exist for export only never show in the log, so log
    // lines (and the JSON lines' current span) are the same with export on
    // or off.
    if let Ok(hidden) = format!("{EXPORT_TARGET}=off").parse::<Directive>() {
        filter = filter.add_directive(hidden);
    }
    // The ceiling holds the quiet targets at `info` whatever the user's
    // directives say (and lets a user's quieter setting for them stand).
    let filter = filter.and(ceiling());
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let lines: ExtraLayer = match format {
        LogFormat::Text => lines.with_filter(filter).boxed(),
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            // Span fields (the message and trace ids of a delivery) go in
            // every line logged inside the span.
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
    };
    let mut layers = vec![lines];
    layers.extend(extra);
    let _ = tracing_subscriber::registry().with(layers).try_init();
}
