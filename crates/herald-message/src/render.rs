//! Rendering a [`Message`] to RFC 5322 bytes, ready for SMTP DATA.
//!
//! mail-builder does the encoding (RFC 2047 words, RFC 2231 parameters,
//! quoted-printable/base64, folding); this module decides the MIME tree,
//! normalises line endings, adds the RFC 2047 `name=` fallback that older
//! clients read, and never writes Bcc.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::mime::{BodyPart, MimePart};
use time::OffsetDateTime;

use crate::address::EmailAddress;
use crate::attachment::{Attachment, Disposition};
use crate::message::Message;
use crate::text::normalize_line_endings;

/// What rendering needs besides the message: the identity and the time.
/// Passed in, so that rendering is deterministic and testable.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The Message-ID, without angle brackets (see [`message_id_for`]).
    pub message_id: String,
    /// The Date header's value.
    pub date: OffsetDateTime,
    /// Headers herald itself adds (such as a trace id), written after the
    /// application's. Their names must not be reserved.
    pub extra_headers: Vec<(crate::HeaderName, crate::HeaderValue)>,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The RFC 5322 message, CRLF line endings, no line over 998 octets.
    pub bytes: Vec<u8>,
    /// The Message-ID header's value, with angle brackets.
    pub message_id: String,
    /// Whether the headers carry raw UTF-8 (an internationalised address),
    /// so that the SMTP server must offer SMTPUTF8.
    pub smtputf8: bool,
}

/// A Message-ID for `id` under the sender's domain, without brackets.
/// Non-ASCII domains (which a Message-ID cannot hold) fall back to
/// `herald.invalid`.
pub fn message_id_for(id: &str, from: &EmailAddress) -> String {
    let domain = from.domain();
    let domain = if domain.is_ascii() && !domain.starts_with('[') {
        domain
    } else {
        "herald.invalid"
    };
    format!("{id}@{domain}")
}

impl Message {
    /// Renders the message. Infallible: everything that could fail was
    /// refused by validation.
    pub fn render(&self, options: &RenderOptions) -> Rendered {
        let mut builder = MessageBuilder::new()
            .from(address(&self.from))
            .message_id(MessageId::new(options.message_id.as_str()))
            .date(Date::new(options.date.unix_timestamp()));
        if !self.to.is_empty() {
            builder = builder.to(address_list(&self.to));
        }
        if !self.cc.is_empty() {
            builder = builder.cc(address_list(&self.cc));
        }
        // Bcc recipients are in the envelope only: no header names them.
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(address(reply_to));
        }
        if let Some(subject) = &self.subject {
            builder = builder.subject(subject.as_str());
        }
        for (name, value) in self.headers.iter().chain(&options.extra_headers) {
            builder = builder.header(name.as_str(), Text::new(value.as_str()));
        }
        // mail-builder adds MIME-Version itself.
        builder = builder.body(self.mime_tree());

        let mut bytes = Vec::new();
        builder.serialize(&mut bytes);

        let smtputf8 = [&self.from]
            .into_iter()
            .chain(&self.to)
            .chain(&self.cc)
            .chain(&self.reply_to)
            .any(EmailAddress::needs_smtputf8);
        Rendered {
            bytes,
            message_id: format!("<{}>", options.message_id),
            smtputf8,
        }
    }

    /// mixed(alternative(text, related(html, inline…)), attachment…), with
    /// every level that would hold a single part left out.
    fn mime_tree(&self) -> MimePart<'_> {
        let text = self.text.as_deref().map(|t| text_part("text/plain", t));
        let html = self.html.as_deref().map(|h| {
            let html = text_part("text/html", h);
            let inline: Vec<_> = self
                .attachments
                .iter()
                .filter(|a| matches!(a.disposition, Disposition::Inline(_)))
                .map(attachment_part)
                .collect();
            wrap("multipart/related", html, inline)
        });
        let content = match (text, html) {
            (Some(text), Some(html)) => MimePart::new("multipart/alternative", vec![text, html]),
            (Some(part), None) | (None, Some(part)) => part,
            // Validation requires a body; an empty text part is the honest
            // rendering of "nothing to say".
            (None, None) => text_part("text/plain", ""),
        };
        let files: Vec<_> = self
            .attachments
            .iter()
            .filter(|a| a.disposition == Disposition::Attachment)
            .map(attachment_part)
            .collect();
        wrap("multipart/mixed", content, files)
    }
}

fn address(a: &EmailAddress) -> Address<'_> {
    Address::new_address(a.name(), a.address())
}

fn address_list(list: &[EmailAddress]) -> Address<'_> {
    Address::new_list(list.iter().map(address).collect())
}

fn text_part<'x>(content_type: &'static str, body: &str) -> MimePart<'x> {
    MimePart::new(
        ContentType::new(content_type).attribute("charset", "utf-8"),
        BodyPart::Text(normalize_line_endings(body).into()),
    )
}

/// `first` alone, or a `multipart` of it followed by `rest`.
fn wrap<'x>(multipart: &'static str, first: MimePart<'x>, rest: Vec<MimePart<'x>>) -> MimePart<'x> {
    if rest.is_empty() {
        return first;
    }
    let mut parts = Vec::with_capacity(rest.len() + 1);
    parts.push(first);
    parts.extend(rest);
    MimePart::new(multipart, parts)
}

fn attachment_part(a: &Attachment) -> MimePart<'_> {
    let filename = a.filename.as_ref().map(|f| f.as_str());
    // Content-Type is written raw so that its `name=` can carry the RFC 2047
    // fallback that Outlook and other older readers still look for;
    // mail-builder would write RFC 2231 there too.
    let mut content_type = a.content_type.as_str().to_owned();
    if let Some(name) = filename {
        content_type.push_str(";\r\n name=");
        content_type.push_str(&legacy_name_parameter(name));
    }
    let disposition = match &a.disposition {
        Disposition::Attachment => "attachment",
        Disposition::Inline(_) => "inline",
    };
    let mut disposition = ContentType::new(disposition);
    if let Some(name) = filename {
        disposition = disposition.attribute("filename", name);
    }
    let mut part = MimePart {
        headers: vec![("Content-Type".into(), Raw::new(content_type).into())],
        contents: BodyPart::Binary(a.content.as_slice().into()),
    }
    .header("Content-Disposition", disposition);
    if let Disposition::Inline(id) = &a.disposition {
        part = part.cid(id.as_str());
    }
    part
}

/// The `name` parameter value: a quoted string when the name is short
/// printable ASCII, otherwise RFC 2047 "B" words, each on its own folded
/// line so that no line grows long.
fn legacy_name_parameter(name: &str) -> String {
    let plain = name.len() <= 60
        && name
            .chars()
            .all(|c| (c.is_ascii_graphic() || c == ' ') && c != '"' && c != '\\');
    if plain {
        return format!("\"{name}\"");
    }
    // 45 bytes of UTF-8 become 60 characters of base64: a line under 80.
    const CHUNK: usize = 45;
    let mut words = Vec::new();
    let mut start = 0;
    while start < name.len() {
        let mut end = (start + CHUNK).min(name.len());
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        words.push(format!(
            "=?utf-8?B?{}?=",
            STANDARD.encode(&name[start..end])
        ));
        start = end;
    }
    format!("\"{}\"", words.join("\r\n "))
}
