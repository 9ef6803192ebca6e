//! Attachments: the bytes, the media type they claim, the name a reader
//! sees, and whether they are files or images shown inside the HTML.

use std::fmt;

use thiserror::Error;

use crate::text::{TextError, check_header_text, check_visible};

const MAX_FILENAME: usize = 255;
const MAX_CONTENT_ID: usize = 250;

/// Why an attachment's name, type or content-id was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AttachmentError {
    /// A forbidden character.
    #[error("{0}")]
    Text(#[from] TextError),
    /// An empty value where one is needed.
    #[error("is empty")]
    Empty,
    /// A file name over 255 characters.
    #[error("longer than 255 characters")]
    FilenameTooLong,
    /// Not `type/subtype` (each a token of at most 127 characters) with an
    /// optional `; charset=…`.
    #[error("not a media type (expected type/subtype, optionally ; charset=NAME)")]
    MediaType,
    /// A parameter other than `charset`.
    #[error("parameter {0:?} is not allowed: only charset (herald writes name= itself)")]
    Parameter(String),
    /// A `charset` that is not a charset name, or given twice.
    #[error("charset must be given once, as a charset name (RFC 2978) of at most 40 characters")]
    Charset,
    /// A `multipart/*` type would break the message's MIME structure.
    #[error("multipart types cannot be attached")]
    Multipart,
    /// A content-id with characters a `cid:` URL or msg-id cannot hold.
    #[error("invalid content-id (printable ASCII without spaces, quotes or brackets)")]
    ContentId,
}

/// A validated attachment file name (UTF-8, one line).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Filename(String);

