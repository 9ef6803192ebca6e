//! The validated message: what herald renders and delivers. It can only be
//! made from a [`MessageRequest`] by [`MessageRequest::validate`], which
//! reports every problem with the field it came from.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use time::OffsetDateTime;

use crate::address::EmailAddress;
use crate::attachment::{Attachment, ContentId, Disposition, Filename, MediaType};
use crate::envelope::Envelope;
use crate::header::{HeaderName, HeaderValue};
use crate::request::{AttachmentRequest, MessageRequest};
use crate::text::{TextError, check_header_text};

/// Bounds on what one message may carry. The defaults suit transactional
/// mail; a service may raise them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Recipients across to, cc and bcc (default 100).
    pub max_recipients: usize,
    /// Attachments, regular and inline (default 100).
    pub max_attachments: usize,
    /// Custom headers (default 50).
    pub max_headers: usize,
    /// Subject length in characters (default 998).
    pub max_subject_chars: usize,
    /// Tags (default 20), each at most 128 characters.
    pub max_tags: usize,
    /// Metadata entries (default 50); keys at most 128 characters, values
    /// at most 2048.
    pub max_metadata: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_recipients: 100,
            max_attachments: 100,
            max_headers: 50,
            max_subject_chars: 998,
            max_tags: 20,
            max_metadata: 50,
        }
    }
}

const MAX_TAG_CHARS: usize = 128;
const MAX_METADATA_KEY_CHARS: usize = 128;
const MAX_METADATA_VALUE_CHARS: usize = 2048;

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldError {
    /// Where: `from`, `to[1]`, `attachments[0].filename`, `headers.X-A`, …
    pub field: String,
    /// What, in a short phrase.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in a request, in field order; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(Vec<FieldError>);

impl ValidationErrors {
    fn one(field: &str, message: impl fmt::Display) -> Self {
        Self(vec![FieldError {
            field: field.to_owned(),
            message: message.to_string(),
        }])
    }

    /// The problems, at least one.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// The first problem.
    pub fn first(&self) -> &FieldError {
        // Constructed only from a non-empty list (see `Checker::finish`).
        &self.0[0]
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.first())?;
        if self.0.len() > 1 {
            write!(f, " (and {} more)", self.0.len() - 1)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// A message that passed validation: addresses parsed, headers safe,
/// attachments decoded, at least one recipient and one body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub(crate) from: EmailAddress,
    pub(crate) to: Vec<EmailAddress>,
    pub(crate) cc: Vec<EmailAddress>,
    pub(crate) bcc: Vec<EmailAddress>,
    pub(crate) reply_to: Option<EmailAddress>,
    pub(crate) subject: Option<String>,
    pub(crate) text: Option<String>,
    pub(crate) html: Option<String>,
    pub(crate) attachments: Vec<Attachment>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) tags: Vec<String>,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) send_at: Option<OffsetDateTime>,
    pub(crate) envelope: Envelope,
}

impl Message {
    /// The author.
    pub fn from(&self) -> &EmailAddress {
        &self.from
    }
    /// Primary recipients.
    pub fn to(&self) -> &[EmailAddress] {
        &self.to
    }
    /// Copied recipients.
    pub fn cc(&self) -> &[EmailAddress] {
        &self.cc
    }
    /// Blind-copied recipients (envelope only).
    pub fn bcc(&self) -> &[EmailAddress] {
        &self.bcc
    }
    /// Where replies go.
    pub fn reply_to(&self) -> Option<&EmailAddress> {
        self.reply_to.as_ref()
    }
    /// The subject line.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
    /// The plain-text body.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }
    /// The HTML body.
    pub fn html(&self) -> Option<&str> {
        self.html.as_deref()
    }
    /// Attachments, regular and inline, in request order.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }
    /// Custom headers, in name order.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }
    /// Tags.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }
    /// Metadata.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }
    /// When to send, if scheduled.
    pub fn send_at(&self) -> Option<OffsetDateTime> {
        self.send_at
    }

    /// The SMTP envelope: `from` as reverse-path, to + cc + bcc (each
    /// mailbox once) as forward-paths.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }
}

