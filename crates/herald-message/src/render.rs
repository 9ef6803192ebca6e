//! Rendering a [`Message`] to RFC 5322 bytes, ready for SMTP DATA.
//!
//! mail-builder does the encoding (RFC 2047 words, RFC 2231 parameters,
//! quoted-printable/base64, folding); this module decides the MIME tree,
//! normalises line endings, adds the RFC 2047 `name=` fallback that older
//! clients read, and never writes Bcc.

use mail_builder::MessageBuilder;
use mail_builder::headers::HeaderType;
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

mod encode;

use encode::{b_words, extended_parameter, is_plain_name, legacy_name_parameter, looks_encoded};

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
            .header("From", addresses(std::slice::from_ref(&self.from)))
            .message_id(MessageId::new(options.message_id.as_str()))
            .date(Date::new(options.date.unix_timestamp()));
        if !self.to.is_empty() {
            builder = builder.header("To", addresses(&self.to));
        }
        if !self.cc.is_empty() {
            builder = builder.header("Cc", addresses(&self.cc));
        }
        // Bcc recipients are in the envelope only: no header names them.
        if let Some(reply_to) = &self.reply_to {
            builder = builder.header("Reply-To", addresses(std::slice::from_ref(reply_to)));
        }
        if let Some(subject) = &self.subject {
            builder = builder.header("Subject", text(subject));
        }
        for (name, value) in self.headers.iter().chain(&options.extra_headers) {
            builder = builder.header(name.as_str(), text(value.as_str()));
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

/// Unstructured text: mail-builder's encoding, unless the text could be
/// taken for encoded words (see [`encode`]) or starts with white space,
/// which readers drop as part of the header's separator (mail-builder
/// encodes trailing white space itself; found by fuzzing).
fn text(value: &str) -> HeaderType<'_> {
    if looks_encoded(value) || value.starts_with([' ', '\t']) {
        Raw::new(b_words(value)).into()
    } else {
        Text::new(value).into()
    }
}

/// An address list: mail-builder's, unless a display name could be taken
/// for encoded words; then every name is written as "B" words.
fn addresses(list: &[EmailAddress]) -> HeaderType<'_> {
    if !list.iter().any(|a| a.name().is_some_and(looks_encoded)) {
        let mut all: Vec<_> = list
            .iter()
            .map(|a| Address::new_address(a.name(), a.address()))
            .collect();
        return match all.len() {
            1 => all.remove(0).into(),
            _ => Address::new_list(all).into(),
        };
    }
    let written: Vec<String> = list
        .iter()
        .map(|a| match a.name() {
            Some(name) if !name.is_empty() => format!("{}\r\n <{}>", b_words(name), a.address()),
            _ => format!("<{}>", a.address()),
        })
        .collect();
    Raw::new(written.join(",\r\n ")).into()
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
    // RFC 2046 section 5.2.1: a message/rfc822 part (like message/partial
    // and external-body) may only be 7bit, 8bit or binary; readers take a
    // base64 one for an empty message. A message that 7bit carries goes as
    // it is; any other bytes (8-bit, or not a message at all, which readers
    // would parse past the part's end) go as opaque bytes, in base64.
    // (message/global, RFC 6532 section 3.5, allows every encoding.)
    let media = a.content_type.as_str();
    let message = media.starts_with("message/") && !media.starts_with("message/global");
    let proper = message && is_seven_bit(&a.content) && is_header_block(&a.content);
    let (media, seven_bit) = match (message, proper) {
        (true, true) => (media, true),
        (true, false) => ("application/octet-stream", false),
        (false, _) => (media, false),
    };
    // Content-Type is written raw so that its `name=` can carry the RFC 2047
    // fallback that Outlook and other older readers still look for;
    // mail-builder would write RFC 2231 there too.
    let mut content_type = media.to_owned();
    if let Some(name) = filename {
        content_type.push_str(";\r\n name=");
        content_type.push_str(&legacy_name_parameter(name));
    }
    let disposition_type = match &a.disposition {
        Disposition::Attachment => "attachment",
        Disposition::Inline(_) => "inline",
    };
    let disposition: HeaderType<'_> = match filename {
        // mail-builder writes printable ASCII as a quoted string, which
        // readers decode when it looks like encoded words, and folds a
        // long one inside the quotes, where mail-parser keeps the line
        // break (found by fuzzing): only plain names go that way.
        Some(name) if !is_plain_name(name) => Raw::new(format!(
            "{disposition_type};\r\n {}",
            extended_parameter("filename", name)
        ))
        .into(),
        Some(name) => ContentType::new(disposition_type)
            .attribute("filename", name)
            .into(),
        None => ContentType::new(disposition_type).into(),
    };
    let mut part = MimePart {
        headers: vec![("Content-Type".into(), Raw::new(content_type).into())],
        contents: BodyPart::Binary(a.content.as_slice().into()),
    }
    .header("Content-Disposition", disposition);
    if seven_bit {
        part = part.transfer_encoding("7bit");
    }
    if let Disposition::Inline(id) = &a.disposition {
        part = part.cid(id.as_str());
    }
    part
}

/// Whether `bytes` start with a header block: header fields (a name of
/// printable ASCII without `:`, then `:`) and their folded lines, ended by
/// an empty line. Line endings are CRLF (checked by [`is_seven_bit`]).
fn is_header_block(bytes: &[u8]) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    bytes[..end]
        .split(|&b| b == b'\n')
        .enumerate()
        .all(|(i, line)| match line.first() {
            Some(b' ' | b'\t') => i > 0,
            _ => line.iter().position(|&b| b == b':').is_some_and(|colon| {
                colon > 0 && line[..colon].iter().all(|b| (33..=126).contains(b))
            }),
        })
}

/// Whether 7bit can carry `bytes` as they are (RFC 2045 section 2.7):
/// ASCII without NUL, CR and LF only as CRLF, lines of at most 998 octets.
fn is_seven_bit(bytes: &[u8]) -> bool {
    let mut line = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            0 | 0x80..=0xFF => return false,
            b'\r' if bytes.get(i + 1) != Some(&b'\n') => return false,
            b'\n' if i == 0 || bytes[i - 1] != b'\r' => return false,
            b'\n' => line = 0,
            b'\r' => {}
            _ => {
                line += 1;
                if line > 998 {
                    return false;
                }
            }
        }
    }
    true
}
