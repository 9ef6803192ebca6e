//! `[[auth.keys]]`: API keys with a name and the scopes they are allowed.

use std::collections::HashSet;

use serde::Deserialize;

use super::build::{Env, api_key};
use super::{ApiKey, ConfigError, Scope, Scopes};

/// `[auth]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    /// API keys written in the file (secrets).
    #[serde(default = "super::raw::defaults::api_keys")]
    pub(crate) api_keys: Vec<String>,
    /// The name of an environment variable holding comma-separated keys.
    #[serde(default = "super::raw::defaults::api_keys_env")]
    pub(crate) api_keys_env: Option<String>,
    /// `[[auth.keys]]`: named keys with scopes.
    #[serde(default)]
    pub(crate) keys: Vec<RawKey>,
}

/// One `[[auth.keys]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKey {
    /// Unique name, `[a-z0-9_-]+`.
    pub(crate) name: String,
    /// The key itself (secret); or `key_env`.
    #[serde(default)]
    pub(crate) key: Option<String>,
    /// The environment variable holding the key.
    #[serde(default)]
    pub(crate) key_env: Option<String>,
    /// What the key may do: `send`, `read`, `manage`, `admin`.
    pub(crate) scopes: Vec<String>,
}

/// Validates every `[[auth.keys]]` entry, in file order.
pub(super) fn named_keys(raw: Vec<RawKey>, env: Env<'_>) -> Result<Vec<ApiKey>, ConfigError> {
    let mut names = HashSet::new();
    let mut keys = Vec::with_capacity(raw.len());
    for (i, entry) in raw.into_iter().enumerate() {
        let field = |name: &str| format!("auth.keys[{i}].{name}");
        if entry.name.is_empty()
            || !entry
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(ConfigError::new(
                field("name"),
                "must be lower-case letters, digits, '-' and '_'",
            ));
        }
        if !names.insert(entry.name.clone()) {
            return Err(ConfigError::new(
                field("name"),
                format!("{:?} names another key too", entry.name),
            ));
        }
        let secret = match (entry.key, entry.key_env) {
            (Some(key), None) => key,
            (None, Some(var)) => match env(&var) {
                Some(value) if !value.trim().is_empty() => value.trim().to_owned(),
                _ => {
                    return Err(ConfigError::new(
                        field("key_env"),
                        format!("environment variable {var} is not set"),
                    ));
                }
            },
            _ => {
                return Err(ConfigError::new(
                    field("key"),
                    "give exactly one of key and key_env",
                ));
            }
        };
        let mut scopes = Vec::with_capacity(entry.scopes.len());
        for (j, scope) in entry.scopes.iter().enumerate() {
            let scope = scope
                .parse::<Scope>()
                .map_err(|m| ConfigError::new(field(&format!("scopes[{j}]")), m))?;
            scopes.push(scope);
        }
        let scopes = Scopes::of(scopes);
        if scopes.is_empty() {
            return Err(ConfigError::new(
                field("scopes"),
                "give at least one of send, read, manage, admin",
            ));
        }
        keys.push(api_key(&secret, || field("key"))?.with_name_and_scopes(entry.name, scopes));
    }
    Ok(keys)
}
