//! MIME rendering (herald-message) of arbitrary valid requests, read back
//! by an independent parser (mail-parser): the subject, the addresses,
//! the custom headers, the text and HTML bodies and every attachment's
//! name and bytes come back as validation made them, and the bytes are
//! safe for SMTP.

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald_message::{
    AttachmentRequest, EmailAddress, Limits, Message, MessageRequest, check_header_text,
    check_visible, normalize_line_endings,
};
use mail_parser::{Address, MessageParser, MessagePart, MimeHeaders, PartType};

/// A request's shape, derived from the fuzz input; turned into a
/// [`MessageRequest`] with values that are mostly valid, so that the
/// fuzzer spends its time on rendering rather than on refusals.
#[derive(Debug, Arbitrary)]
struct Mail {
    from: Mailbox,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    bcc: Vec<Mailbox>,
    reply_to: Option<Mailbox>,
    subject: Option<String>,
    text: Option<String>,
    html: Option<String>,
    attachments: Vec<File>,
    headers: Vec<(u8, String)>,
}

#[derive(Debug, Arbitrary)]
struct Mailbox {
    name: Option<String>,
    local: u8,
    domain: u8,
}

#[derive(Debug, Arbitrary)]
struct File {
    name: String,
    media: u8,
    content: Vec<u8>,
    inline: bool,
}

const LOCALS: &[&str] = &["a", "b.c", "d+tag", "=?x?=", "o'neil", "用户", "\"q d\""];
const DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "münchen.example",
    "[192.0.2.1]",
];
const HEADERS: &[&str] = &[
    "X-A",
    "X-Campaign",
    "List-Unsubscribe",
    "Keywords",
    "X-Note",
];
/// `None` lets herald guess from the file name.
const MEDIA: &[Option<&str>] = &[
    None,
    Some("application/pdf"),
    Some("text/plain"),
    Some("text/csv; charset=utf-8"),
    Some("text/html"),
    Some("message/rfc822"),
    Some("image/png"),
    Some("application/octet-stream"),
];

/// One input: the bytes an arbitrary [`Mail`] is derived from.
pub fn run(data: &[u8]) {
    let Ok(mail) = Mail::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let request = mail.request();
    let Ok(message) = request.validate(&Limits::default()) else {
        return;
    };
    check(&message);
}

impl Mail {
    fn request(self) -> MessageRequest {
        let list = |boxes: Vec<Mailbox>| boxes.into_iter().take(4).map(Mailbox::written).collect();
        MessageRequest {
            from: Some(self.from.written()),
            to: list(self.to),
            cc: list(self.cc),
            bcc: list(self.bcc),
            reply_to: self.reply_to.map(Mailbox::written),
            subject: self.subject.map(|s| header_text(&s)),
            text: self.text.map(|t| t.replace('\0', "")),
            html: self.html.map(|h| h.replace('\0', "")),
            attachments: self
                .attachments
                .into_iter()
                .take(4)
                .enumerate()
                .map(|(i, f)| f.request(i))
                .collect(),
            headers: self
                .headers
                .into_iter()
                .take(4)
                .map(|(n, v)| (pick(HEADERS, n).to_owned(), header_text(&v)))
                .collect(),
            ..Default::default()
        }
    }
}

impl Mailbox {
    fn written(self) -> String {
        let address = format!(
            "{}@{}",
            pick(LOCALS, self.local),
            pick(DOMAINS, self.domain)
        );
        match self.name {
            None => address,
            Some(name) => {
                let name = visible_text(&name)
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"");
                format!("\"{name}\" <{address}>")
            }
        }
    }
}

impl File {
    fn request(self, i: usize) -> AttachmentRequest {
        let name = visible_text(&self.name);
        AttachmentRequest {
            filename: Some(if name.trim().is_empty() {
                format!("f{i}")
            } else {
                name
            }),
            content_type: pick(MEDIA, self.media).map(str::to_owned),
            content: STANDARD.encode(&self.content),
            inline: self.inline,
            content_id: self.inline.then(|| format!("part{i}@fuzz")),
        }
    }
}

fn pick<T: Copy>(options: &[T], i: u8) -> T {
    options[usize::from(i) % options.len()]
}

/// `s` without the characters no header may hold.
fn header_text(s: &str) -> String {
    s.chars()
        .filter(|c| check_header_text(c.encode_utf8(&mut [0; 4])).is_ok())
        .collect()
}

