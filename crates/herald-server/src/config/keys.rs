//! `[[auth.keys]]`: API keys with a name and the scopes they are allowed.

use std::collections::HashSet;

use super::build::{Env, api_key};
use super::raw::RawKey;
use super::{ApiKey, ConfigError, Scope, Scopes};

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
