//! The spans herald hands to OpenTelemetry when the binary exports them
//! (`[tracing] otlp_endpoint`), and how they join the message's trace.
//!
//! The service only creates `tracing` spans; whether they leave the process
//! is the binary's choice (an OpenTelemetry layer on the global subscriber).
//! Without that layer nothing here touches OpenTelemetry: the binary has
//! not called [`set_exporting`], and the export-only spans are disabled, so
//! they cost nothing.
//!
//! What is exported, all in the message's trace (its [`TraceId`]):
//!
//! - `accept`: one per `POST /v1/messages` or `/v1/messages/batch`, a child
//!   of the caller's span when the request had a valid `traceparent`;
//! - `delivery`: one per attempt (the span every delivery log line is in);
//! - `smtp` (one per relay tried, with an event per SMTP reply: banner,
//!   EHLO, MAIL, RCPT, DATA…) or `outbox`, inside `delivery`.
//!
//! Only the trace id is stored with a message, not the `accept` span's id,
//! so a `delivery` cannot name `accept` as its parent. Every attempt of a
//! message is instead the child of one stand-in span id derived from the
//! trace id ([`message_span_id`]), which no exported span carries: trace
//! viewers show the attempts in the right trace, under a missing parent.
//! `accept` has the same stand-in parent when the caller sent no
//! `traceparent`, so then all of a message's spans are siblings.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{
    SpanContext, SpanId as OtelSpanId, TraceContextExt as _, TraceFlags, TraceId as OtelTraceId,
    TraceState,
};
use sha2::{Digest as _, Sha256};
use tracing::{Level, Metadata, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::{TraceId, TraceParent};

/// The `tracing` target of the spans and events that exist for export only
/// (`accept`, `smtp`, `outbox` and their events). Log output leaves it out,
/// so log lines look the same whether export is on or off.
pub const EXPORT_TARGET: &str = "herald::trace";

/// Which spans and events an exporting layer should take: herald's own at
/// `INFO` and above (the export-only ones and `delivery` with its log
/// events), plus the SMTP client's per-reply events, which become the
/// SMTP phases of an `smtp` span. Meant for `tracing_subscriber`'s
/// `filter_fn`; it looks at static metadata only.
pub fn exported(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    let crate_of = |name: &str| {
        target == name
            || target
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with("::"))
    };
    if target == EXPORT_TARGET || crate_of("herald_server") {
        return *metadata.level() <= Level::INFO;
    }
    // herald-smtp logs every reply (with its phase) at TRACE: exactly the
    // phase timeline an `smtp` span wants, and nothing else of it.
    crate_of("herald_smtp")
        && metadata.is_event()
        && (*metadata.level() <= Level::INFO || metadata.fields().field("reply").is_some())
}

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Says whether the binary has installed a layer that exports spans (with
/// [`exported`] as its filter). Until it says so, no OpenTelemetry context
/// is built for nothing.
///
/// A flag rather than `tracing::enabled!`: with per-layer filters, a bare
/// `enabled!` that one layer refuses leaves that refusal behind for the
/// next span or event of the thread, hiding it from the log.
pub fn set_exporting(on: bool) {
    EXPORTING.store(on, Ordering::Relaxed);
}

/// Whether spans are exported (see [`set_exporting`]).
pub(crate) fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The stand-in parent span id of every `delivery` of the message whose
/// trace id is `trace` (see the module documentation): the first eight
/// bytes of a SHA-256 of the id, never all zeros.
pub fn message_span_id(trace: &TraceId) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(b"herald message span ")
        .chain_update(trace.as_str().as_bytes())
        .finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

/// Makes `span` (not yet entered) part of the request's trace: the child
/// of the caller's span when there is a `parent`, else of the message's
/// stand-in span. Does nothing unless spans are exported.
pub(crate) fn continue_request(span: &Span, trace: &TraceId, parent: Option<&TraceParent>) {
    if !exporting() || span.is_disabled() {
        return;
    }
    let parent_span = parent
        .filter(|p| p.trace == *trace)
        .and_then(|p| OtelSpanId::from_hex(&p.parent_span).ok())
        .unwrap_or_else(|| OtelSpanId::from_bytes(message_span_id(trace)));
    set_remote_parent(span, trace, parent_span);
}

/// Makes a `delivery` span (not yet entered) part of the message's trace,
/// as a child of its stand-in span. `stored` is the trace id kept with the
/// message; an old message without one starts a trace of its own. Does
/// nothing unless spans are exported.
pub(crate) fn continue_message(span: &Span, stored: Option<&str>) {
    let Some(stored) = stored else { return };
    if !exporting() || span.is_disabled() {
        return;
    }
    let trace = TraceId::from_stored(stored.to_owned());
    set_remote_parent(
        span,
        &trace,
        OtelSpanId::from_bytes(message_span_id(&trace)),
    );
}

fn set_remote_parent(span: &Span, trace: &TraceId, parent_span: OtelSpanId) {
    let Ok(trace_id) = OtelTraceId::from_hex(trace.as_str()) else {
        return;
    };
    if trace_id == OtelTraceId::INVALID {
        return;
    }
    // Sampled: whether herald keeps a trace is its own sampler's decision,
    // made from the trace id, so that all of a message's spans (accept and
    // every attempt, even across restarts) are kept or dropped together.
    let remote = SpanContext::new(
        trace_id,
        parent_span,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    // Fails only when no OpenTelemetry layer is installed or the span has
    // started: then there is nothing to continue.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stand_in_span_id_is_stable_per_trace() {
        let a = TraceId::from_stored("4bf92f3577b34da6a3ce929d0e0e4736".to_owned());
        let b = TraceId::from_stored("4bf92f3577b34da6a3ce929d0e0e4737".to_owned());
        assert_eq!(message_span_id(&a), message_span_id(&a.clone()));
        assert_ne!(message_span_id(&a), message_span_id(&b));
        assert_ne!(message_span_id(&a), [0; 8]);
    }

    #[test]
    fn export_is_off_until_the_binary_turns_it_on() {
        assert!(!exporting());
    }
}
