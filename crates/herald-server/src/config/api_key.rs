//! API keys: secrets that must never be printed, and must be compared in
//! time that does not depend on how much of a guess was right.

use std::fmt;

use sha2::{Digest, Sha256};

use super::ConfigError;

/// One API key a client may present as `Authorization: Bearer <key>`.
///
/// Only the key's SHA-256 digest is kept, so the key itself is not in
/// memory after loading; `Debug` shows its name and scopes, never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    digest: [u8; 32],
    name: String,
    scopes: Scopes,
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
            name: "default".to_owned(),
            scopes: Scopes::ALL,
        })
    }

    /// The same key under `name`, allowed only `scopes`.
    pub fn with_name_and_scopes(mut self, name: impl Into<String>, scopes: Scopes) -> Self {
        self.name = name.into();
        self.scopes = scopes;
        self
    }

    /// The key's name (for logs, and recorded with every message the key
    /// queues): `[[auth.keys]]`' `name`, `auth.api_keys[N]` and
    /// `VARIABLE[N]` for keys given as bare lists, `default` for a key made
    /// by [`ApiKey::new`] alone.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the key may do.
    pub fn scopes(&self) -> Scopes {
        self.scopes
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
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("key", &"***")
            .finish()
    }
}

/// One thing an API key may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// Queue messages: `POST /v1/messages`, `/v1/messages/batch` and
    /// `/v1/messages/raw`, and SMTP submission (as the AUTH password).
    Send,
    /// Look at messages: `GET /v1/messages`, `GET /v1/messages/{id}`.
    Read,
    /// Act on queued messages: `POST /v1/messages/{id}/retry` and
    /// `/cancel`.
    Manage,
    /// Everything above, and the service's own state: `GET /v1/errors`
    /// (error groups, which name relays and quote their replies).
    Admin,
}

impl Scope {
    /// Every scope, in the order of [`Scope::as_str`]'s names.
    pub const ALL: [Scope; 4] = [Scope::Send, Scope::Read, Scope::Manage, Scope::Admin];

    /// `send`, `read`, `manage` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Read => "read",
            Self::Manage => "manage",
            Self::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::Send => 1,
            Self::Read => 2,
            Self::Manage => 4,
            Self::Admin => 8,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| format!("unknown scope {s:?} (send, read, manage, admin)"))
    }
}

/// The scopes of one key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// Every scope: what the keys of `auth.api_keys` and the environment
    /// have.
    pub const ALL: Scopes = Scopes(1 | 2 | 4 | 8);

    /// The set of `scopes`.
    pub fn of(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self(scopes.into_iter().fold(0, |bits, s| bits | s.bit()))
    }

    /// Whether a request that needs `scope` is allowed: `admin` allows
    /// every request.
    pub fn allows(self, scope: Scope) -> bool {
        self.0 & (scope.bit() | Scope::Admin.bit()) != 0
    }

    /// Whether no scope is given.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Scope::ALL
            .into_iter()
            .filter(|s| self.0 & s.bit() != 0)
            .map(Scope::as_str)
            .collect();
        write!(f, "[{}]", names.join(", "))
    }
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}
