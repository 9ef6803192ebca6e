//! Header encodings herald writes itself where mail-builder would write
//! text as it is: values that only look like RFC 2047 encoded words
//! (`=?utf-8?B?Zm9v?=` is plain ASCII, so mail-builder leaves it alone, and
//! every reader then decodes it to `foo`), and the legacy `name=` fallback.
//! Any value holding `=?` is therefore written encoded, so that readers
//! decode it back to exactly what was given.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Whether readers could take part of `text` for an encoded word.
pub(super) fn looks_encoded(text: &str) -> bool {
    text.contains("=?")
}

/// `text` as RFC 2047 "B" words, one per folded line, each at most 45
/// bytes of UTF-8 (60 characters of base64: a line well under 78).
pub(super) fn b_words(text: &str) -> String {
    const CHUNK: usize = 45;
    let mut words = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + CHUNK).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        words.push(format!(
            "=?utf-8?B?{}?=",
            STANDARD.encode(&text[start..end])
        ));
        start = end;
    }
    words.join("\r\n ")
}

/// Whether `name` can be written as a short quoted string that every
/// reader takes as it is: printable ASCII without quotes, backslashes or
/// `=?`, short enough never to be folded.
pub(super) fn is_plain_name(name: &str) -> bool {
    name.len() <= 60
        && !looks_encoded(name)
        && name
            .chars()
            .all(|c| (c.is_ascii_graphic() || c == ' ') && c != '"' && c != '\\')
}

/// The `name` parameter value: a quoted string when the name is short
/// printable ASCII that cannot be mistaken for an encoded word, otherwise
/// RFC 2047 "B" words in quotes (what Outlook and other older readers
/// look for; RFC 2231 is written in Content-Disposition).
pub(super) fn legacy_name_parameter(name: &str) -> String {
    if is_plain_name(name) {
        return format!("\"{name}\"");
    }
    format!("\"{}\"", b_words(name))
}

/// `key*=utf-8''…` (RFC 2231 section 4), split into numbered sections
/// (`key*0*=`, `key*1*=`, …) on folded lines when long. Every byte that is
/// not an attribute-char is percent-encoded, so `=?` cannot survive.
pub(super) fn extended_parameter(key: &str, value: &str) -> String {
    // Characters of encoded value per section: a line under 78.
    const SECTION: usize = 50;
    let mut sections = vec![String::new()];
    // A character's bytes stay in one section: readers such as mail-parser
    // decode each section on its own (found by fuzzing).
    for ch in value.chars() {
        let mut piece = String::new();
        for &byte in ch.encode_utf8(&mut [0; 4]).as_bytes() {
            if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
                piece.push(char::from(byte));
            } else {
                piece.push_str(&format!("%{byte:02X}"));
            }
        }
        let last = sections.len() - 1;
        if sections[last].len() + piece.len() > SECTION {
            sections.push(String::new());
        }
        let last = sections.len() - 1;
        sections[last].push_str(&piece);
    }
    if sections.len() == 1 {
        return format!("{key}*=utf-8''{}", sections[0]);
    }
    sections
        .iter()
        .enumerate()
        .map(|(i, section)| {
            let charset = if i == 0 { "utf-8''" } else { "" };
            format!("{key}*{i}*={charset}{section}")
        })
        .collect::<Vec<_>>()
        .join(";\r\n ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_parameters_percent_encode_and_split() {
        assert_eq!(
            extended_parameter("filename", "=?a b?=.txt"),
            "filename*=utf-8''%3D%3Fa%20b%3F%3D.txt"
        );
        let long = extended_parameter("filename", &format!("a{}", "é".repeat(30)));
        let lines: Vec<_> = long.split("\r\n ").collect();
        assert_eq!(lines.len(), 4, "{long}");
        assert!(lines[0].starts_with("filename*0*=utf-8''a%C3%A9"), "{long}");
        // No character is split between sections.
        assert!(
            lines
                .iter()
                .all(|l| l.trim_end_matches(';').ends_with("%A9")),
            "{long}"
        );
        assert!(lines[1].starts_with("filename*1*=%C3%A9"), "{long}");
        assert!(lines.iter().all(|l| l.len() < 78), "{long}");
    }

    #[test]
    fn b_words_split_on_character_boundaries() {
        let text = "é".repeat(40);
        let words = b_words(&text);
        assert_eq!(words.matches("=?utf-8?B?").count(), 2);
        assert!(words.split("\r\n ").all(|w| w.len() <= 72), "{words}");
    }
}
