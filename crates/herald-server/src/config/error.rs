//! One error type for everything that can be wrong with a configuration,
//! naming the field (`relays[0].tls`) so the operator knows where to look,
//! and turning TOML's multi-line reports into one line that never quotes a
//! secret.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// What is wrong with the configuration, and where.
///
/// Displayed as `field: message`, e.g.
/// `relays[0].tls: unknown TLS mode "ssl" (none, starttls, opportunistic, implicit)`.
/// The field is a path into the file (`delivery.lease`, `auth.api_keys[2]`),
/// an environment variable (`HERALD_HTTP_LISTEN`), or `config` for the file
/// as a whole (unreadable, not TOML). Neither part ever contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Where: a path into the file, an environment variable, or `config`.
    pub field: String,
    /// What is wrong, in words.
    pub message: String,
}

impl ConfigError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<herald_alerts::AlertsConfigError> for ConfigError {
    fn from(e: herald_alerts::AlertsConfigError) -> Self {
        Self::new(e.field, e.message)
    }
}

/// Fields whose values are secrets: a TOML error about them says what was
/// expected but not what was found.
fn is_secret(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    let last = last.split('[').next().unwrap_or(last);
    // A whole section given as a string ("auth = ...", "store = ...") would
    // be quoted too.
    matches!(path, "auth" | "store" | "store.url")
        || matches!(last, "password" | "api_keys" | "url" | "secret" | "key")
}

/// Turns a TOML error (syntax or shape) into a one-line [`ConfigError`].
pub(crate) fn from_toml(text: &str, error: &toml::de::Error) -> ConfigError {
    let mut message = error.message().trim().replace('\n', " ");
    // serde names our private types ("expected struct RawServer").
    if let Some(at) = message.find("struct Raw") {
        message.replace_range(at.., "a table");
    }
    let Some(span) = error.span() else {
        return ConfigError::new("config", message);
    };
    // A document that does not parse has no fields to point at: report the
    // position instead.
    let Ok(root) = DeTable::parse(text) else {
        let (line, column) = position(text, span.start);
        return ConfigError::new(
            "config",
            format!("TOML syntax error at line {line}, column {column}: {message}"),
        );
    };
    let Some(mut field) = locate(root.get_ref(), &span) else {
        let (line, column) = position(text, span.start);
        return ConfigError::new("config", format!("line {line}, column {column}: {message}"));
    };
    // serde reports a missing field at the table that lacks it.
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        field = if field.is_empty() {
            name.to_owned()
        } else {
            format!("{field}.{name}")
        };
        return ConfigError::new(field, "required");
    }
    if field.is_empty() {
        field = "config".to_owned();
    }
    if is_secret(&field) {
        // serde quotes the offending value ("invalid type: integer `1234`");
        // for a secret that would put it in a log.
        return ConfigError::new(field, "invalid value (not shown): expected a string");
    }
    ConfigError::new(field, message)
}

/// 1-based line and column (in characters) of byte `offset`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// The path (`relays[1].port`) of the smallest key, value or table header
/// whose span covers `span`; `""` for the document itself.
fn locate(root: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    walk_table(root, "", span, &mut best);
    best.map(|(_, path)| path)
}

type Best = Option<(usize, String)>;

fn consider(candidate: Range<usize>, span: &Range<usize>, path: &str, best: &mut Best) {
    let covers = candidate.start <= span.start && span.end <= candidate.end;
    let len = candidate.end - candidate.start;
    // `<=`: on a tie the later (deeper) node wins.
    if covers && best.as_ref().is_none_or(|(l, _)| len <= *l) {
        *best = Some((len, path.to_owned()));
    }
}

fn walk_table(table: &DeTable<'_>, prefix: &str, span: &Range<usize>, best: &mut Best) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        consider(key.span(), span, &path, best);
        walk_value(value.get_ref(), value.span(), &path, span, best);
    }
}

fn walk_value(
    value: &DeValue<'_>,
    own: Range<usize>,
    path: &str,
    span: &Range<usize>,
    best: &mut Best,
) {
    consider(own, span, path, best);
    match value {
        DeValue::Table(table) => walk_table(table, path, span, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_value(
                    item.get_ref(),
                    item.span(),
                    &format!("{path}[{i}]"),
                    span,
                    best,
                );
            }
        }
        _ => {}
    }
}
