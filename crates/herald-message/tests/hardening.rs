//! Requests built to hurt: lists long enough to blow up the answer, media
//! types and names that would stretch a header line past 998 octets, names
//! that read differently from what they are, and headers that only a
//! receiving server may write.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald_message::{AttachmentRequest, Limits, MessageRequest, RenderOptions, message_id_for};
use proptest::prelude::*;
use time::macros::datetime;

fn base() -> MessageRequest {
    MessageRequest {
        from: Some("Alice <alice@example.com>".into()),
        to: vec!["bob@example.com".into()],
        subject: Some("Hello".into()),
        text: Some("hi".into()),
        attachments: vec![AttachmentRequest {
            filename: Some("a.pdf".into()),
            content: STANDARD.encode(b"%PDF"),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn options() -> RenderOptions {
    RenderOptions {
        message_id: message_id_for("01J0000000000000000000000", &"a@example.com".parse_addr()),
        date: datetime!(2026-11-22 10:00:00 UTC),
        extra_headers: Vec::new(),
    }
}

trait ParseAddr {
    fn parse_addr(&self) -> herald_message::EmailAddress;
}

impl ParseAddr for str {
    fn parse_addr(&self) -> herald_message::EmailAddress {
        herald_message::EmailAddress::parse(self).unwrap()
    }
}

/// The fields of every error, in order.
fn error_fields(request: &MessageRequest) -> Vec<(String, String)> {
    match request.validate(&Limits::default()) {
        Ok(_) => panic!("accepted"),
        Err(errors) => errors
            .errors()
            .iter()
            .map(|e| (e.field.clone(), e.message.clone()))
            .collect(),
    }
}

#[test]
fn too_many_recipients_is_one_error_whatever_they_hold() {
    for list in ["to", "cc", "bcc"] {
        let mut request = base();
        let junk = vec![String::new(); 5000];
        match list {
            "to" => request.to = junk,
            "cc" => request.cc = junk,
            _ => request.bcc = junk,
        }
        let errors = error_fields(&request);
        assert_eq!(errors.len(), 1, "{list}: {errors:?}");
        assert_eq!(errors[0].0, "to");
        assert!(errors[0].1.contains("too many recipients"), "{errors:?}");
    }
    // Under the limit, each bad address is still named.
    let mut request = base();
    request.to = vec![String::new(); 3];
    let fields: Vec<String> = error_fields(&request).into_iter().map(|e| e.0).collect();
    assert_eq!(fields, ["to[0]", "to[1]", "to[2]"]);
}

#[test]
fn content_type_parameters_other_than_charset_are_refused() {
    for (content_type, expected) in [
        (
            "text/plain; name=\"evil.exe\"",
            "parameter \"name\" is not allowed",
        ),
        ("application/pdf; x=1", "parameter \"x\" is not allowed"),
        ("text/plain; charset=\"a\\\"b\"", "charset"),
        ("text/plain;charset=utf-8;charset=utf-8", "charset"),
        (
            "application/pdf; x=\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
            "not allowed",
        ),
        ("textplain", "not a media type"),
    ] {
        let mut request = base();
        request.attachments[0].content_type = Some(content_type.into());
        let errors = error_fields(&request);
        assert_eq!(errors.len(), 1, "{content_type}: {errors:?}");
        assert_eq!(errors[0].0, "attachments[0].content_type");
        assert!(errors[0].1.contains(expected), "{content_type}: {errors:?}");
    }
    let mut request = base();
    request.attachments[0].content_type = Some("text/csv; charset=UTF-8".into());
    let message = request.validate(&Limits::default()).unwrap();
    assert_eq!(
        message.attachments()[0].content_type.as_str(),
        "text/csv; charset=utf-8"
    );
}

#[test]
fn bidi_and_invisible_characters_in_shown_names_are_refused_naming_the_field() {
    for c in [
        '\u{202E}', '\u{2066}', '\u{200B}', '\u{200D}', '\u{FEFF}', '\u{2060}',
    ] {
        let mut request = base();
        request.attachments[0].filename = Some(format!("invoice{c}fdp.exe"));
        let errors = error_fields(&request);
        assert_eq!(errors[0].0, "attachments[0].filename", "{errors:?}");
        assert!(errors[0].1.contains("invisible or direction-changing"));

        for field in ["from", "to[0]", "reply_to"] {
            let mut request = base();
            let value = format!("Pay{c}Pal <service@example.com>");
            match field {
                "from" => request.from = Some(value),
                "to[0]" => request.to = vec![value],
                _ => request.reply_to = Some(value),
            }
            let errors = error_fields(&request);
            assert_eq!(errors.len(), 1, "{field}: {errors:?}");
            assert_eq!(errors[0].0, field);
            assert!(errors[0].1.contains("direction-changing"), "{errors:?}");
        }
    }
}

#[test]
fn headers_only_receivers_write_are_reserved() {
    for name in [
        "Authentication-Results",
        "DKIM-Signature",
        "ARC-Seal",
        "ARC-Message-Signature",
        "ARC-Authentication-Results",
        "Received-SPF",
        "Resent-To",
        "Disposition-Notification-To",
        "Return-Receipt-To",
    ] {
        let mut request = base();
        request.headers = [(name.to_owned(), "x".to_owned())].into();
        let errors = error_fields(&request);
        assert_eq!(errors[0].0, format!("headers.{name}"));
        assert!(errors[0].1.contains("may not be set"), "{errors:?}");
    }
}

/// Every line of the header sections (the message's and each part's) is
/// at most 998 octets (RFC 5322 section 2.1.1).
fn assert_lines_fit(bytes: &[u8]) {
    for line in bytes.split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "a line of {} octets", line.len() - 1);
    }
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,300}",
        "\\PC{0,300}",
        proptest::collection::vec(any::<char>(), 0..300)
            .prop_map(|chars| chars.into_iter().collect()),
    ]
}

fn media_type() -> impl Strategy<Value = String> {
    prop_oneof![
        any_text(),
        ("[!-~]{0,200}", "[!-~]{0,200}").prop_map(|(t, s)| format!("{t}/{s}")),
        ("[a-z]{1,140}", "[a-z.+-]{1,140}", "[!-~]{0,120}")
            .prop_map(|(t, s, c)| format!("{t}/{s}; charset={c}")),
        (
            "[a-z]{1,20}",
            "[a-z]{1,20}",
            "[a-z]{1,40}",
            "[a-zA-Z0-9._-]{0,2000}"
        )
            .prop_map(|(t, s, p, v)| format!("{t}/{s}; {p}=\"{v}\"")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn rendered_header_lines_stay_within_998_octets(
        content_type in media_type(),
        filename in prop_oneof!["[ -~]{1,255}", "\\PC{1,255}", any_text()],
        display in any_text(),
        subject in any_text(),
    ) {
        let mut request = base();
        request.from = Some(format!("\"{}\" <alice@example.com>", display.replace(['"', '\\'], "")));
        request.subject = Some(subject);
        request.attachments[0].content_type = Some(content_type);
        request.attachments[0].filename = Some(filename);
        if let Ok(message) = request.validate(&Limits::default()) {
            assert_lines_fit(&message.render(&options()).bytes);
        }
    }
}
