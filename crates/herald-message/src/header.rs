//! Custom header names and values, validated so that no application can
//! inject a header line or override one that herald owns.

use std::fmt;

use thiserror::Error;

use crate::text::{TextError, check_header_text};

/// RFC 5322 recommends 78, requires at most 998 octets a line; a name must
/// leave room for its value on the first line.
const MAX_NAME: usize = 76;
/// Values are folded or encoded when rendered; this bounds what one header
/// may add to a message.
const MAX_VALUE: usize = 4096;

/// Headers that herald writes itself (or that belong to the MIME structure
/// or to the transport); an application may not set them.
const RESERVED: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "message-id",
    "date",
    "mime-version",
    "sender",
    "reply-to",
    "return-path",
    "received",
    // Trace and authentication results that receivers add and trust: a
    // sender-set one could fake a passed check (RFC 8601, 8617, 7208).
    "authentication-results",
    "dkim-signature",
    "received-spf",
    // Read receipts to an address the recipient never saw.
    "disposition-notification-to",
    "return-receipt-to",
];

/// Prefixes of reserved names: the content headers of the MIME structure,
/// herald's own, the ARC set (RFC 8617) and the resent block (RFC 5322
/// section 3.6.6).
const RESERVED_PREFIXES: &[&str] = &["content-", "x-herald-", "arc-", "resent-"];

/// Why a header name or value was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// An empty name.
    #[error("header name is empty")]
    EmptyName,
    /// A name with a character outside printable ASCII, or a colon.
    #[error("header name contains {0:?}, which is not allowed in a header name")]
    NameChar(char),
    /// A name longer than 76 characters.
    #[error("header name longer than 76 characters")]
    NameTooLong,
    /// A name herald sets itself.
    #[error("header {0} may not be set; herald sets it")]
    Reserved(String),
    /// A forbidden character in a value.
    #[error("{0}")]
    Text(#[from] TextError),
    /// A value longer than 4096 bytes.
    #[error("header value longer than 4096 bytes")]
    ValueTooLong,
}

/// A header field name: printable ASCII without `:` (RFC 5322 ftext).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderName(String);

impl HeaderName {
    /// Validates a header field name.
    pub fn new(name: &str) -> Result<Self, HeaderError> {
        if name.is_empty() {
            return Err(HeaderError::EmptyName);
        }
        if let Some(bad) = name.chars().find(|&c| !(c.is_ascii_graphic() && c != ':')) {
            return Err(HeaderError::NameChar(bad));
        }
        if name.len() > MAX_NAME {
            return Err(HeaderError::NameTooLong);
        }
        Ok(Self(name.to_owned()))
    }

    /// Validates a name that an application may set: as [`HeaderName::new`],
    /// and not one of the headers herald writes itself, nor `Content-*`, nor
    /// `X-Herald-*` (herald's own trace headers).
    pub fn custom(name: &str) -> Result<Self, HeaderError> {
        let name = Self::new(name)?;
        if name.is_reserved() {
            return Err(HeaderError::Reserved(name.0));
        }
        Ok(name)
    }

    /// Whether herald owns this header (see [`HeaderName::custom`]).
    pub fn is_reserved(&self) -> bool {
        let lower = self.0.to_ascii_lowercase();
        RESERVED.contains(&lower.as_str()) || RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An unstructured header value: any UTF-8 text on one line. Non-ASCII is
/// encoded (RFC 2047) and long values are folded when rendered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderValue(String);

impl HeaderValue {
    /// Validates a header value.
    pub fn new(value: &str) -> Result<Self, HeaderError> {
        check_header_text(value)?;
        if value.len() > MAX_VALUE {
            return Err(HeaderError::ValueTooLong);
        }
        Ok(Self(value.to_owned()))
    }

    /// The value as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_ftext_only() {
        assert!(HeaderName::new("X-Campaign").is_ok());
        assert!(HeaderName::new("List-Unsubscribe").is_ok());
        assert_eq!(HeaderName::new(""), Err(HeaderError::EmptyName));
        assert_eq!(HeaderName::new("X-A:b"), Err(HeaderError::NameChar(':')));
        assert_eq!(HeaderName::new("X A"), Err(HeaderError::NameChar(' ')));
        assert_eq!(
            HeaderName::new("X-A\r\nBcc"),
            Err(HeaderError::NameChar('\r'))
        );
        assert_eq!(HeaderName::new("X-\n"), Err(HeaderError::NameChar('\n')));
        assert_eq!(HeaderName::new("X-\0"), Err(HeaderError::NameChar('\0')));
        assert_eq!(HeaderName::new("X-é"), Err(HeaderError::NameChar('é')));
        assert_eq!(
            HeaderName::new(&"X".repeat(77)),
            Err(HeaderError::NameTooLong)
        );
    }

    #[test]
    fn reserved_names_cannot_be_set_in_any_case() {
        for name in [
            "From",
            "to",
            "CC",
            "Bcc",
            "Subject",
            "Message-ID",
            "message-id",
            "Date",
            "MIME-Version",
            "Content-Type",
            "content-transfer-encoding",
            "Content-Disposition",
            "Sender",
            "Reply-To",
            "Return-Path",
            "Received",
            "X-Herald-Trace-Id",
            "Authentication-Results",
            "DKIM-Signature",
            "dkim-signature",
            "ARC-Seal",
            "ARC-Message-Signature",
            "ARC-Authentication-Results",
            "arc-anything-new",
            "Received-SPF",
            "Resent-From",
            "Resent-Message-ID",
            "resent-date",
            "Disposition-Notification-To",
            "Return-Receipt-To",
        ] {
            assert_eq!(
                HeaderName::custom(name),
                Err(HeaderError::Reserved(name.to_owned())),
                "{name}"
            );
        }
        assert!(HeaderName::custom("X-Content").is_ok());
        assert!(HeaderName::custom("List-Unsubscribe-Post").is_ok());
        // Only the prefixes are reserved, not every name that contains them.
        assert!(HeaderName::custom("X-ARC-Note").is_ok());
        assert!(HeaderName::custom("Archive").is_ok());
        assert!(HeaderName::custom("X-Resent").is_ok());
    }

    #[test]
    fn values_cannot_carry_line_breaks() {
        assert!(HeaderValue::new("welcome 欢迎 ✉").is_ok());
        assert_eq!(
            HeaderValue::new("x\r\nBcc: a@evil.com"),
            Err(HeaderError::Text(TextError::LineBreak))
        );
        assert_eq!(
            HeaderValue::new("x\n"),
            Err(HeaderError::Text(TextError::LineBreak))
        );
        assert_eq!(
            HeaderValue::new("x\r"),
            Err(HeaderError::Text(TextError::LineBreak))
        );
        assert_eq!(
            HeaderValue::new("x\0"),
            Err(HeaderError::Text(TextError::Nul))
        );
        assert_eq!(
            HeaderValue::new(&"v".repeat(4097)),
            Err(HeaderError::ValueTooLong)
        );
    }
}
