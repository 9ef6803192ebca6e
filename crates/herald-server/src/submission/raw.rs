//! A message given as RFC 5322 bytes (over SMTP, or `POST
//! /v1/messages/raw`) made ready for the queue: line endings CRLF, a
//! `Message-ID` and a `Date` added when missing, `Bcc` and
//! `X-Herald-Tags` removed (the tags kept apart), everything else as
//! given.

use herald_message::{EmailAddress, check_header_text, message_id_for};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

/// The longest line RFC 5322 §2.1.1 allows, without its CRLF.
const MAX_LINE: usize = 998;
/// The most tags one `X-Herald-Tags` header may carry (as the API).
const MAX_TAGS: usize = 20;
/// The longest tag, in characters (as the API).
const MAX_TAG_CHARS: usize = 128;
/// The header that carries tags; removed before delivery.
pub(crate) const TAGS_HEADER: &str = "X-Herald-Tags";

/// A message ready for [`herald_store::NewMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prepared {
    /// The bytes to deliver.
    pub(crate) bytes: Vec<u8>,
    /// The Message-ID, with angle brackets.
    pub(crate) message_id: String,
    /// Tags from `X-Herald-Tags`.
    pub(crate) tags: Vec<String>,
    /// Whether the header carries raw UTF-8.
    pub(crate) utf8_headers: bool,
}

/// Why a message was refused; the text is for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawError(pub(crate) String);

/// Prepares `raw` (already unstuffed, any line endings) as message `id`
/// from envelope sender `sender`, accepted at `now`.
pub(crate) fn prepare(
    raw: &[u8],
    id: &str,
    sender: Option<&EmailAddress>,
    now: OffsetDateTime,
) -> Result<Prepared, RawError> {
    let text = crlf(raw);
    let (head, body) = split_header(&text);
    let fields = fields(head)?;
    let mut out = Vec::with_capacity(text.len() + 128);
    let mut message_id = None;
    let mut has_date = false;
    let mut tags = Vec::new();
    let mut kept = Vec::with_capacity(head.len());
    for field in &fields {
        let name = field.name;
        if name.eq_ignore_ascii_case("bcc") {
            continue;
        }
        if name.eq_ignore_ascii_case(TAGS_HEADER) {
            tags.extend(parse_tags(field.value)?);
            continue;
        }
        if name.eq_ignore_ascii_case("message-id") {
            if message_id.is_some() {
                return Err(RawError("more than one Message-ID header".into()));
            }
            let value = unfold(field.value);
            let value = value.trim();
            if !(value.starts_with('<') && value.ends_with('>') && value.len() > 2)
                || value.contains(char::is_whitespace)
            {
                return Err(RawError(format!(
                    "Message-ID {value:?} is not of the form <id@domain>"
                )));
            }
            message_id = Some(value.to_owned());
        }
        if name.eq_ignore_ascii_case("date") {
            has_date = true;
        }
        kept.extend_from_slice(field.raw);
    }
    if tags.len() > MAX_TAGS {
        return Err(RawError(format!(
            "{TAGS_HEADER}: too many tags (at most {MAX_TAGS})"
        )));
    }
    let message_id = match message_id {
        Some(id) => id,
        None => {
            let generated = match sender {
                Some(from) => format!("<{}>", message_id_for(id, from)),
                None => format!("<{id}@herald.invalid>"),
            };
            out.extend_from_slice(format!("Message-ID: {generated}\r\n").as_bytes());
            generated
        }
    };
    if !has_date {
        let date = now
            .format(&Rfc2822)
            .map_err(|_| RawError("cannot format the current date".into()))?;
        out.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
    }
    let utf8_headers = !kept.is_ascii();
    out.extend_from_slice(&kept);
    out.extend_from_slice(body);
    Ok(Prepared {
        bytes: out,
        message_id,
        tags,
        utf8_headers,
    })
}

/// Every line ending made CRLF: a lone LF or a lone CR becomes CRLF, so
/// that no bare line ending reaches a relay (where `\n.\n` could end the
/// DATA early on a lenient server).
pub(crate) fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 64 + 2);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if raw.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// The header section (each line with its CRLF, without the blank line)
/// and the rest (from the blank line on).
fn split_header(text: &[u8]) -> (&[u8], &[u8]) {
    if text.starts_with(b"\r\n") {
        return (&[], text);
    }
    match text.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(pos) => text.split_at(pos + 2),
        None => (text, &[]),
    }
}

/// One header field: its name, its (folded) value, and its raw lines.
struct Field<'a> {
    name: &'a str,
    value: &'a str,
    raw: &'a [u8],
}

