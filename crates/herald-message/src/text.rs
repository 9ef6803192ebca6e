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
    fn line_endings_become_crlf() {
        assert_eq!(normalize_line_endings("a\nb\rc\r\nd"), "a\r\nb\r\nc\r\nd");
        assert_eq!(normalize_line_endings("\r\r\n\n"), "\r\n\r\n\r\n");
        assert_eq!(normalize_line_endings("no ending"), "no ending");
    }
}
