//! The body of every error answer: RFC 9457 problem details, served as
//! `application/problem+json`, with a stable `type` to match on.

use serde::{Deserialize, Serialize};

use crate::FieldError;

/// The media type of every error answer.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// A failed request, as the client sees it (and each failed item of a
/// batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The kind of problem, stable across versions: `/problems/validation`,
    /// `/problems/queue-full`, … (docs/api.md lists them).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short human title of the kind.
    pub title: String,
    /// The HTTP status, repeated in the body.
    pub status: u16,
    /// What exactly went wrong, for a human.
    pub detail: String,
    /// For validation problems: the fields at fault, in field order (at
    /// most 20; absent when there are none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// How many more field errors there were than `errors` lists (absent
    /// when none were left out).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_errors: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

impl std::error::Error for Problem {}