impl MessageRequest {
    /// Checks every field and builds a [`Message`], or lists every problem
    /// found, each naming its field.
    pub fn validate(&self, limits: &Limits) -> Result<Message, ValidationErrors> {
        let mut c = Checker::default();

        // The HTTP API renders a template into subject/text/html before it
        // validates; anywhere else a template cannot be sent.
        if self.template.is_some() || self.variables.is_some() || self.template_version.is_some() {
            c.fail::<()>("template", "a template must be rendered before it is sent");
        }

        let from = match &self.from {
            Some(from) => c.check("from", EmailAddress::parse(from)),
            None => c.fail("from", "is required"),
        };
        // Counted before any is parsed: a list over the limit is one error,
        // not one per bad address (which would make the answer as large as
        // the request, many times over).
        let recipients = self.to.len() + self.cc.len() + self.bcc.len();
        let (to, cc, bcc) = if recipients == 0 {
            c.fail::<()>("to", "no recipient: give at least one of to, cc, bcc");
            Default::default()
        } else if recipients > limits.max_recipients {
            c.fail::<()>(
                "to",
                format!(
                    "too many recipients ({recipients}; at most {})",
                    limits.max_recipients
                ),
            );
            Default::default()
        } else {
            (
                c.addresses("to", &self.to),
                c.addresses("cc", &self.cc),
                c.addresses("bcc", &self.bcc),
            )
        };
        let reply_to = self
            .reply_to
            .as_ref()
            .and_then(|r| c.check("reply_to", EmailAddress::parse(r)));

        let subject = self.subject.as_ref().and_then(|s| {
            c.check("subject", check_header_text(s))?;
            if s.chars().count() > limits.max_subject_chars {
                return c.fail(
                    "subject",
                    format!("longer than {} characters", limits.max_subject_chars),
                );
            }
            Some(s.clone())
        });

        if self.text.is_none() && self.html.is_none() {
            c.fail::<()>("text", "no body: give text or html");
        }
        let text = self.text.as_ref().and_then(|t| c.body("text", t));
        let html = self.html.as_ref().and_then(|h| c.body("html", h));

        let attachments = c.attachments(&self.attachments, limits, self.html.is_some());
        let headers = c.headers(&self.headers, limits);
        let tags = c.tags(&self.tags, limits);
        let metadata = c.metadata(&self.metadata, limits);

        if let Some(errors) = c.finish() {
            return Err(errors);
        }
        // Both hold when no error was recorded; the fallbacks keep this
        // function total without a panic.
        let from = from.ok_or_else(|| ValidationErrors::one("from", "is required"))?;
        let recipients = to.iter().chain(&cc).chain(&bcc).cloned();
        let envelope = Envelope::new(Some(from.clone()), recipients)
            .map_err(|e| ValidationErrors::one("to", e))?;
        Ok(Message {
            from,
            to,
            cc,
            bcc,
            reply_to,
            subject,
            text,
            html,
            attachments,
            headers,
            tags,
            metadata,
            send_at: self.send_at,
            envelope,
        })
    }
}

