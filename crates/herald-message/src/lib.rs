//! What a mail is, for herald: validated addresses and headers, the message
//! model that the HTTP API and the CLI accept, and its rendering to RFC 5322
//! bytes. No I/O happens here.
//!
//! The path is always the same: a [`MessageRequest`] (plain strings, the
//! API's JSON) is validated into a [`Message`], whose types make header
//! injection and an empty envelope unrepresentable; the message renders to
//! [`Rendered`] bytes with CRLF line endings, ready for SMTP.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod address;
mod attachment;
mod envelope;
mod header;
mod message;
mod render;
mod request;
mod template;
mod text;

pub use address::{AddressError, EmailAddress};
pub use attachment::{Attachment, AttachmentError, ContentId, Disposition, Filename, MediaType};
pub use envelope::{Envelope, EnvelopeError};
pub use header::{HeaderError, HeaderName, HeaderValue};
pub use message::{FieldError, Limits, Message, ValidationErrors};
pub use render::{RenderOptions, Rendered, message_id_for};
pub use request::{AttachmentRequest, MAX_ITEMS, MessageRequest};
pub use template::{
    CompiledTemplate, Layout, RenderedParts, TemplateError, TemplateLimits, TemplateParts,
    check_template, render_template,
};
pub use text::{TextError, check_header_text, check_visible, normalize_line_endings};

/// A new herald message id: a ULID, unique and sortable by creation time.
pub fn new_id() -> String {
    ulid::Ulid::new().to_string()
}