impl Filename {
    /// Validates a file name.
    pub fn new(name: &str) -> Result<Self, AttachmentError> {
        check_header_text(name)?;
        check_visible(name)?;
        let name = name.trim();
        if name.is_empty() {
            return Err(AttachmentError::Empty);
        }
        if name.chars().count() > MAX_FILENAME {
            return Err(AttachmentError::FilenameTooLong);
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated media type, `type/subtype` with at most a `charset`
/// parameter, such as `application/pdf` or `text/csv; charset=utf-8`.
///
/// Other parameters are refused: herald writes `name=` itself, and a
/// parameter of any length would let one header line grow past the 998
/// octets RFC 5322 allows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaType(String);

impl MediaType {
    /// Parses and validates a media type (RFC 2045 section 5.1, with the
    /// name lengths of RFC 6838 section 4.2 and the charset names of
    /// RFC 2978).
    pub fn parse(raw: &str) -> Result<Self, AttachmentError> {
        check_header_text(raw)?;
        let mut pieces = raw.split(';');
        let essence = pieces.next().unwrap_or_default().trim();
        let (kind, subtype) = essence.split_once('/').ok_or(AttachmentError::MediaType)?;
        if !is_name(kind) || !is_name(subtype) {
            return Err(AttachmentError::MediaType);
        }
        if kind.eq_ignore_ascii_case("multipart") {
            return Err(AttachmentError::Multipart);
        }
        let mut normalized = essence.to_ascii_lowercase();
        let mut charset = false;
        for param in pieces {
            let (name, value) = param
                .trim()
                .split_once('=')
                .ok_or(AttachmentError::MediaType)?;
            let (name, value) = (name.trim(), value.trim());
            if !name.eq_ignore_ascii_case("charset") {
                return Err(AttachmentError::Parameter(printable(name)));
            }
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            if charset || !is_charset(value) {
                return Err(AttachmentError::Charset);
            }
            charset = true;
            normalized.push_str("; charset=");
            normalized.push_str(&value.to_ascii_lowercase());
        }
        Ok(Self(normalized))
    }

    /// Guesses the media type from a file name's extension, falling back
    /// to `application/octet-stream`.
    pub fn guess(filename: &str) -> Self {
        let guess = mime_guess::from_path(filename).first_or_octet_stream();
        Self::parse(guess.essence_str())
            .unwrap_or_else(|_| Self("application/octet-stream".to_owned()))
    }

    /// The media type, lower-cased type and subtype, parameters as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is an `image/*` type.
    pub fn is_image(&self) -> bool {
        self.0.starts_with("image/")
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated Content-ID, without angle brackets: what `cid:` URLs in the
/// HTML refer to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContentId(String);

impl ContentId {
    /// Validates a content-id; surrounding `<` `>` are accepted and removed.
    pub fn new(raw: &str) -> Result<Self, AttachmentError> {
        check_header_text(raw)?;
        let raw = raw.trim();
        let id = raw
            .strip_prefix('<')
            .and_then(|r| r.strip_suffix('>'))
            .unwrap_or(raw);
        if id.is_empty() {
            return Err(AttachmentError::Empty);
        }
        let valid = id.len() <= MAX_CONTENT_ID
            && id
                .chars()
                .all(|c| c.is_ascii_graphic() && !"<>\"\\()[],;:".contains(c));
        if !valid {
            return Err(AttachmentError::ContentId);
        }
        Ok(Self(id.to_owned()))
    }

    /// The id, without brackets.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How an attachment is presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// A file the reader can save.
    Attachment,
    /// A part shown inside the HTML body, referenced as `cid:<id>`.
    Inline(ContentId),
}

/// A validated attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The name shown to the reader; always present for regular attachments.
    pub filename: Option<Filename>,
    /// What the bytes are.
    pub content_type: MediaType,
    /// The decoded bytes.
    pub content: Vec<u8>,
    /// Regular or inline.
    pub disposition: Disposition,
}

impl Attachment {
    /// The content-id, for inline parts.
    pub fn content_id(&self) -> Option<&ContentId> {
        match &self.disposition {
            Disposition::Inline(id) => Some(id),
            Disposition::Attachment => None,
        }
    }
}

/// Longest type or subtype name (RFC 6838 section 4.2).
const MAX_NAME: usize = 127;
/// Longest charset name (RFC 2978 section 2.3).
const MAX_CHARSET: usize = 40;

/// RFC 2045 token: printable ASCII except space and tspecials.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c))
}

/// A type or subtype name: a token of at most [`MAX_NAME`] characters.
fn is_name(s: &str) -> bool {
    s.len() <= MAX_NAME && is_token(s)
}

/// An RFC 2978 mime-charset: letters, digits and the marks it allows.
fn is_charset(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CHARSET
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'+-^_`{}~".contains(c))
}

/// A parameter name safe to quote in an error: at most 40 characters.
fn printable(name: &str) -> String {
    name.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_validated_and_normalised() {
        assert_eq!(
            MediaType::parse("application/pdf").unwrap().as_str(),
            "application/pdf"
        );
        assert_eq!(
            MediaType::parse(" Text/CSV ;charset=utf-8")
                .unwrap()
                .as_str(),
            "text/csv; charset=utf-8"
        );
        assert_eq!(
            MediaType::parse("text/plain; Charset=\"UTF-8\"")
                .unwrap()
                .as_str(),
            "text/plain; charset=utf-8"
        );
        for bad in [
            "pdf",
            "application/",
            "/pdf",
            "a b/c",
            "text/plain; charset",
            &format!("{}/pdf", "a".repeat(128)),
            &format!("application/{}", "a".repeat(128)),
        ] {
            assert_eq!(
                MediaType::parse(bad),
                Err(AttachmentError::MediaType),
                "{bad}"
            );
        }
        assert!(MediaType::parse(&format!("{0}/{0}", "a".repeat(127))).is_ok());
        for (bad, error) in [
            (
                "text/plain; name=\"a b\"",
                AttachmentError::Parameter("name".into()),
            ),
            ("text/plain; x=\"a", AttachmentError::Parameter("x".into())),
            (
                "text/plain; format=flowed",
                AttachmentError::Parameter("format".into()),
            ),
            ("text/plain; charset=\"a b\"", AttachmentError::Charset),
            (
                "text/plain; charset=utf-8; charset=latin1",
                AttachmentError::Charset,
            ),
            ("text/plain; charset=", AttachmentError::Charset),
        ] {
            assert_eq!(MediaType::parse(bad), Err(error), "{bad}");
        }
        let long_charset = format!("text/plain; charset={}", "a".repeat(41));
        assert_eq!(
            MediaType::parse(&long_charset),
            Err(AttachmentError::Charset)
        );
        assert_eq!(
            MediaType::parse("multipart/mixed"),
            Err(AttachmentError::Multipart)
        );
        assert_eq!(
            MediaType::parse("text/plain\r\nBcc: x@y"),
            Err(AttachmentError::Text(TextError::LineBreak))
        );
    }

    #[test]
    fn media_type_is_guessed_from_the_extension() {
        assert_eq!(MediaType::guess("报告.pdf").as_str(), "application/pdf");
        assert_eq!(MediaType::guess("logo.PNG").as_str(), "image/png");
        assert_eq!(
            MediaType::guess("noext").as_str(),
            "application/octet-stream"
        );
    }

    #[test]
    fn content_ids_and_filenames_refuse_injection() {
        assert_eq!(ContentId::new("<logo@x>").unwrap().as_str(), "logo@x");
        assert_eq!(ContentId::new("logo").unwrap().as_str(), "logo");
        assert_eq!(ContentId::new("lo go"), Err(AttachmentError::ContentId));
        assert_eq!(ContentId::new("lo>go"), Err(AttachmentError::ContentId));
        assert_eq!(
            ContentId::new("a\r\nb"),
            Err(AttachmentError::Text(TextError::LineBreak))
        );
        assert_eq!(
            ContentId::new("a\0"),
            Err(AttachmentError::Text(TextError::Nul))
        );
        assert_eq!(
            Filename::new("a\nb.pdf"),
            Err(AttachmentError::Text(TextError::LineBreak))
        );
        assert_eq!(
            Filename::new("a\0.pdf"),
            Err(AttachmentError::Text(TextError::Nul))
        );
        assert_eq!(Filename::new("  "), Err(AttachmentError::Empty));
        assert!(Filename::new("季度报告 (final).pdf").is_ok());
    }
}
