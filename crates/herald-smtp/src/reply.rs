//! SMTP replies: the three-digit code, the RFC 3463 enhanced status code
//! when the server gives one, and the text. Framing (finding where a
//! multi-line reply ends) lives here too, so the session code only ever
//! sees whole replies.

use std::fmt;

/// Longest reply line we accept (RFC 5321 section 4.5.3.1.5 says 512;
/// real servers send longer EHLO lines, so allow some slack).
pub(crate) const MAX_LINE: usize = 4096;
/// Most lines one reply may have (EHLO replies are the longest).
const MAX_LINES: usize = 128;

/// An RFC 3463 enhanced status code, `class.subject.detail`, e.g. `5.1.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent).
    pub class: u8,
    /// The subject (1 addressing, 2 mailbox, 3 mail system, 4 network,
    /// 5 protocol, 6 content, 7 security/policy).
    pub subject: u16,
    /// The detail within the subject.
    pub detail: u16,
}

impl EnhancedCode {
    /// Parses `x.y.z` at the start of `text`; returns the code and the rest.
    fn parse_prefix(text: &str) -> Option<(Self, &str)> {
        let end = text.find(' ').unwrap_or(text.len());
        let mut parts = text[..end].split('.');
        let class: u8 = parts.next()?.parse().ok()?;
        let subject: u16 = parts.next()?.parse().ok()?;
        let detail: u16 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || !matches!(class, 2 | 4 | 5) || subject > 999 || detail > 999 {
            return None;
        }
        Some((
            Self {
                class,
                subject,
                detail,
            },
            text[end..].trim_start(),
        ))
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One complete SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    enhanced: Option<EnhancedCode>,
    lines: Vec<String>,
}

impl Reply {
    /// Builds a reply (for tests and synthetic outcomes).
    pub fn new(code: u16, enhanced: Option<EnhancedCode>, text: &str) -> Self {
        Self {
            code,
            enhanced,
            lines: text.lines().map(str::to_owned).collect(),
        }
    }

    /// The three-digit reply code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The enhanced status code of the first line, if the server sent one.
    pub fn enhanced_code(&self) -> Option<EnhancedCode> {
        self.enhanced
    }

    /// The text lines, without codes.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The text, lines joined by a space.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx: the server waits for more (354 after DATA, 334 during AUTH).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }
}

impl fmt::Display for Reply {
    /// `550 5.1.1 user unknown`: the form logs and the API show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(enhanced) = self.enhanced {
            write!(f, " {enhanced}")?;
        }
        let text = self.text();
        if !text.is_empty() {
            write!(f, " {text}")?;
        }
        Ok(())
    }
}

/// Why bytes from the server are not a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Not `ddd` followed by space, dash or end of line.
    Malformed(String),
    /// A line or reply longer than we are willing to buffer.
    TooLong,
}

/// Cuts one complete reply off the front of `buf`, if it is all there.
/// Returns the reply and how many bytes it used.
pub(crate) fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, FrameError> {
    let mut used = 0;
    let mut code = None;
    let mut enhanced = None;
    let mut lines = Vec::new();
    loop {
        let rest = &buf[used..];
        let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() > MAX_LINE {
                return Err(FrameError::TooLong);
            }
            return Ok(None);
        };
        let raw = &rest[..lf];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        used += lf + 1;
        if raw.len() > MAX_LINE || lines.len() >= MAX_LINES {
            return Err(FrameError::TooLong);
        }
        let line = String::from_utf8_lossy(raw);
        let malformed = || FrameError::Malformed(line.chars().take(80).collect());
        let digits = line.get(..3).ok_or_else(malformed)?;
        let this_code: u16 = digits
            .parse()
            .ok()
            .filter(|c| (200..600).contains(c))
            .ok_or_else(malformed)?;
        if *code.get_or_insert(this_code) != this_code {
            return Err(malformed());
        }
        let (last, text) = match line.as_bytes().get(3) {
            None => (true, ""),
            Some(b' ') => (true, &line[4..]),
            Some(b'-') => (false, &line[4..]),
            Some(_) => return Err(malformed()),
        };
        let text = if lines.is_empty() {
            match EnhancedCode::parse_prefix(text) {
                // The enhanced class must agree with the reply code's.
                Some((e, rest)) if u16::from(e.class) == this_code / 100 => {
                    enhanced = Some(e);
                    rest
                }
                _ => text,
            }
        } else {
            // Later lines repeat the enhanced code; keep only their text.
            EnhancedCode::parse_prefix(text).map_or(text, |(_, rest)| rest)
        };
        // A reply's text ends up in logs, errors and the API: control
        // characters (a bare CR, NUL, escapes) become spaces, so that it
        // always shows as the one line it was (found by fuzzing).
        lines.push(
            text.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        );
        if last {
            let reply = Reply {
                code: this_code,
                enhanced,
                lines,
            };
            return Ok(Some((reply, used)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Reply {
        let (reply, used) = parse_reply(s.as_bytes()).unwrap().unwrap();
        assert_eq!(used, s.len());
        reply
    }

    #[test]
    fn single_and_multi_line_replies() {
        let r = parse("250 2.0.0 OK queued as ABC\r\n");
        assert_eq!(r.code(), 250);
        assert_eq!(r.enhanced_code().unwrap().to_string(), "2.0.0");
        assert_eq!(r.text(), "OK queued as ABC");
        assert_eq!(r.to_string(), "250 2.0.0 OK queued as ABC");

        let r = parse("250-mx.example.com\r\n250-PIPELINING\r\n250 SIZE 1000\r\n");
        assert_eq!(r.lines(), ["mx.example.com", "PIPELINING", "SIZE 1000"]);
        assert_eq!(r.enhanced_code(), None);

        let r = parse(
            "550-5.1.1 The email account that you tried to reach\r\n550 5.1.1 does not exist.\r\n",
        );
        assert_eq!(r.enhanced_code().unwrap().to_string(), "5.1.1");
        assert_eq!(
            r.text(),
            "The email account that you tried to reach does not exist."
        );
        assert!(r.is_permanent());

        assert_eq!(parse("354\r\n").lines(), [""]);
        assert_eq!(parse("220 bare LF\n").text(), "bare LF");
    }

    #[test]
    fn control_characters_in_the_text_become_spaces() {
        let r = parse("550 5.1.1 no\rsuch\0user\x1b[1m\r\n");
        assert_eq!(r.text(), "no such user [1m");
        assert_eq!(r.to_string(), "550 5.1.1 no such user [1m");
    }

    #[test]
    fn enhanced_code_must_match_the_class() {
        let r = parse("451 5.7.1 odd server\r\n");
        assert_eq!(r.enhanced_code(), None);
        assert_eq!(r.text(), "5.7.1 odd server");
        let r = parse("250 2.1.5.9 not a code\r\n");
        assert_eq!(r.enhanced_code(), None);
    }

    #[test]
    fn incomplete_replies_wait_for_more() {
        assert_eq!(parse_reply(b"250-first\r\n250 sec").unwrap(), None);
        assert_eq!(parse_reply(b"").unwrap(), None);
        let (r, used) = parse_reply(b"250 a\r\n354 b\r\n").unwrap().unwrap();
        assert_eq!((r.code(), used), (250, 7));
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "hello\r\n",
            "25\r\n",
            "250x\r\n",
            "099 x\r\n",
            "250-a\r\n251 b\r\n",
        ] {
            assert!(
                matches!(parse_reply(bad.as_bytes()), Err(FrameError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_reply(&vec![b'2'; MAX_LINE + 10]),
            Err(FrameError::TooLong)
        );
    }
}
