//! Fingerprints of delivery failures: the same fault seen for different
//! recipients, queue ids or retry delays must land in one error group, so
//! the reply text is normalised (addresses, ids and numbers blanked) before
//! it is hashed together with the relay, the class and the codes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use const_hex::encode as hex;

/// Longest normalised text kept, in characters; longer replies are cut
/// (their tails are almost always per-message detail).
pub const MAX_TEXT_CHARS: usize = 200;

/// Stands for an e-mail address in normalised text.
const ADDR: &str = "<addr>";
/// Stands for an identifier (queue id, ULID, UUID, hex token).
const ID: &str = "<id>";
/// Stands for a number.
const NUM: &str = "<n>";
/// A run of letters, digits, `-` and `_` with at least this many letters and
/// digits, both present, is taken for an identifier.
const ID_MIN_ALNUM: usize = 8;

/// Whether a failure may pass with time (a deferral) or is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureClass {
    /// A 4xx reply, a timeout or a lost connection: the message was
    /// deferred.
    Transient,
    /// A 5xx reply: the recipient failed for good.
    Permanent,
}

impl FailureClass {
    /// `"transient"` or `"permanent"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FailureClass {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "transient" => Ok(Self::Transient),
            "permanent" => Ok(Self::Permanent),
            other => Err(format!(
                "unknown failure class {other:?} (transient, permanent)"
            )),
        }
    }
}

/// What identifies an error group: the parts that went into the hash, and
/// the hash itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// 12 lower-case hex digits: the first 48 bits of a SHA-256 over the
    /// other fields. Stable across restarts and versions, as long as
    /// [`normalise`] does not change.
    pub id: String,
    /// The relay's name.
    pub relay: String,
    /// Transient or permanent.
    pub class: FailureClass,
    /// The SMTP reply code, if the server answered (`None` for timeouts and
    /// lost connections).
    pub smtp_code: Option<u16>,
    /// The enhanced status code (`5.1.1`), if the server gave one.
    pub enhanced_code: Option<String>,
    /// The reply text after [`normalise`].
    pub text: String,
}

/// Fingerprints one failure. `response` is the server's reply text (or the
/// error's description when there was no reply).
pub fn fingerprint(
    relay: &str,
    class: FailureClass,
    smtp_code: Option<u16>,
    enhanced_code: Option<&str>,
    response: &str,
) -> Fingerprint {
    let text = normalise(response);
    let enhanced_code = enhanced_code
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let mut hash = Sha256::new();
    // The unit separator cannot occur in any field of a sane reply, so no
    // two different field lists hash the same input.
    for part in [
        relay,
        class.as_str(),
        &smtp_code.map(|c| c.to_string()).unwrap_or_default(),
        enhanced_code.as_deref().unwrap_or_default(),
        &text,
    ] {
        hash.update(part.as_bytes());
        hash.update([0x1f]);
    }
    let digest = hash.finalize();
    Fingerprint {
        id: hex(digest.get(..6).unwrap_or_default()),
        relay: relay.to_owned(),
        class,
        smtp_code,
        enhanced_code,
        text,
    }
}

/// Normalises a reply text so that per-message detail does not split a
/// group: lower-cases it; replaces e-mail addresses (with their angle
/// brackets, if any) by `<addr>`; replaces identifiers — runs of letters,
/// digits, `-` and `_` holding both letters and digits, at least eight of
/// them (queue ids, ULIDs, UUIDs, hex tokens) — by `<id>`; replaces every
/// other run of digits by `<n>`; collapses white space; and keeps at most
/// [`MAX_TEXT_CHARS`] characters.
pub fn normalise(response: &str) -> String {
    // Quoted local parts may hold spaces: blanked before the text is cut
    // into words.
    let lower = blank_quoted_addresses(&response.to_lowercase());
    let mut words = Vec::new();
    for token in lower.split_whitespace() {
        words.push(blank_ids(&blank_addresses(token)));
    }
    let joined = words.join(" ");
    match joined.char_indices().nth(MAX_TEXT_CHARS) {
        Some((cut, _)) => joined[..cut].trim_end().to_owned(),
        None => joined,
    }
}

