//! Header injection and SMTP smuggling: every field that reaches a header
//! refuses CR, LF, CRLF and NUL with an error naming the field, and bodies
//! render with CRLF line endings only, so that a lone CR or LF can never be
//! mistaken for the end of DATA.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald_message::{
    AttachmentRequest, Limits, MessageRequest, RenderOptions, ValidationErrors, message_id_for,
};
use mail_parser::MessageParser;
use time::macros::datetime;

const VECTORS: [(&str, &str); 4] = [
    ("\r", "contains a line break"),
    ("\n", "contains a line break"),
    ("\r\nBcc: victim@example.net", "contains a line break"),
    ("\0", "contains a NUL byte"),
];

fn base() -> MessageRequest {
    MessageRequest {
        from: Some("Alice <alice@example.com>".into()),
        to: vec!["bob@example.com".into()],
        subject: Some("Hello".into()),
        text: Some("hi".into()),
        html: Some("<img src=cid:logo>".into()),
        attachments: vec![
            AttachmentRequest {
                filename: Some("a.pdf".into()),
                content: STANDARD.encode(b"%PDF"),
                ..Default::default()
            },
            AttachmentRequest {
                filename: Some("logo.png".into()),
                content: STANDARD.encode(b"png"),
                inline: true,
                content_id: Some("logo".into()),
                ..Default::default()
            },
        ],
        headers: [("X-Campaign".to_owned(), "welcome".to_owned())].into(),
        ..Default::default()
    }
}

fn errors(request: &MessageRequest) -> ValidationErrors {
    match request.validate(&Limits::default()) {
        Ok(message) => panic!("accepted {:?}", message.render(&options()).bytes),
        Err(errors) => errors,
    }
}

fn options() -> RenderOptions {
    RenderOptions {
        message_id: "id@example.com".into(),
        date: datetime!(2026-11-22 10:00:00 UTC),
        extra_headers: Vec::new(),
    }
}

/// Each way a vector can be planted in a request, with the field the
/// error must name.
type Plant = fn(&mut MessageRequest, &str);
fn plants() -> Vec<(&'static str, Plant)> {
    vec![
        ("subject", |r, v| r.subject = Some(format!("Hi{v}there"))),
        ("from", |r, v| {
            r.from = Some(format!("Ali{v}ce <alice@example.com>"))
        }),
        ("from", |r, v| {
            r.from = Some(format!("alice{v}@example.com"))
        }),
        ("to[1]", |r, v| {
            r.to.push(format!("Bo{v}b <bob2@example.com>"))
        }),
        ("cc[0]", |r, v| r.cc.push(format!("carol@exa{v}mple.com"))),
        ("bcc[0]", |r, v| r.bcc.push(format!("dave@example.com{v}"))),
        ("reply_to", |r, v| {
            r.reply_to = Some(format!("\"Sup{v}port\" <s@example.com>"))
        }),
        ("headers.X-Campaign", |r, v| {
            r.headers.insert("X-Campaign".into(), format!("wel{v}come"));
        }),
        ("attachments[0].filename", |r, v| {
            r.attachments[0].filename = Some(format!("a{v}.pdf"));
        }),
        ("attachments[1].content_id", |r, v| {
            r.attachments[1].content_id = Some(format!("lo{v}go"));
        }),
        ("attachments[0].content_type", |r, v| {
            r.attachments[0].content_type = Some(format!("application/pdf{v}"));
        }),
        ("tags[0]", |r, v| r.tags.push(format!("t{v}ag"))),
    ]
}

#[test]
fn every_header_bound_field_refuses_line_breaks_and_nul() {
    for (field, plant) in plants() {
        for (vector, reason) in VECTORS {
            let mut request = base();
            plant(&mut request, vector);
            let errors = errors(&request);
            let first = errors.first();
            assert_eq!(first.field, field, "vector {vector:?}");
            assert!(
                first.message.contains(reason),
                "{field} with {vector:?}: {first}"
            );
        }
    }
}

#[test]
fn header_names_refuse_line_breaks_and_nul() {
    for (vector, _) in VECTORS {
        let mut request = base();
        request
            .headers
            .insert(format!("X-Evil{vector}"), "v".into());
        let errors = errors(&request);
        let first = errors.first();
        assert!(first.field.starts_with("headers.X-Evil"), "{first}");
        assert!(
            first.message.contains("not allowed in a header name"),
            "{first}"
        );
        // The field name echoed back is escaped, so the error is one line.
        assert!(!first.to_string().contains(['\r', '\n', '\0']), "{first:?}");
    }
}

#[test]
fn reserved_headers_cannot_be_overridden() {
    for name in [
        "From",
        "bcc",
        "Message-ID",
        "Content-Type",
        "MIME-Version",
        "Date",
        "Subject",
    ] {
        let mut request = base();
        request.headers.insert(name.into(), "x".into());
        let first = errors(&request).first().clone();
        assert_eq!(first.field, format!("headers.{name}"));
        assert!(first.message.contains("may not be set"), "{first}");
    }
    let mut request = base();
    request.headers.insert("x-campaign".into(), "again".into());
    let first = errors(&request).first().clone();
    assert!(first.message.contains("given twice"), "{first}");
}

