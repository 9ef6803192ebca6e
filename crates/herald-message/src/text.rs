//! The one check every header-bound string passes: no byte that could end a
//! header line or smuggle a new one. Kept in one place so that subjects,
//! display names, header values, filenames and content-ids agree.

use thiserror::Error;

/// Why a piece of header text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TextError {
    /// CR or LF: would end the header line and start another.
    #[error("contains a line break")]
    LineBreak,
    /// NUL: not allowed anywhere in a message (RFC 5322 section 2.2).
    #[error("contains a NUL byte")]
    Nul,
    /// Another control character (tab excepted).
    #[error("contains a control character")]
    Control,
    /// A character that changes the direction of the text around it or is
    /// not shown at all: a name holding one reads differently from what it
    /// is (`invoice\u{202E}fdp.exe` shows as `invoiceexe.pdf`).
    #[error("contains U+{0:04X}, an invisible or direction-changing character")]
    Invisible(u32),
}

/// Checks that `text` can stand inside one header line.
///
/// Tabs are allowed (they are folding white space); every other control
/// character, and above all CR, LF and NUL, is refused.
pub fn check_header_text(text: &str) -> Result<(), TextError> {
    for ch in text.chars() {
        match ch {
            '\r' | '\n' => return Err(TextError::LineBreak),
            '\0' => return Err(TextError::Nul),
            '\t' => {}
            c if c.is_control() => return Err(TextError::Control),
            _ => {}
        }
    }
    Ok(())
}

/// Checks that `text` holds no bidirectional control and no invisible
/// (default-ignorable) character: what a reader sees must be what the text
/// is (Unicode TR 36 section 2, TR 39 section 3.1). For names shown to a
/// reader: attachment file names and display names.
pub fn check_visible(text: &str) -> Result<(), TextError> {
    match text.chars().find(|&c| is_invisible(c)) {
        Some(c) => Err(TextError::Invisible(u32::from(c))),
        None => Ok(()),
    }
}

/// Bidirectional controls and the default-ignorable code points that
/// render as nothing (TR 39's list of characters to refuse in names).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'                    // soft hyphen
            | '\u{034F}'              // combining grapheme joiner
            | '\u{061C}'              // Arabic letter mark
            | '\u{115F}' | '\u{1160}' // Hangul fillers
            | '\u{17B4}' | '\u{17B5}' // Khmer inherent vowels
            | '\u{180B}'..='\u{180F}' // Mongolian selectors and vowel separator
            | '\u{200B}'..='\u{200F}' // zero width space, (non-)joiner, LRM, RLM
            | '\u{202A}'..='\u{202E}' // embeddings and overrides
            | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, isolates
            | '\u{3164}'              // Hangul filler
            | '\u{FEFF}'              // zero width no-break space (BOM)
            | '\u{FFA0}'              // halfwidth Hangul filler
            | '\u{FFF0}'..='\u{FFF8}' // unassigned specials
            | '\u{1BCA0}'..='\u{1BCA3}' // shorthand format controls
            | '\u{1D173}'..='\u{1D17A}' // musical format controls
            | '\u{E0000}'..='\u{E0FFF}' // tags and variation selectors supplement
    )
}

/// Rewrites every line ending (`\r\n`, lone `\r`, lone `\n`) as `\r\n`.
///
/// SMTP knows only CRLF; a lone CR or LF is where "SMTP smuggling" hides, so
/// bodies are normalised before they are encoded.
pub fn normalize_line_endings(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_refuses_line_breaks_nul_and_controls() {
        assert_eq!(check_header_text("plain ascii\tand 中文 ✉"), Ok(()));
        assert_eq!(check_header_text("a\rb"), Err(TextError::LineBreak));
        assert_eq!(check_header_text("a\nb"), Err(TextError::LineBreak));
        assert_eq!(check_header_text("a\r\nb"), Err(TextError::LineBreak));
        assert_eq!(check_header_text("a\0b"), Err(TextError::Nul));
        assert_eq!(check_header_text("a\u{7}b"), Err(TextError::Control));
        assert_eq!(check_header_text("a\u{85}b"), Err(TextError::Control));
    }

    #[test]
    fn visible_text_refuses_bidi_controls_and_invisible_characters() {
        assert_eq!(check_visible("Zoë 中文 ✉ (final).pdf"), Ok(()));
        for c in [
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{061C}',
            '\u{00AD}',
            '\u{E0041}',
        ] {
            let text = format!("invoice{c}fdp.exe");
            assert_eq!(
                check_visible(&text),
                Err(TextError::Invisible(u32::from(c))),
                "U+{:04X}",
                u32::from(c)
            );
        }
        assert_eq!(
            TextError::Invisible(0x202E).to_string(),
            "contains U+202E, an invisible or direction-changing character"
        );
    }

    #[test]
    fn line_endings_become_crlf() {
        assert_eq!(normalize_line_endings("a\nb\rc\r\nd"), "a\r\nb\r\nc\r\nd");
        assert_eq!(normalize_line_endings("\r\r\n\n"), "\r\n\r\n\r\n");
        assert_eq!(normalize_line_endings("no ending"), "no ending");
    }
}
