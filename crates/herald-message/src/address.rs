//! E-mail addresses as herald accepts them: an addr-spec (RFC 5321/5322,
//! with UTF-8 allowed per RFC 6531/6532) and an optional display name.
//! Built only by parsing, so nothing that could break a header gets in.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::text::{TextError, check_header_text, check_visible};

/// RFC 5321 section 4.5.3.1.1.
const MAX_LOCAL_PART: usize = 64;
/// RFC 5321 section 4.5.3.1.2.
const MAX_DOMAIN: usize = 255;
/// A path is at most 256 octets including the angle brackets.
const MAX_ADDRESS: usize = 254;
const MAX_LABEL: usize = 63;
/// Long enough for any real name, short enough to keep headers sane.
const MAX_DISPLAY_NAME: usize = 256;

/// Why a string is not an acceptable e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The string was empty or only white space.
    #[error("is empty")]
    Empty,
    /// A forbidden character anywhere in the string.
    #[error("{0}")]
    Text(#[from] TextError),
    /// No `@` between a local part and a domain.
    #[error("not an e-mail address: missing '@'")]
    MissingAt,
    /// The part before `@` is malformed.
    #[error("not an e-mail address: invalid local part")]
    InvalidLocalPart,
    /// The part before `@` is longer than 64 octets.
    #[error("not an e-mail address: local part longer than 64 octets")]
    LocalPartTooLong,
    /// The part after `@` is not a host name or address literal.
    #[error("not an e-mail address: invalid domain")]
    InvalidDomain,
    /// The whole address is longer than SMTP allows.
    #[error("not an e-mail address: longer than 254 octets")]
    TooLong,
    /// `Name <addr` without the closing bracket, or stray brackets.
    #[error("not an e-mail address: unbalanced angle brackets")]
    Brackets,
    /// A display name that is malformed (e.g. an unterminated quote).
    #[error("invalid display name")]
    DisplayName,
    /// A display name longer than herald accepts.
    #[error("display name longer than 256 characters")]
    DisplayNameTooLong,
}

/// A validated e-mail address with an optional display name.
///
/// The address part is `local@domain`; both may carry UTF-8 (SMTPUTF8). The
/// display name is any text without line breaks or control characters; it
/// is encoded per RFC 2047 when rendered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    name: Option<String>,
    address: String,
    at: usize,
}

impl EmailAddress {
    /// Parses `addr@example.com`, `<addr@example.com>`,
    /// `Name <addr@example.com>` or `"Last, First" <addr@example.com>`.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        check_header_text(input)?;
        let input = input.trim();
        if input.is_empty() {
            return Err(AddressError::Empty);
        }
        match input.rfind('<') {
            Some(open) => {
                let rest = &input[open + 1..];
                let close = rest.find('>').ok_or(AddressError::Brackets)?;
                if !rest[close + 1..].trim().is_empty() {
                    return Err(AddressError::Brackets);
                }
                let name = parse_display_name(&input[..open])?;
                let mut address = Self::parse_addr_spec(rest[..close].trim())?;
                address.name = name;
                Ok(address)
            }
            None if input.contains('>') => Err(AddressError::Brackets),
            None => Self::parse_addr_spec(input),
        }
    }

    /// Parses a bare `local@domain`, with no display name or brackets.
    pub fn parse_addr_spec(spec: &str) -> Result<Self, AddressError> {
        check_header_text(spec)?;
        if spec.is_empty() {
            return Err(AddressError::Empty);
        }
        let at = spec.rfind('@').ok_or(AddressError::MissingAt)?;
        let (local, domain) = (&spec[..at], &spec[at + 1..]);
        check_local_part(local)?;
        check_domain(domain)?;
        if spec.len() > MAX_ADDRESS {
            return Err(AddressError::TooLong);
        }
        Ok(Self {
            name: None,
            address: spec.to_owned(),
            at,
        })
    }

    /// The same address without its display name, as the envelope uses it.
    pub fn without_name(&self) -> Self {
        Self {
            name: None,
            ..self.clone()
        }
    }

    /// The display name, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The addr-spec, `local@domain`, as used in the SMTP envelope.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The part before the last `@`.
    pub fn local_part(&self) -> &str {
        &self.address[..self.at]
    }

    /// The part after the last `@`.
    pub fn domain(&self) -> &str {
        &self.address[self.at + 1..]
    }

    /// Whether sending to or from this address needs SMTPUTF8 (RFC 6531).
    pub fn needs_smtputf8(&self) -> bool {
        !self.address.is_ascii()
    }

    /// A key under which two spellings of one mailbox compare equal: the
    /// local part as written (it may be case-sensitive) and the domain in
    /// lower case.
    pub fn mailbox_key(&self) -> String {
        format!("{}@{}", self.local_part(), self.domain().to_lowercase())
    }
}

