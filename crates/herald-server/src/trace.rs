//! W3C Trace Context (`traceparent`): the trace id that ties a message to
//! the request that sent it. Taken from the caller when valid, made up when
//! absent, then kept with the message, logged with every line about it, and
//! written into the mail as `X-Herald-Trace-Id`. When the binary exports
//! spans (OTLP, see [`export`]), the same id is their trace id.

pub mod export;

use rand::RngCore as _;

/// The mail header that carries the trace id.
pub const TRACE_HEADER: &str = "X-Herald-Trace-Id";

/// A 16-byte trace id, as 32 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceId(String);

/// A valid `traceparent` header: the trace it continues and the caller's
/// span, the parent of the spans herald exports for the request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace id (32 lower-case hex digits).
    pub trace: TraceId,
    /// The caller's span id (16 lower-case hex digits, not all zeros).
    pub parent_span: String,
}

impl TraceParent {
    /// Parses a `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`,
    /// RFC-like W3C rules: lower-case hex, neither id all zeros, version
    /// `ff` invalid); `None` when it is not valid.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        // Version 00 has exactly four fields; later versions may add more.
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let valid = hex(version, 2)
            && version != "ff"
            && hex(trace, 32)
            && hex(parent, 16)
            && hex(flags, 2)
            && trace.bytes().any(|b| b != b'0')
            && parent.bytes().any(|b| b != b'0');
        valid.then(|| Self {
            trace: TraceId(trace.to_owned()),
            parent_span: parent.to_owned(),
        })
    }
}

impl TraceId {
    /// The trace id of a valid `traceparent` header (see
    /// [`TraceParent::parse`]); `None` otherwise.
    pub fn from_traceparent(header: &str) -> Option<Self> {
        TraceParent::parse(header).map(|parent| parent.trace)
    }

    /// A fresh random trace id.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        loop {
            rand::rng().fill_bytes(&mut bytes);
            if bytes.iter().any(|&b| b != 0) {
                break;
            }
        }
        Self(const_hex::encode(bytes))
    }

    /// From a stored id (already validated when it was stored).
    pub fn from_stored(id: String) -> Self {
        Self(id)
    }

    /// The 32 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_traceparents_yield_their_trace_id() {
        let t =
            TraceId::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(t.unwrap().as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
        // A future version may carry more fields.
        let t = TraceId::from_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        );
        assert!(t.is_some());
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(TraceId::from_traceparent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_parent_span_is_kept() {
        let parent =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(parent.trace.as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.parent_span, "00f067aa0ba902b7");
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = TraceId::generate();
        let b = TraceId::generate();
        assert_ne!(a, b);
        let header = format!("00-{a}-00f067aa0ba902b7-01");
        assert_eq!(TraceId::from_traceparent(&header), Some(a));
    }
}