/// `s` without the characters a shown name may not hold.
fn visible_text(s: &str) -> String {
    header_text(s)
        .chars()
        .filter(|c| check_visible(c.encode_utf8(&mut [0; 4])).is_ok())
        .collect()
}

/// The message rendered, parsed back and compared field by field.
fn check(message: &Message) {
    let rendered = message.render(&crate::wire::options(message));
    crate::wire::assert_wire_safe(&rendered.bytes);
    let parsed = MessageParser::default()
        .parse(&rendered.bytes)
        .expect("mail-parser reads the rendered message");

    // mail-parser reads an empty unstructured header as no header.
    let subject = message.subject().unwrap_or_default();
    let read = parsed.subject().unwrap_or_default();
    assert_eq!(unfolded(read), unfolded(subject), "subject");
    assert_addresses(parsed.from(), std::slice::from_ref(message.from()), "from");
    assert_addresses(parsed.to(), message.to(), "to");
    assert_addresses(parsed.cc(), message.cc(), "cc");
    let reply_to: Vec<EmailAddress> = message.reply_to().into_iter().cloned().collect();
    assert_addresses(parsed.reply_to(), &reply_to, "reply-to");
    for (name, value) in message.headers() {
        // mail-parser keeps headers it does not know raw: read as a Subject.
        let raw = parsed.header_raw(name.as_str()).expect("the header");
        let raw = format!("Subject:{raw}");
        let read = MessageParser::default()
            .parse_headers(raw.as_bytes())
            .expect("the header parses");
        let read = read.subject().unwrap_or_default();
        assert_eq!(unfolded(read), unfolded(value.as_str()), "header {name}");
    }

    // The leaves in order: the text, the HTML, the inline parts, the files.
    let leaves: Vec<&MessagePart<'_>> = parsed
        .parts
        .iter()
        .filter(|p| !matches!(p.body, PartType::Multipart(_)))
        .collect();
    let mut leaves = leaves.into_iter();
    let body = |text: &str| normalize_line_endings(text).into_bytes();
    if message.text().is_some() || message.html().is_none() {
        let part = leaves.next().expect("a text part");
        let text = message.text().unwrap_or_default();
        assert_eq!(part.contents(), body(text), "text body");
    }
    if let Some(html) = message.html() {
        let part = leaves.next().expect("an HTML part");
        assert_eq!(part.contents(), body(html), "HTML body");
    }
    let (inline, files): (Vec<_>, Vec<_>) = message
        .attachments()
        .iter()
        .partition(|a| a.content_id().is_some());
    for attachment in inline.into_iter().chain(files) {
        let part = leaves.next().expect("a part per attachment");
        match &part.body {
            // mail-parser reads text parts into strings, replacing invalid
            // UTF-8; the wire carries the bytes unchanged (base64).
            PartType::Text(text) | PartType::Html(text) => {
                let sent = String::from_utf8_lossy(&attachment.content);
                assert_eq!(text.as_ref(), sent, "text attachment");
            }
            _ => assert_eq!(part.contents(), attachment.content, "attachment bytes"),
        }
        let name = attachment.filename.as_ref().map(|f| f.as_str());
        assert_eq!(part.attachment_name(), name, "attachment name");
        if let Some(id) = attachment.content_id() {
            assert_eq!(part.content_id(), Some(id.as_str()), "content-id");
        }
    }
    assert!(leaves.next().is_none(), "a part nobody asked for");
}

/// `text` with every run of white space as one space. mail-parser turns
/// the white space around a fold (a long header's line break) into one
/// space; other readers keep it. Not herald's to fix: the generator's
/// texts are compared modulo that.
fn unfolded(text: &str) -> String {
    text.split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The addresses a header holds, as (display name, address) pairs.
fn assert_addresses(read: Option<&Address<'_>>, expected: &[EmailAddress], field: &str) {
    let read: Vec<(Option<String>, Option<String>)> = read
        .map(|a| {
            a.iter()
                .map(|a| (a.name().map(str::to_owned), a.address().map(str::to_owned)))
                .collect()
        })
        .unwrap_or_default();
    let expected: Vec<(Option<String>, Option<String>)> = expected
        .iter()
        .map(|a| {
            (
                a.name().filter(|n| !n.is_empty()).map(str::to_owned),
                Some(a.address().to_owned()),
            )
        })
        .collect();
    assert_eq!(read, expected, "{field}");
}