impl fmt::Display for EmailAddress {
    /// Writes the form `parse` reads back: `"Name" <addr>` or `addr`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            None => f.write_str(&self.address),
            Some(name) if name.chars().all(is_phrase_char) => {
                write!(f, "{name} <{}>", self.address)
            }
            Some(name) => {
                f.write_str("\"")?;
                for ch in name.chars() {
                    if ch == '"' || ch == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{ch}")?;
                }
                write!(f, "\" <{}>", self.address)
            }
        }
    }
}

impl FromStr for EmailAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = AddressError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl Serialize for EmailAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Characters a display name may show without quotes (atext, space, UTF-8).
fn is_phrase_char(ch: char) -> bool {
    ch == ' ' || is_atext(ch)
}

/// RFC 5322 atext, extended with every non-ASCII character (RFC 6532).
fn is_atext(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(ch) || !ch.is_ascii()
}

fn parse_display_name(raw: &str) -> Result<Option<String>, AddressError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let name = if let Some(inner) = raw.strip_prefix('"') {
        let inner = inner.strip_suffix('"').ok_or(AddressError::DisplayName)?;
        let mut name = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(ch) = chars.next() {
            match ch {
                '\\' => name.push(chars.next().ok_or(AddressError::DisplayName)?),
                '"' => return Err(AddressError::DisplayName),
                c => name.push(c),
            }
        }
        name
    } else {
        if raw.contains('"') || raw.contains('<') || raw.contains('>') {
            return Err(AddressError::DisplayName);
        }
        raw.to_owned()
    };
    check_header_text(&name)?;
    check_visible(&name)?;
    if name.chars().count() > MAX_DISPLAY_NAME {
        return Err(AddressError::DisplayNameTooLong);
    }
    let name = name.trim();
    Ok((!name.is_empty()).then(|| name.to_owned()))
}

