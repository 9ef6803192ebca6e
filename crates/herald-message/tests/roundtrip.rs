//! Every rendered message is read back by an independent parser
//! (mail-parser) and compared field by field with what was asked for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald_message::{
    AttachmentRequest, Limits, Message, MessageRequest, RenderOptions, Rendered, message_id_for,
};
use mail_parser::{MessageParser, MessagePart, MimeHeaders, PartType};
use time::macros::datetime;

fn render(request: &MessageRequest) -> (Message, Rendered) {
    let message = request.validate(&Limits::default()).expect("valid request");
    let options = RenderOptions {
        message_id: message_id_for("01JD7Y3M6N8Q4R2S5T7V9W0XYZ", message.from()),
        date: datetime!(2026-11-22 10:00:00 UTC),
        extra_headers: Vec::new(),
    };
    let rendered = message.render(&options);
    assert_wire_safe(&rendered.bytes);
    (message, rendered)
}

/// CRLF only, no line over 998 octets, and the headers every message needs.
fn assert_wire_safe(bytes: &[u8]) {
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF at byte {i}");
        }
        if b == b'\r' {
            assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at byte {i}");
        }
        assert_ne!(b, 0, "NUL at byte {i}");
    }
    for line in bytes.split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "line of {} octets", line.len() - 1);
    }
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header/body separator");
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    for name in [
        "\nmessage-id: ",
        "\ndate: ",
        "\nmime-version: 1.0",
        "from: ",
    ] {
        assert!(head.contains(name), "missing {name:?} in {head}");
    }
    assert!(
        !head.contains("\nbcc:") && !head.starts_with("bcc:"),
        "Bcc leaked: {head}"
    );
}

/// The MIME tree as `type(child,child)` with leaves as their media type.
fn shape(parsed: &mail_parser::Message<'_>, part: &MessagePart<'_>) -> String {
    let ct = part.content_type().expect("every part has a Content-Type");
    let name = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default());
    match &part.body {
        PartType::Multipart(children) => {
            let inner: Vec<_> = children
                .iter()
                .map(|&id| shape(parsed, parsed.part(id).expect("child part")))
                .collect();
            format!("{name}({})", inner.join(","))
        }
        _ => name,
    }
}

fn request() -> MessageRequest {
    MessageRequest {
        from: Some("Alice <alice@example.com>".into()),
        to: vec!["bob@example.com".into()],
        subject: Some("Hello".into()),
        text: Some("Hi Bob".into()),
        ..Default::default()
    }
}

fn attachment(filename: &str, content_type: &str, content: &[u8]) -> AttachmentRequest {
    AttachmentRequest {
        filename: Some(filename.into()),
        content_type: Some(content_type.into()),
        content: STANDARD.encode(content),
        ..Default::default()
    }
}

fn inline(cid: &str, content: &[u8]) -> AttachmentRequest {
    AttachmentRequest {
        filename: Some(format!("{cid}.png")),
        content_type: Some("image/png".into()),
        content: STANDARD.encode(content),
        inline: true,
        content_id: Some(cid.into()),
    }
}

/// Bytes that use every value, so no encoder can get away with text tricks.
fn binary(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
}

