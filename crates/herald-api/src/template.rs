//! Stored templates (`/v1/templates`): what a client writes, what the
//! API shows, and a preview's request and answer.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The body of `POST /v1/templates` and `PUT /v1/templates/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateRequest {
    /// The template's name (`POST` only; the path names it for `PUT`):
    /// 1 to 64 of `a-z`, `0-9`, `-`, `_`, `.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The subject's source. Required.
    #[serde(default)]
    pub subject: String,
    /// The plain-text body's source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The HTML body's source (HTML-escaped output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// The name of a layout (another template) that wraps this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
}

/// One version of a stored template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// Its name.
    pub name: String,
    /// Its version, from 1; each change makes a new one.
    pub version: u32,
    /// The subject's source.
    pub subject: String,
    /// The plain-text body's source (`null` if none).
    pub text: Option<String>,
    /// The HTML body's source (`null` if none).
    pub html: Option<String>,
    /// The layout that wraps it (`null` if none).
    pub layout: Option<String>,
    /// When this version was written.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The answer of `GET /v1/templates`: the latest version of each, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateList {
    /// The templates.
    pub templates: Vec<Template>,
}

/// The body of `POST /v1/templates/{name}/render`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderRequest {
    /// The version to render; the latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// The variables, a JSON object.
    #[serde(default)]
    pub variables: serde_json::Map<String, serde_json::Value>,
}

/// A template rendered without sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedTemplate {
    /// The template's name.
    pub name: String,
    /// The version rendered.
    pub version: u32,
    /// The subject.
    pub subject: String,
    /// The text body (`null` if the template has none).
    pub text: Option<String>,
    /// The HTML body (`null` if the template has none).
    pub html: Option<String>,
}