/// Characters allowed in the local part of an address we recognise
/// (RFC 5322 atext less the ones that usually quote or delimit: `'` `/`
/// `` ` `` `{` `|` `}`), and the letters and digits of every script
/// (RFC 6531 local parts are UTF-8).
fn is_local_char(c: char) -> bool {
    c.is_alphanumeric() || ".!#$%&*+=?^_~-".contains(c)
}

/// Letters and digits of every script (U-labels of internationalised
/// domains), `.` and `-`.
fn is_domain_char(c: char) -> bool {
    c.is_alphanumeric() || c == '.' || c == '-'
}

/// Replaces every address whose local part is a quoted string
/// (`"john doe"@example.com`, RFC 5321 section 4.1.2), with its angle
/// brackets if any, by [`ADDR`]. Other addresses are left for
/// [`blank_addresses`].
fn blank_quoted_addresses(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        match quoted_address_end(&chars, i) {
            Some(end) => {
                let bracketed = out.ends_with('<') && chars.get(end) == Some(&'>');
                if bracketed {
                    out.pop();
                }
                out.push_str(ADDR);
                i = if bracketed { end + 1 } else { end };
            }
            None => {
                if let Some(&c) = chars.get(i) {
                    out.push(c);
                }
                i += 1;
            }
        }
    }
    out
}

/// Where the address that starts with a quoted local part at `start` ends
/// (one past its domain), if one does.
fn quoted_address_end(chars: &[char], start: usize) -> Option<usize> {
    if chars.get(start) != Some(&'"') {
        return None;
    }
    let mut i = start + 1;
    loop {
        match chars.get(i)? {
            '\\' => i += 2,
            '"' => break,
            '\r' | '\n' => return None,
            _ => i += 1,
        }
    }
    // `i` is the closing quote; an `@` and a domain must follow at once.
    if chars.get(i + 1) != Some(&'@') {
        return None;
    }
    let domain_start = i + 2;
    let mut end = domain_start;
    while chars.get(end).copied().is_some_and(is_domain_char) {
        end += 1;
    }
    while end > domain_start && matches!(chars.get(end - 1), Some('.' | '-')) {
        end -= 1;
    }
    let domain_has_alnum = chars
        .get(domain_start..end)
        .is_some_and(|d| d.iter().any(|c| c.is_alphanumeric()));
    domain_has_alnum.then_some(end)
}

/// Replaces every `local@domain` in one white-space-free token.
fn blank_addresses(token: &str) -> String {
    let chars: Vec<char> = token.chars().collect();
    let mut out = String::with_capacity(token.len());
    let mut i = 0;
    // Where the text copied since the last replacement begins: a local part
    // cannot reach back into an address already replaced.
    let mut floor = 0;
    while i < chars.len() {
        if chars.get(i) != Some(&'@') {
            if let Some(&c) = chars.get(i) {
                out.push(c);
            }
            i += 1;
            continue;
        }
        // The local part is what was just copied: walk back over it.
        let mut start = i;
        while start > floor && chars.get(start - 1).copied().is_some_and(is_local_char) {
            start -= 1;
        }
        let mut end = i + 1;
        while chars.get(end).copied().is_some_and(is_domain_char) {
            end += 1;
        }
        // A sentence's full stop is not part of the domain.
        while end > i + 1 && matches!(chars.get(end - 1), Some('.' | '-')) {
            end -= 1;
        }
        let local_len = i - start;
        let domain_has_alnum = chars
            .get(i + 1..end)
            .is_some_and(|d| d.iter().any(|c| c.is_alphanumeric()));
        if local_len == 0 || !domain_has_alnum {
            out.push('@');
            i += 1;
            continue;
        }
        // Drop the copied local part and an opening bracket right before it.
        for _ in 0..local_len {
            out.pop();
        }
        let bracketed = start > floor && chars.get(start - 1) == Some(&'<');
        if bracketed && chars.get(end) == Some(&'>') {
            out.pop();
            end += 1;
        }
        out.push_str(ADDR);
        i = end;
        floor = end;
    }
    out
}