/// The header section's fields; a line that is neither a field nor a
/// continuation, a name that is not printable ASCII, or a line over 998
/// octets is refused (no header injection, nothing a relay would choke on).
fn fields(head: &[u8]) -> Result<Vec<Field<'_>>, RawError> {
    let text =
        std::str::from_utf8(head).map_err(|_| RawError("the header is not valid UTF-8".into()))?;
    // (start, length of the name, end) of each field, in `text`.
    let mut spans: Vec<(usize, usize, usize)> = Vec::new();
    let mut start = 0;
    for line in text.split_inclusive("\r\n") {
        let end = start + line.len();
        let content = line.trim_end_matches("\r\n");
        if content.len() > MAX_LINE {
            return Err(RawError(format!(
                "a header line is longer than {MAX_LINE} octets"
            )));
        }
        if content.starts_with([' ', '\t']) {
            let Some(last) = spans.last_mut() else {
                return Err(RawError(
                    "the header starts with a continuation line".into(),
                ));
            };
            last.2 = end;
        } else {
            let Some((name, _)) = content.split_once(':') else {
                return Err(RawError(format!(
                    "header line {:?} has no field name",
                    shorten(content)
                )));
            };
            if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b)) {
                return Err(RawError(format!(
                    "header field name {:?} is not printable ASCII",
                    shorten(name)
                )));
            }
            spans.push((start, name.len(), end));
        }
        start = end;
    }
    Ok(spans
        .into_iter()
        .map(|(start, name, end)| Field {
            name: &text[start..start + name],
            value: &text[start + name + 1..end],
            raw: &head[start..end],
        })
        .collect())
}

/// The first 40 characters, for error messages.
fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

/// A folded value on one line.
fn unfold(value: &str) -> String {
    value.replace("\r\n", "")
}

/// `X-Herald-Tags: a, b, c`.
fn parse_tags(value: &str) -> Result<Vec<String>, RawError> {
    let value = unfold(value);
    let mut tags = Vec::new();
    for tag in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        check_header_text(tag).map_err(|e| RawError(format!("{TAGS_HEADER}: {e}")))?;
        if tag.chars().count() > MAX_TAG_CHARS {
            return Err(RawError(format!(
                "{TAGS_HEADER}: a tag is longer than {MAX_TAG_CHARS} characters"
            )));
        }
        tags.push(tag.to_owned());
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    fn sender() -> EmailAddress {
        EmailAddress::parse_addr_spec("app@example.com").unwrap()
    }

    #[test]
    fn adds_message_id_and_date_strips_bcc_and_tags() {
        let raw = b"From: a@example.com\nTo: b@example.org\nBcc: secret@example.net,\n  other@example.net\nX-Herald-Tags: welcome, signup\nSubject: hi\n\nbody\n.line\n";
        let p = prepare(raw, "01ID", Some(&sender()), now()).unwrap();
        let text = String::from_utf8(p.bytes).unwrap();
        assert_eq!(
            text,
            "Message-ID: <01ID@example.com>\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
             From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n.line\r\n"
        );
        assert_eq!(p.message_id, "<01ID@example.com>");
        assert_eq!(p.tags, vec!["welcome", "signup"]);
        assert!(!p.utf8_headers);
    }

    #[test]
    fn keeps_what_is_there() {
        let raw = b"Message-ID: <x@y>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: =?utf-8?q?h=C3=A9?=\r\n\r\nb\r\n";
        let p = prepare(raw, "01ID", None, now()).unwrap();
        assert_eq!(p.bytes, raw.to_vec());
        assert_eq!(p.message_id, "<x@y>");
    }

    #[test]
    fn bare_line_endings_become_crlf() {
        assert_eq!(
            crlf(b"a\n.\nb\r.\rc\r\n"),
            b"a\r\n.\r\nb\r\n.\r\nc\r\n".to_vec()
        );
    }

    #[test]
    fn refuses_malformed_headers() {
        for raw in [
            &b"From: a@b\r\nnot a header\r\n\r\nbody"[..],
            b" folded first: x\r\n\r\n",
            b"Message-ID: <a@b>\r\nMessage-ID: <c@d>\r\n\r\n",
            b"Message-ID: nobrackets\r\n\r\n",
            b"Bad Name: x\r\n\r\n",
        ] {
            assert!(prepare(raw, "01ID", None, now()).is_err(), "{raw:?}");
        }
        let long = format!("Subject: {}\r\n\r\n", "x".repeat(1000));
        assert!(prepare(long.as_bytes(), "01ID", None, now()).is_err());
        let tags = format!("X-Herald-Tags: {}\r\n\r\n", "t,".repeat(21));
        assert!(prepare(tags.as_bytes(), "01ID", None, now()).is_err());
    }

    #[test]
    fn utf8_headers_are_noticed() {
        let raw = "Subject: héllo\r\n\r\nbody".as_bytes();
        let p = prepare(raw, "01ID", None, now()).unwrap();
        assert!(p.utf8_headers);
        assert!(p.message_id.ends_with("@herald.invalid>"));
    }
}