fn check_local_part(local: &str) -> Result<(), AddressError> {
    if local.is_empty() {
        return Err(AddressError::InvalidLocalPart);
    }
    if local.len() > MAX_LOCAL_PART {
        return Err(AddressError::LocalPartTooLong);
    }
    if let Some(inner) = local.strip_prefix('"') {
        // quoted-string: printable ASCII (or UTF-8) with \-escapes.
        let inner = inner
            .strip_suffix('"')
            .ok_or(AddressError::InvalidLocalPart)?;
        let mut chars = inner.chars();
        while let Some(ch) = chars.next() {
            match ch {
                '\\' => {
                    chars.next().ok_or(AddressError::InvalidLocalPart)?;
                }
                '"' => return Err(AddressError::InvalidLocalPart),
                c if c == ' ' || c.is_ascii_graphic() || !c.is_ascii() => {}
                _ => return Err(AddressError::InvalidLocalPart),
            }
        }
        return Ok(());
    }
    // dot-atom: atoms of atext separated by single dots.
    if local
        .split('.')
        .any(|atom| atom.is_empty() || !atom.chars().all(is_atext))
    {
        return Err(AddressError::InvalidLocalPart);
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), AddressError> {
    if domain.is_empty() || domain.len() > MAX_DOMAIN {
        return Err(AddressError::InvalidDomain);
    }
    if let Some(literal) = domain.strip_prefix('[') {
        let literal = literal
            .strip_suffix(']')
            .ok_or(AddressError::InvalidDomain)?;
        let valid = match literal.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
            None => literal.parse::<Ipv4Addr>().is_ok(),
        };
        return if valid {
            Ok(())
        } else {
            Err(AddressError::InvalidDomain)
        };
    }
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    for label in domain.split('.') {
        let valid = !label.is_empty()
            && label.len() <= MAX_LABEL
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c.is_alphanumeric());
        if !valid {
            return Err(AddressError::InvalidDomain);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_applications_send() {
        let a = EmailAddress::parse("bob@example.com").unwrap();
        assert_eq!((a.name(), a.address()), (None, "bob@example.com"));

        let a = EmailAddress::parse("Alice <alice@example.com>").unwrap();
        assert_eq!(
            (a.name(), a.address()),
            (Some("Alice"), "alice@example.com")
        );

        let a = EmailAddress::parse(r#""Doe, \"JD\" John" <jd@example.org>"#).unwrap();
        assert_eq!(a.name(), Some(r#"Doe, "JD" John"#));

        let a = EmailAddress::parse("<x@example.net>").unwrap();
        assert_eq!((a.name(), a.address()), (None, "x@example.net"));

        let a = EmailAddress::parse("张三 <用户@例子.中国>").unwrap();
        assert_eq!(a.name(), Some("张三"));
        assert_eq!((a.local_part(), a.domain()), ("用户", "例子.中国"));
        assert!(a.needs_smtputf8());

        assert!(EmailAddress::parse("\"quoted local\"@example.com").is_ok());
        assert!(EmailAddress::parse("root@[127.0.0.1]").is_ok());
        assert!(EmailAddress::parse("root@[IPv6:::1]").is_ok());
        assert!(EmailAddress::parse("user+tag@localhost").is_ok());
    }

    #[test]
    fn refuses_malformed_addresses_with_a_reason() {
        let cases = [
            ("", AddressError::Empty),
            ("   ", AddressError::Empty),
            ("bob", AddressError::MissingAt),
            ("@example.com", AddressError::InvalidLocalPart),
            ("bob@", AddressError::InvalidDomain),
            ("bob..x@example.com", AddressError::InvalidLocalPart),
            (".bob@example.com", AddressError::InvalidLocalPart),
            ("bo b@example.com", AddressError::InvalidLocalPart),
            ("bob@exa mple.com", AddressError::InvalidDomain),
            ("bob@-example.com", AddressError::InvalidDomain),
            ("bob@example..com", AddressError::InvalidDomain),
            ("bob@[300.1.1.1]", AddressError::InvalidDomain),
            ("Bob <bob@example.com", AddressError::Brackets),
            ("Bob <bob@example.com> trailing", AddressError::Brackets),
            ("bob@example.com>", AddressError::Brackets),
            ("\"Bob <bob@example.com>", AddressError::DisplayName),
            (
                "bob\r\n@example.com",
                AddressError::Text(TextError::LineBreak),
            ),
            (
                "Bob\n <bob@example.com>",
                AddressError::Text(TextError::LineBreak),
            ),
            (
                "Bob\0 <bob@example.com>",
                AddressError::Text(TextError::Nul),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(EmailAddress::parse(input), Err(want), "{input:?}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(
            EmailAddress::parse(&long_local),
            Err(AddressError::LocalPartTooLong)
        );
        let long = format!(
            "{}@{}.com",
            "a".repeat(10),
            vec!["b".repeat(60); 4].join(".")
        );
        assert_eq!(EmailAddress::parse(&long), Err(AddressError::TooLong));
    }

    #[test]
    fn display_reads_back_as_the_same_address() {
        for input in [
            "bob@example.com",
            "Alice Liddell <alice@example.com>",
            r#""Doe, \"JD\" John" <jd@example.org>"#,
            "张三 <zhang@example.cn>",
            "\"a\\\\b\" <x@example.com>",
        ] {
            let parsed = EmailAddress::parse(input).unwrap();
            let again = EmailAddress::parse(&parsed.to_string()).unwrap();
            assert_eq!(parsed, again, "{input}");
        }
    }

    #[test]
    fn serde_cannot_build_an_invalid_address() {
        let ok: EmailAddress = serde_json::from_str("\"A <a@example.com>\"").unwrap();
        assert_eq!(ok.address(), "a@example.com");
        let err = serde_json::from_str::<EmailAddress>("\"a\\r\\nBcc: x@evil.com\"").unwrap_err();
        assert!(err.to_string().contains("line break"), "{err}");
    }

    #[test]
    fn mailbox_key_folds_domain_case_only() {
        let a = EmailAddress::parse("Bob@Example.COM").unwrap();
        let b = EmailAddress::parse("Bob@example.com").unwrap();
        let c = EmailAddress::parse("bob@example.com").unwrap();
        assert_eq!(a.mailbox_key(), b.mailbox_key());
        assert_ne!(a.mailbox_key(), c.mailbox_key());
    }
}