/// Replaces identifiers by `<id>` and other digit runs by `<n>`, leaving the
/// placeholders already written alone (they hold no digits).
fn blank_ids(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    let mut rest = token;
    while !rest.is_empty() {
        let run_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(rest.len());
        if run_len == 0 {
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                out.push(c);
            }
            rest = chars.as_str();
            continue;
        }
        let (run, tail) = rest.split_at(run_len);
        push_run(&mut out, run);
        rest = tail;
    }
    out
}

fn push_run(out: &mut String, run: &str) {
    let digits = run.bytes().filter(u8::is_ascii_digit).count();
    let letters = run.bytes().filter(u8::is_ascii_alphabetic).count();
    if digits > 0 && letters > 0 && digits + letters >= ID_MIN_ALNUM {
        out.push_str(ID);
        return;
    }
    let mut in_number = false;
    for c in run.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push_str(NUM);
                in_number = true;
            }
        } else {
            in_number = false;
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_table() {
        let cases = [
            ("", ""),
            ("  User   unknown \r\n", "user unknown"),
            (
                "<bob@example.com>: Recipient address rejected: User unknown",
                "<addr>: recipient address rejected: user unknown",
            ),
            (
                "mailbox bob.smith+tag@mail.example.co.uk. is full",
                "mailbox <addr>. is full",
            ),
            ("from=<a=b@x.org>,", "from=<addr>,"),
            ("a@b.example,c@d.example", "<addr>,<addr>"),
            ("a@b.example.c@d.example", "<addr>@d.example"),
            (
                "not an address: @ or foo@ or @bar",
                "not an address: @ or foo@ or @bar",
            ),
            (
                "Too many connections from 192.0.2.17, try again in 30 seconds",
                "too many connections from <n>.<n>.<n>.<n>, try again in <n> seconds",
            ),
            (
                "queued as 4BX2KL0Y9Z; id=550e8400-e29b-41d4-a716-446655440000",
                "queued as <id>; id=<id>",
            ),
            ("ulid 01HQZ3V7W8X9Y0ABCDEF123456", "ulid <id>"),
            ("token deadbeef01", "token <id>"),
            ("mx1 and x509 and v2", "mx<n> and x<n> and v<n>"),
            ("2024-01-02 12:34:56", "<n>-<n>-<n> <n>:<n>:<n>"),
            (
                "4.7.1 Service unavailable",
                "<n>.<n>.<n> service unavailable",
            ),
            (
                "Mailbox FULL 收件人 邮箱已满 123",
                "mailbox full 收件人 邮箱已满 <n>",
            ),
            // Quoted local parts (RFC 5321), spaces and escapes included.
            (
                "<\"john doe\"@example.com>: user unknown",
                "<addr>: user unknown",
            ),
            (
                "mailbox \"john doe\"@example.com is full",
                "mailbox <addr> is full",
            ),
            (
                r#"rcpt "a\"b c"@example.org, "x@y"@mx.example. rejected"#,
                "rcpt <addr>, <addr>. rejected",
            ),
            (r#"say "hello" @ noon"#, r#"say "hello" @ noon"#),
            // UTF-8 local parts and domains (RFC 6531).
            (
                "<josé.garcía@example.com>: user unknown",
                "<addr>: user unknown",
            ),
            (
                "mailbox josé.garcía@example.com is full",
                "mailbox <addr> is full",
            ),
            ("用户@例子.广告 unknown", "<addr> unknown"),
            ("Ünïcödé@bücher.example full", "<addr> full"),
        ];
        for (input, want) in cases {
            assert_eq!(normalise(input), want, "input {input:?}");
        }
    }

    #[test]
    fn normalise_caps_the_length() {
        let long = "word ".repeat(100);
        let text = normalise(&long);
        assert!(text.chars().count() <= MAX_TEXT_CHARS);
        assert!(text.starts_with("word word"));
        assert!(!text.ends_with(' '));
    }

    #[test]
    fn same_failure_for_different_recipients_and_ids_is_one_fingerprint() {
        let a = fingerprint(
            "primary",
            FailureClass::Permanent,
            Some(550),
            Some("5.1.1"),
            "<alice@example.com>: Recipient address rejected (queue 7F3A2B1C9D)",
        );
        let b = fingerprint(
            "primary",
            FailureClass::Permanent,
            Some(550),
            Some("5.1.1"),
            "<bob.jones@example.org>:  recipient address REJECTED (queue 0A9B8C7D6E5F)",
        );
        assert_eq!(a, b);
        assert_eq!(a.id.len(), 12);
        assert!(a.id.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn quoted_and_utf8_recipients_share_one_fingerprint() {
        let of = |recipient: &str| {
            fingerprint(
                "primary",
                FailureClass::Permanent,
                Some(550),
                Some("5.1.1"),
                &format!("<{recipient}>: Recipient address rejected"),
            )
        };
        let plain = of("alice@example.com");
        for recipient in [
            "\"john doe\"@example.com",
            r#""very.(),:;<>[]\".unusual"@example.com"#,
            "josé.garcía@example.com",
            "用户@例子.广告",
            "δοκιμή@παράδειγμα.δοκιμή",
        ] {
            assert_eq!(of(recipient), plain, "{recipient}");
        }
    }

    #[test]
    fn any_field_changes_the_fingerprint() {
        let base = (
            "primary",
            FailureClass::Transient,
            Some(451),
            Some("4.7.1"),
            "try later",
        );
        let id = |(relay, class, code, enhanced, text): (&str, _, _, Option<&str>, &str)| {
            fingerprint(relay, class, code, enhanced, text).id
        };
        let reference = id(base);
        let variants = [
            (
                "backup",
                FailureClass::Transient,
                Some(451),
                Some("4.7.1"),
                "try later",
            ),
            (
                "primary",
                FailureClass::Permanent,
                Some(451),
                Some("4.7.1"),
                "try later",
            ),
            (
                "primary",
                FailureClass::Transient,
                Some(421),
                Some("4.7.1"),
                "try later",
            ),
            (
                "primary",
                FailureClass::Transient,
                None,
                Some("4.7.1"),
                "try later",
            ),
            (
                "primary",
                FailureClass::Transient,
                Some(451),
                Some("4.7.0"),
                "try later",
            ),
            (
                "primary",
                FailureClass::Transient,
                Some(451),
                None,
                "try later",
            ),
            (
                "primary",
                FailureClass::Transient,
                Some(451),
                Some("4.7.1"),
                "greylisted",
            ),
        ];
        for v in variants {
            assert_ne!(id(v), reference, "{v:?}");
        }
        // A blank enhanced code is no enhanced code.
        assert_eq!(
            id((
                "primary",
                FailureClass::Transient,
                Some(451),
                Some(" "),
                "x"
            )),
            id(("primary", FailureClass::Transient, Some(451), None, "x"))
        );
    }

    #[test]
    fn the_id_is_stable() {
        // Pinned: group ids appear in alerts and URLs, so a change to the
        // normaliser or the hash must be deliberate.
        let fp = fingerprint(
            "primary",
            FailureClass::Permanent,
            Some(550),
            Some("5.1.1"),
            "User unknown",
        );
        assert_eq!(fp.text, "user unknown");
        assert_eq!(
            fp.id,
            fingerprint(
                "primary",
                FailureClass::Permanent,
                Some(550),
                Some("5.1.1"),
                "USER  UNKNOWN"
            )
            .id
        );
        let mut hash = Sha256::new();
        hash.update(b"primary\x1fpermanent\x1f550\x1f5.1.1\x1fuser unknown\x1f");
        assert_eq!(fp.id, hex(&hash.finalize()[..6]));
    }

    #[test]
    fn failure_class_names() {
        for class in [FailureClass::Transient, FailureClass::Permanent] {
            assert_eq!(class.as_str().parse::<FailureClass>(), Ok(class));
        }
        assert!("temporary".parse::<FailureClass>().is_err());
    }
}