#[test]
fn every_error_is_reported_at_once() {
    let mut request = base();
    request.subject = Some("a\nb".into());
    request.to = vec!["not-an-address".into()];
    request.attachments[0].content = "!!!".into();
    let errors = errors(&request);
    let fields: Vec<_> = errors.errors().iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["to[0]", "subject", "attachments[0].content"]);
    assert_eq!(
        errors.to_string(),
        "to[0]: not an e-mail address: missing '@' (and 2 more)"
    );
}

type Mutation = Box<dyn Fn(&mut MessageRequest)>;

#[test]
fn semantic_rules_name_their_field() {
    let cases: Vec<(Mutation, &str, &str)> = vec![
        (Box::new(|r| r.from = None), "from", "is required"),
        (Box::new(|r| r.to.clear()), "to", "no recipient"),
        (
            Box::new(|r| {
                r.text = None;
                r.html = None;
            }),
            "text",
            "no body",
        ),
        (
            Box::new(|r| r.to = vec!["a@example.com".into(); 101]),
            "to",
            "too many recipients",
        ),
        (Box::new(|r| r.text = Some("a\0b".into())), "text", "NUL"),
        (
            Box::new(|r| r.attachments[0].content = "@@@".into()),
            "attachments[0].content",
            "base64",
        ),
        (
            Box::new(|r| r.attachments[0].filename = None),
            "attachments[0].filename",
            "required",
        ),
        (
            Box::new(|r| r.attachments[1].content_id = None),
            "attachments[1].content_id",
            "required",
        ),
        (
            Box::new(|r| r.attachments[0].content_type = Some("multipart/mixed".into())),
            "attachments[0].content_type",
            "multipart",
        ),
        (Box::new(|r| r.html = None), "attachments[1].inline", "html"),
        (
            Box::new(|r| {
                let again = r.attachments[1].clone();
                r.attachments.push(again);
            }),
            "attachments[2].content_id",
            "another part",
        ),
    ];
    for (mutate, field, reason) in cases {
        let mut request = base();
        mutate(&mut request);
        let first = errors(&request).first().clone();
        assert_eq!(first.field, field, "{first}");
        assert!(first.message.contains(reason), "{first}");
    }
}

#[test]
fn json_with_unknown_fields_or_wrong_types_is_refused() {
    let unknown = r#"{"from":"a@example.com","to":["b@example.com"],"txt":"typo"}"#;
    assert!(serde_json::from_str::<MessageRequest>(unknown).is_err());
    let wrong = r#"{"from":"a@example.com","to":"b@example.com","text":"x"}"#;
    assert!(serde_json::from_str::<MessageRequest>(wrong).is_err());
    let fine = r#"{"from":"a@example.com","to":["b@example.com"],"text":"x",
                   "send_at":"2026-11-22T10:00:00Z"}"#;
    let request: MessageRequest = serde_json::from_str(fine).unwrap();
    assert!(request.validate(&Limits::default()).is_ok());
}

#[test]
fn smuggling_vectors_in_bodies_render_as_crlf_lines() {
    let vectors = [
        "before\r\n.\r\nMAIL FROM:<evil@example.net>\r\nafter",
        "before\n.\nRCPT TO:<evil@example.net>\nafter",
        "before\r.\rDATA\rafter",
        "before\n.\r\nmixed\r\n.\nendings",
        ".leading dot\r\n..two dots\r\n.",
    ];
    for body in vectors {
        for html in [false, true] {
            let mut request = base();
            request.attachments.clear();
            if html {
                request.html = Some(body.into());
            } else {
                request.html = None;
                request.text = Some(body.into());
            }
            let message = request.validate(&Limits::default()).unwrap();
            let bytes = message.render(&options()).bytes;
            for (i, &b) in bytes.iter().enumerate() {
                match b {
                    b'\n' => assert_eq!(bytes[i - 1], b'\r', "bare LF in {body:?}"),
                    b'\r' => assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR in {body:?}"),
                    _ => {}
                }
            }
            // The body decodes to the text with its line endings made CRLF:
            // nothing is lost, nothing ends early.
            let want = body
                .replace("\r\n", "\n")
                .replace('\r', "\n")
                .replace('\n', "\r\n");
            let parsed = MessageParser::default().parse(&bytes).unwrap();
            let got = if html {
                parsed.body_html(0)
            } else {
                parsed.body_text(0)
            };
            assert_eq!(got.as_deref(), Some(want.as_str()), "{body:?}");
        }
    }
}

#[test]
fn message_id_uses_an_ascii_domain() {
    let ascii = herald_message::EmailAddress::parse("a@example.com").unwrap();
    assert_eq!(message_id_for("X1", &ascii), "X1@example.com");
    let idn = herald_message::EmailAddress::parse("a@例子.中国").unwrap();
    assert_eq!(message_id_for("X1", &idn), "X1@herald.invalid");
}
