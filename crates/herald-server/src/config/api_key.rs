//! API keys: secrets that must never be printed, and must be compared in
//! time that does not depend on how much of a guess was right.

use std::fmt;

use sha2::{Digest, Sha256};

use super::ConfigError;

/// One API key a client may present as `Authorization: Bearer <key>`.
///
/// Only the key's SHA-256 digest is kept, so the key itself is not in
/// memory after loading; `Debug` prints `ApiKey(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    digest: [u8; 32],
}

impl ApiKey {
    /// The fewest characters a key may have.
    pub const MIN_LEN: usize = 16;

    /// A key, if it has at least [`MIN_LEN`](Self::MIN_LEN) characters and
    /// only visible ASCII ones (it travels in an HTTP header). The error's
    /// field is `api_key`; the key itself is never in it.
    pub fn new(key: &str) -> Result<Self, ConfigError> {
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::new(
                "api_key",
                "must contain only visible ASCII characters, no spaces (the key is not shown)",
            ));
        }
        if key.len() < Self::MIN_LEN {
            return Err(ConfigError::new(
                "api_key",
                format!(
                    "must be at least {} characters long (the key is not shown)",
                    Self::MIN_LEN
                ),
            ));
        }
        Ok(Self {
            digest: sha256(key),
        })
    }

    /// Whether `presented` is this key, in constant time: both sides are
    /// hashed first, so neither the key's length nor the position of the
    /// first wrong character shows in the timing.
    pub fn matches(&self, presented: &str) -> bool {
        let presented = sha256(presented);
        let difference = self
            .digest
            .iter()
            .zip(presented.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}
