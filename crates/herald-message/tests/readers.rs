//! Rendered mail read by two readers herald did not write: mail-parser and
//! Python's `email` package (the modern policy, which mail clients and
//! archivers built on Python use). Both must see what was asked for:
//! ASCII that looks like an RFC 2047 encoded word stays that text, and an
//! attached message is a message, not an empty part.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald_message::{AttachmentRequest, Limits, MessageRequest, RenderOptions, message_id_for};
use mail_parser::{MessageParser, MimeHeaders, PartType};
use serde_json::Value;
use time::macros::datetime;

const READER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/readers/read.py");

fn render(request: &MessageRequest) -> Vec<u8> {
    let message = request.validate(&Limits::default()).expect("valid request");
    let options = RenderOptions {
        message_id: message_id_for("01JD7Y3M6N8Q4R2S5T7V9W0XYZ", message.from()),
        date: datetime!(2026-11-22 10:00:00 UTC),
        extra_headers: Vec::new(),
    };
    message.render(&options).bytes
}

/// What Python's `email` reads in `bytes` (see readers/read.py), asked
/// for the headers `names` besides the subject.
fn python_reads(bytes: &[u8], names: &[&str]) -> Value {
    let mut child = Command::new("python3")
        .arg(READER)
        .args(names)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "python3 failed");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn attachment(filename: &str, content: &[u8]) -> AttachmentRequest {
    AttachmentRequest {
        filename: Some(filename.into()),
        content: STANDARD.encode(content),
        ..Default::default()
    }
}

const LOOKS_ENCODED: &str = "=?utf-8?B?Zm9v?= is not foo";

#[test]
fn ascii_that_looks_like_an_encoded_word_is_read_as_written() {
    let request = MessageRequest {
        from: Some("=?utf-8?B?Zm9v?= <alice@example.com>".into()),
        to: vec![
            "\"=?utf-8?Q?bar?= Bob\" <bob@example.com>".into(),
            "Carol <carol@example.com>".into(),
        ],
        subject: Some(LOOKS_ENCODED.into()),
        text: Some("hi".into()),
        headers: [("X-Note".to_owned(), LOOKS_ENCODED.to_owned())].into(),
        attachments: vec![attachment("=?utf-8?B?Zm9v?=.txt", b"foo")],
        ..Default::default()
    };
    let bytes = render(&request);

    let python = python_reads(&bytes, &["X-Note"]);
    assert_eq!(python["subject"], LOOKS_ENCODED);
    assert_eq!(python["headers"]["X-Note"], LOOKS_ENCODED);
    assert_eq!(python["names"]["From"][0], "=?utf-8?B?Zm9v?=");
    assert_eq!(python["names"]["To"][0], "=?utf-8?Q?bar?= Bob");
    assert_eq!(python["names"]["To"][1], "Carol");
    let file = &python["parts"][1];
    assert_eq!(file["filename"], "=?utf-8?B?Zm9v?=.txt", "{python}");
    assert_eq!(file["name"], "=?utf-8?B?Zm9v?=.txt", "{python}");

    let parsed = MessageParser::default().parse(&bytes).expect("parses");
    assert_eq!(parsed.subject(), Some(LOOKS_ENCODED));
    // mail-parser keeps headers it does not know raw: read it as a Subject.
    let note = format!("Subject:{}", parsed.header_raw("X-Note").expect("X-Note"));
    let note = MessageParser::default()
        .parse_headers(note.as_bytes())
        .expect("X-Note parses");
    assert_eq!(note.subject(), Some(LOOKS_ENCODED));
    let from = parsed.from().and_then(|a| a.first()).expect("from");
    assert_eq!(from.name(), Some("=?utf-8?B?Zm9v?="));
    let to = parsed.to().and_then(|a| a.first()).expect("to");
    assert_eq!(to.name(), Some("=?utf-8?Q?bar?= Bob"));
    let file = parsed.attachment(0).expect("the attachment");
    assert_eq!(file.attachment_name(), Some("=?utf-8?B?Zm9v?=.txt"));
    assert_eq!(file.contents(), b"foo");
}

const EML: &[u8] = b"From: someone@example.org\r\nTo: you@example.com\r\n\
Subject: the forwarded one\r\n\r\nThe body of the message.\r\n";

#[test]
fn an_attached_message_is_a_message_not_base64() {
    let mut request = MessageRequest {
        from: Some("alice@example.com".into()),
        to: vec!["bob@example.com".into()],
        subject: Some("Fwd".into()),
        text: Some("see attached".into()),
        attachments: vec![attachment("forwarded.eml", EML)],
        ..Default::default()
    };
    let bytes = render(&request);

    let python = python_reads(&bytes, &[]);
    let part = &python["parts"][1];
    assert_eq!(part["type"], "message/rfc822", "{python}");
    assert_ne!(part["cte"], "base64", "{python}");
    assert_eq!(part["inner_subject"], "the forwarded one", "{python}");
    assert_eq!(part["filename"], "forwarded.eml", "{python}");

    let parsed = MessageParser::default().parse(&bytes).expect("parses");
    let part = parsed.attachment(0).expect("the attachment");
    let PartType::Message(inner) = &part.body else {
        panic!("not read as a message: {:?}", part.body);
    };
    assert_eq!(inner.subject(), Some("the forwarded one"));
    assert_eq!(part.contents(), EML);

    // The same declared type with bytes that 7bit cannot carry (8-bit
    // text, a bare LF) goes as opaque bytes: base64 is allowed there.
    // So do bytes that are not a message at all: mail-parser read past the
    // part's end looking for the end of the headers (found by fuzzing).
    for eml in [
        "Subject: caf\u{e9}\r\n\r\nna\u{ef}ve\r\n".as_bytes(),
        b"Subject: x\n\nbare LF\n",
        b"C",
        b"Subject: no body separator\r\n",
        b" folded first\r\n\r\nbody",
    ] {
        request.attachments = vec![AttachmentRequest {
            content_type: Some("message/rfc822".into()),
            ..attachment("forwarded.eml", eml)
        }];
        let bytes = render(&request);
        let python = python_reads(&bytes, &[]);
        let part = &python["parts"][1];
        assert_eq!(part["type"], "application/octet-stream", "{python}");
        assert_eq!(part["bytes"], eml.len(), "{python}");
        assert_eq!(part["filename"], "forwarded.eml", "{python}");
        let parsed = MessageParser::default().parse(&bytes).expect("parses");
        assert_eq!(parsed.attachment(0).expect("attachment").contents(), eml);
    }
}

#[test]
fn leading_white_space_of_a_subject_is_kept() {
    let subject = " \tindented";
    let request = MessageRequest {
        from: Some("alice@example.com".into()),
        to: vec!["bob@example.com".into()],
        subject: Some(subject.into()),
        text: Some("hi".into()),
        headers: [("X-Note".to_owned(), subject.to_owned())].into(),
        ..Default::default()
    };
    let bytes = render(&request);
    let python = python_reads(&bytes, &["X-Note"]);
    assert_eq!(python["subject"], subject);
    assert_eq!(python["headers"]["X-Note"], subject);
    let parsed = MessageParser::default().parse(&bytes).expect("parses");
    assert_eq!(parsed.subject(), Some(subject));
}
