//! Stored templates: every change is a new version, kept, so that a
//! message can say which version made it and an old one can be shown.

use time::OffsetDateTime;

/// The template version that made a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRef {
    /// The template's name.
    pub name: String,
    /// The version rendered.
    pub version: u32,
}

/// A template (or a new version of one) to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTemplate {
    /// Its name, unique.
    pub name: String,
    /// The subject's source.
    pub subject: String,
    /// The text body's source.
    pub text: Option<String>,
    /// The HTML body's source.
    pub html: Option<String>,
    /// The name of the layout that wraps it.
    pub layout: Option<String>,
    /// When this version was written.
    pub created_at: OffsetDateTime,
}

/// One stored version of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    /// Its name.
    pub name: String,
    /// Its version, from 1, one more for each change.
    pub version: u32,
    /// The subject's source.
    pub subject: String,
    /// The text body's source.
    pub text: Option<String>,
    /// The HTML body's source.
    pub html: Option<String>,
    /// The name of the layout that wraps it.
    pub layout: Option<String>,
    /// When this version was written.
    pub created_at: OffsetDateTime,
}