/// Collects field errors while validation goes on, so a client learns of
/// every problem at once.
#[derive(Default)]
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn fail<T>(&mut self, field: impl Into<String>, message: impl fmt::Display) -> Option<T> {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.to_string(),
        });
        None
    }

    fn check<T, E: fmt::Display>(
        &mut self,
        field: impl Into<String>,
        result: Result<T, E>,
    ) -> Option<T> {
        result.map_or_else(|e| self.fail(field, e), Some)
    }

    fn finish(self) -> Option<ValidationErrors> {
        (!self.errors.is_empty()).then_some(ValidationErrors(self.errors))
    }

    /// The addresses that parse; each one that does not is recorded.
    fn addresses(&mut self, field: &str, raw: &[String]) -> Vec<EmailAddress> {
        raw.iter()
            .enumerate()
            .filter_map(|(i, a)| self.check(format!("{field}[{i}]"), EmailAddress::parse(a)))
            .collect()
    }

    fn body(&mut self, field: &str, body: &str) -> Option<String> {
        if body.contains('\0') {
            return self.fail(field, TextError::Nul);
        }
        Some(body.to_owned())
    }

    fn attachments(
        &mut self,
        raw: &[AttachmentRequest],
        limits: &Limits,
        has_html: bool,
    ) -> Vec<Attachment> {
        if raw.len() > limits.max_attachments {
            self.fail::<()>(
                "attachments",
                format!("too many attachments (at most {})", limits.max_attachments),
            );
            return Vec::new();
        }
        let mut content_ids = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, a) in raw.iter().enumerate() {
            let field = |name: &str| format!("attachments[{i}].{name}");
            let filename = a
                .filename
                .as_ref()
                .and_then(|f| self.check(field("filename"), Filename::new(f)));
            let content_type = match &a.content_type {
                Some(ct) => self.check(field("content_type"), MediaType::parse(ct)),
                None => Some(MediaType::guess(
                    filename.as_ref().map_or("", Filename::as_str),
                )),
            };
            let content = self.check(field("content"), decode_base64(&a.content));
            let disposition = if a.inline {
                if !has_html {
                    self.fail::<()>(field("inline"), "inline parts need an html body");
                }
                match &a.content_id {
                    None => self.fail(field("content_id"), "is required for an inline part"),
                    Some(id) => self
                        .check(field("content_id"), ContentId::new(id))
                        .and_then(|id| {
                            if content_ids.insert(id.clone()) {
                                Some(Disposition::Inline(id))
                            } else {
                                self.fail(field("content_id"), "is used by another part")
                            }
                        }),
                }
            } else {
                if a.filename.is_none() {
                    self.fail::<()>(field("filename"), "is required for an attachment");
                }
                if a.content_id.is_some() {
                    self.fail::<()>(field("content_id"), "only inline parts have one");
                }
                Some(Disposition::Attachment)
            };
            if let (Some(content_type), Some(content), Some(disposition)) =
                (content_type, content, disposition)
            {
                out.push(Attachment {
                    filename,
                    content_type,
                    content,
                    disposition,
                });
            }
        }
        out
    }

    fn headers(
        &mut self,
        raw: &BTreeMap<String, String>,
        limits: &Limits,
    ) -> Vec<(HeaderName, HeaderValue)> {
        if raw.len() > limits.max_headers {
            self.fail::<()>(
                "headers",
                format!("too many headers (at most {})", limits.max_headers),
            );
            return Vec::new();
        }
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for (name, value) in raw {
            let field = format!("headers.{}", printable(name));
            let name = self.check(&field, HeaderName::custom(name));
            let value = self.check(&field, HeaderValue::new(value));
            if let (Some(name), Some(value)) = (name, value) {
                if seen.insert(name.as_str().to_ascii_lowercase()) {
                    out.push((name, value));
                } else {
                    self.fail::<()>(field, "given twice (header names ignore case)");
                }
            }
        }
        out
    }

    fn tags(&mut self, raw: &[String], limits: &Limits) -> Vec<String> {
        if raw.len() > limits.max_tags {
            self.fail::<()>(
                "tags",
                format!("too many tags (at most {})", limits.max_tags),
            );
            return Vec::new();
        }
        raw.iter()
            .enumerate()
            .filter_map(|(i, tag)| {
                let field = format!("tags[{i}]");
                self.check(&field, check_header_text(tag))?;
                match tag.chars().count() {
                    0 => self.fail(field, "is empty"),
                    n if n > MAX_TAG_CHARS => {
                        self.fail(field, format!("longer than {MAX_TAG_CHARS} characters"))
                    }
                    _ => Some(tag.clone()),
                }
            })
            .collect()
    }

    fn metadata(
        &mut self,
        raw: &BTreeMap<String, String>,
        limits: &Limits,
    ) -> BTreeMap<String, String> {
        if raw.len() > limits.max_metadata {
            self.fail::<()>(
                "metadata",
                format!("too many entries (at most {})", limits.max_metadata),
            );
            return BTreeMap::new();
        }
        let mut out = BTreeMap::new();
        for (key, value) in raw {
            let field = format!("metadata.{}", printable(key));
            if key.is_empty() || key.chars().count() > MAX_METADATA_KEY_CHARS {
                self.fail::<()>(
                    field,
                    format!("key must be 1 to {MAX_METADATA_KEY_CHARS} characters"),
                );
            } else if value.chars().count() > MAX_METADATA_VALUE_CHARS {
                self.fail::<()>(
                    field,
                    format!("longer than {MAX_METADATA_VALUE_CHARS} characters"),
                );
            } else {
                out.insert(key.clone(), value.clone());
            }
        }
        out
    }
}

/// A field name safe to echo back in an error: control characters escaped.
fn printable(name: &str) -> String {
    name.chars().flat_map(char::escape_debug).collect()
}

/// Standard base64, with or without padding, white space (line breaks from
/// MIME-style encoders) ignored.
fn decode_base64(raw: &str) -> Result<Vec<u8>, &'static str> {
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: Vec<u8> = raw.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    ENGINE.decode(compact).map_err(|_| "not valid base64")
}