#[test]
fn full_message_round_trips_field_by_field() {
    let pdf = binary(70_000);
    let logo = binary(3_000);
    let mut req = request();
    req.from = Some("张三 (Zhang) <zhang@example.com>".into());
    req.to = vec![
        "\"Bob, the builder\" <bob@example.com>".into(),
        "Ünïcödé Ñame 🚀 <u@example.org>".into(),
    ];
    req.cc = vec!["Carol <carol@example.net>".into()];
    req.bcc = vec!["secret@example.com".into()];
    req.reply_to = Some("Support 支持 <support@example.com>".into());
    req.subject = Some("订单确认 — order #42 ✅ 🎉".into());
    req.text = Some("你好,Bob!\n第二行 with emoji 😀\n".into());
    req.html = Some("<p>你好 <img src=\"cid:logo\"></p>".into());
    req.attachments = vec![
        attachment("季度报告 2026.pdf", "application/pdf", &pdf),
        inline("logo", &logo),
    ];
    req.headers = [("X-Campaign".to_string(), "welcome 欢迎".to_string())].into();

    let (message, rendered) = render(&req);
    let parsed = MessageParser::default()
        .parse(&rendered.bytes)
        .expect("parses");

    assert_eq!(parsed.subject(), Some("订单确认 — order #42 ✅ 🎉"));
    let from = parsed.from().and_then(|a| a.first()).expect("from");
    assert_eq!(from.name(), Some("张三 (Zhang)"));
    assert_eq!(from.address(), Some("zhang@example.com"));
    let to: Vec<_> = parsed
        .to()
        .expect("to")
        .iter()
        .map(|a| {
            (
                a.name().unwrap_or_default().to_owned(),
                a.address().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        to,
        [
            ("Bob, the builder".to_owned(), "bob@example.com".to_owned()),
            ("Ünïcödé Ñame 🚀".to_owned(), "u@example.org".to_owned()),
        ]
    );
    let cc = parsed.cc().and_then(|a| a.first()).expect("cc");
    assert_eq!(
        (cc.name(), cc.address()),
        (Some("Carol"), Some("carol@example.net"))
    );
    let reply_to = parsed.reply_to().and_then(|a| a.first()).expect("reply-to");
    assert_eq!(reply_to.name(), Some("Support 支持"));
    assert!(parsed.bcc().is_none());
    assert_eq!(
        parsed.message_id(),
        Some("01JD7Y3M6N8Q4R2S5T7V9W0XYZ@example.com")
    );
    assert_eq!(
        rendered.message_id,
        "<01JD7Y3M6N8Q4R2S5T7V9W0XYZ@example.com>"
    );
    assert_eq!(
        parsed.date().map(|d| d.to_timestamp()),
        Some(datetime!(2026-11-22 10:00:00 UTC).unix_timestamp())
    );
    let custom = MessageParser::default()
        .header_text(mail_parser::HeaderName::Other("X-Campaign".into()))
        .parse(&rendered.bytes)
        .expect("parses");
    assert_eq!(
        custom.header("X-Campaign").and_then(|h| h.as_text()),
        Some("welcome 欢迎")
    );

    assert_eq!(
        parsed.body_text(0).as_deref(),
        Some("你好,Bob!\r\n第二行 with emoji 😀\r\n")
    );
    assert_eq!(
        parsed.body_html(0).as_deref(),
        Some("<p>你好 <img src=\"cid:logo\"></p>")
    );

    assert_eq!(
        shape(&parsed, parsed.root_part()),
        "multipart/mixed(multipart/alternative(text/plain,multipart/related(text/html,image/png)),application/pdf)"
    );

    let parts: Vec<_> = parsed.attachments().collect();
    assert_eq!(parts.len(), 2);
    let logo_part = parts
        .iter()
        .find(|p| p.content_id().is_some())
        .expect("inline part");
    assert_eq!(logo_part.content_id(), Some("logo"));
    assert_eq!(logo_part.contents(), logo.as_slice());
    let pdf_part = parts
        .iter()
        .find(|p| p.content_id().is_none())
        .expect("file part");
    assert_eq!(pdf_part.attachment_name(), Some("季度报告 2026.pdf"));
    assert_eq!(pdf_part.contents(), pdf.as_slice());
    assert_eq!(
        pdf_part.content_disposition().map(|d| d.ctype()),
        Some("attachment")
    );
    // The legacy RFC 2047 `name=` on Content-Type decodes to the same name.
    let legacy = pdf_part
        .content_type()
        .and_then(|ct| ct.attribute("name"))
        .expect("Content-Type name parameter");
    assert_eq!(legacy, "季度报告 2026.pdf");

    let envelope: Vec<_> = message
        .envelope()
        .recipients()
        .iter()
        .map(|r| r.address())
        .collect();
    assert_eq!(
        envelope,
        [
            "bob@example.com",
            "u@example.org",
            "carol@example.net",
            "secret@example.com"
        ]
    );
    assert!(!rendered.smtputf8);
}

#[test]
fn tree_shapes_follow_the_parts_given() {
    let cases: Vec<(MessageRequest, &str)> = vec![
        (request(), "text/plain"),
        (
            MessageRequest {
                text: None,
                html: Some("<b>hi</b>".into()),
                ..request()
            },
            "text/html",
        ),
        (
            MessageRequest {
                html: Some("<b>hi</b>".into()),
                ..request()
            },
            "multipart/alternative(text/plain,text/html)",
        ),
        (
            MessageRequest {
                attachments: vec![attachment("a.bin", "application/octet-stream", b"\x00\x01")],
                ..request()
            },
            "multipart/mixed(text/plain,application/octet-stream)",
        ),
        (
            MessageRequest {
                text: None,
                html: Some("<img src=cid:a><img src=cid:b>".into()),
                attachments: vec![inline("a", b"A"), inline("b", b"B")],
                ..request()
            },
            "multipart/related(text/html,image/png,image/png)",
        ),
    ];
    for (req, want) in cases {
        let (_, rendered) = render(&req);
        let parsed = MessageParser::default()
            .parse(&rendered.bytes)
            .expect("parses");
        assert_eq!(shape(&parsed, parsed.root_part()), want);
    }
}

#[test]
fn long_subject_is_folded_and_decodes_whole() {
    let subject = "Your order 订单 has shipped — tracking details inside, \
                   please keep this e-mail for your records 请保留此邮件 🚚📦 "
        .repeat(6);
    let subject = subject.trim_end().to_owned();
    let ascii_subject = "word ".repeat(150).trim_end().to_owned();
    for s in [subject, ascii_subject] {
        let (_, rendered) = render(&MessageRequest {
            subject: Some(s.clone()),
            ..request()
        });
        let parsed = MessageParser::default()
            .parse(&rendered.bytes)
            .expect("parses");
        assert_eq!(parsed.subject(), Some(s.as_str()));
        let raw = parsed.header_raw("Subject").expect("subject");
        assert!(raw.contains("\r\n "), "long subject not folded: {raw:?}");
    }
}

#[test]
fn long_and_odd_filenames_decode_exactly() {
    let names = [
        "a".repeat(200) + ".txt",
        "非常长的文件名".repeat(20) + ".docx",
        "emoji 🎉🎊 party; \"quoted\" name.pdf".to_owned(),
        "plain.csv".to_owned(),
    ];
    for name in names {
        let req = MessageRequest {
            attachments: vec![attachment(&name, "application/octet-stream", b"x")],
            ..request()
        };
        let (_, rendered) = render(&req);
        let parsed = MessageParser::default()
            .parse(&rendered.bytes)
            .expect("parses");
        let part = parsed.attachments().next().expect("attachment");
        assert_eq!(part.attachment_name(), Some(name.as_str()));
        assert_eq!(
            part.content_type().and_then(|ct| ct.attribute("name")),
            Some(name.as_str()),
            "legacy name= for {name}"
        );
    }
}

#[test]
fn empty_text_body_is_an_empty_part() {
    let (_, rendered) = render(&MessageRequest {
        text: Some(String::new()),
        ..request()
    });
    let parsed = MessageParser::default()
        .parse(&rendered.bytes)
        .expect("parses");
    assert_eq!(parsed.body_text(0).as_deref().unwrap_or_default(), "");
    assert_eq!(shape(&parsed, parsed.root_part()), "text/plain");
}

#[test]
fn text_attachment_bytes_are_kept_exactly() {
    // Bare LF, CR and a trailing space must survive: attachments are files,
    // not text to be canonicalised.
    let csv = b"a,b\nc,d\r\ne \rlast line without ending ";
    let req = MessageRequest {
        attachments: vec![attachment("data.csv", "text/csv; charset=utf-8", csv)],
        ..request()
    };
    let (_, rendered) = render(&req);
    let parsed = MessageParser::default()
        .parse(&rendered.bytes)
        .expect("parses");
    assert_eq!(parsed.attachments().next().expect("csv").contents(), csv);
}

#[test]
fn ten_mebibyte_attachment_round_trips() {
    let big = binary(10 * 1024 * 1024);
    let req = MessageRequest {
        attachments: vec![attachment("big.bin", "application/octet-stream", &big)],
        ..request()
    };
    let (_, rendered) = render(&req);
    assert!(
        rendered.bytes.len() > big.len() * 4 / 3,
        "base64 expands the body"
    );
    let parsed = MessageParser::default()
        .parse(&rendered.bytes)
        .expect("parses");
    let part = parsed.attachments().next().expect("attachment");
    assert_eq!(part.contents().len(), big.len());
    assert!(
        part.contents() == big.as_slice(),
        "10 MiB attachment bytes differ"
    );
}

#[test]
fn internationalised_addresses_are_flagged_for_smtputf8() {
    let req = MessageRequest {
        to: vec!["用户 <用户@例子.中国>".into()],
        ..request()
    };
    let (message, rendered) = render(&req);
    assert!(rendered.smtputf8);
    assert!(message.envelope().needs_smtputf8());
    let parsed = MessageParser::default()
        .parse(&rendered.bytes)
        .expect("parses");
    let to = parsed.to().and_then(|a| a.first()).expect("to");
    assert_eq!(to.address(), Some("用户@例子.中国"));
    assert_eq!(to.name(), Some("用户"));
}
