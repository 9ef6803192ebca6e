//! A webhook receiver's view of herald's POSTs: what arrived, and the
//! signature check a receiver runs (docs/webhooks.md).

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::WEBHOOK_SECRET;

/// One POST as the receiver saw it, and the status it answered.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) id: String,
    pub(crate) timestamp: String,
    pub(crate) signature: String,
    pub(crate) body: String,
    pub(crate) answered: u16,
}

impl Seen {
    /// A POST with `headers` and `body`, answered `answered`.
    pub(crate) fn new(headers: &HeaderMap, body: String, answered: u16) -> Seen {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        Seen {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            body,
            answered,
        }
    }
}

/// Verifies a request the way a receiver does (docs/webhooks.md), with
/// the tests' [`WEBHOOK_SECRET`].
pub(crate) fn verify(seen: &Seen) -> bool {
    let key = STANDARD
        .decode(WEBHOOK_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", seen.id, seen.timestamp, seen.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    seen.signature.split(' ').any(|s| s == expected)
}
