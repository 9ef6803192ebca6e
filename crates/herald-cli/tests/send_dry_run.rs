//! `herald send --dry-run` as a user runs it: the binary, real files, the
//! bytes on stdout parsed back, and exit statuses.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// These tests run the binary in its own process: they wait on real time
// (for conditions, with deadlines), so they read the machine's clocks.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::process::{Command, Output};

use mail_parser::{MessageParser, MimeHeaders};

fn herald(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .output()
        .expect("run herald")
}

fn repo_file(path: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join(path).to_string_lossy().into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn json_example_renders_a_complete_message() {
    let out = herald(&[
        "send",
        "--dry-run",
        "--json",
        &repo_file("examples/welcome.json"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let parsed = MessageParser::default().parse(&out.stdout).expect("parses");
    assert_eq!(parsed.subject(), Some("欢迎 — welcome to herald ✉"));
    assert_eq!(
        parsed.from().and_then(|a| a.first()).and_then(|a| a.name()),
        Some("Herald Demo")
    );
    assert!(parsed.body_html(0).is_some_and(|h| h.contains("424242")));
    let names: Vec<_> = parsed
        .attachments()
        .filter_map(|p| p.attachment_name())
        .collect();
    assert_eq!(names, ["logo.png", "条款 terms.txt"]);
    let id = parsed.message_id().expect("Message-ID");
    assert!(id.ends_with("@example.com"), "{id}");
}

#[test]
fn flags_compose_text_html_attachments_and_inline_parts() {
    let dir = std::env::temp_dir().join(format!("herald-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let html = dir.join("body.html");
    std::fs::write(&html, "<p>Hi <img src=\"cid:logo\"></p>").unwrap();
    let report = dir.join("报告 2026.bin");
    let report_bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    std::fs::write(&report, &report_bytes).unwrap();
    let logo = dir.join("logo.png");
    std::fs::write(&logo, b"\x89PNG\r\n\x1a\n").unwrap();

    let out = herald(&[
        "send",
        "--dry-run",
        "--from",
        "Ops 运维 <ops@example.com>",
        "--to",
        "a@example.com",
        "--to",
        "B <b@example.org>",
        "--bcc",
        "hidden@example.com",
        "--subject",
        "Report ready",
        "--text",
        "See attached.",
        "--html-file",
        html.to_str().unwrap(),
        "--attach",
        report.to_str().unwrap(),
        "--inline",
        &format!("{}=logo", logo.display()),
        "--header",
        "X-Priority: 1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.to_ascii_lowercase().contains("\nbcc:"), "Bcc leaked");
    assert!(!text.contains("hidden@example.com"), "Bcc address leaked");
    let parsed = MessageParser::default().parse(&out.stdout).expect("parses");
    assert_eq!(parsed.to().map(|t| t.iter().count()), Some(2));
    assert_eq!(parsed.body_text(0).as_deref(), Some("See attached."));
    let file = parsed
        .attachments()
        .find(|p| p.content_id().is_none())
        .expect("file attachment");
    assert_eq!(file.attachment_name(), Some("报告 2026.bin"));
    assert_eq!(file.contents(), report_bytes.as_slice());
    let inline = parsed
        .attachments()
        .find(|p| p.content_id().is_some())
        .expect("inline part");
    assert_eq!(inline.content_id(), Some("logo"));
    assert_eq!(parsed.header_raw("X-Priority").map(str::trim), Some("1"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn invalid_input_exits_2_with_one_line_naming_the_field() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--from",
                "a@example.com",
                "--to",
                "b@example.com",
                "--subject",
                "a\nb",
                "--text",
                "x",
            ],
            "error: subject: contains a line break",
        ),
        (
            &["--from", "a@example.com", "--to", "nope", "--text", "x"],
            "error: to[0]: not an e-mail address: missing '@'",
        ),
        (
            &["--from", "a@example.com", "--text", "x"],
            "error: to: no recipient",
        ),
        (
            &[
                "--from",
                "a@example.com",
                "--to",
                "b@example.com",
                "--text",
                "x",
                "--header",
                "Bcc: c@example.com",
            ],
            "error: headers.Bcc: header Bcc may not be set; herald sets it",
        ),
        (
            &[
                "--from",
                "a@example.com",
                "--to",
                "b@example.com",
                "--text",
                "x",
                "--header",
                "NoColon",
            ],
            "error: --header: expected 'Name: value'",
        ),
        (
            &[
                "--from",
                "a@example.com",
                "--to",
                "b@example.com",
                "--text-file",
                "/nonexistent/body.txt",
            ],
            "error: --text-file: cannot read /nonexistent/body.txt",
        ),
    ];
    for (args, want) in cases {
        let mut full = vec!["send", "--dry-run"];
        full.extend_from_slice(args);
        let out = herald(&full);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with(want), "{args:?}: {err}");
    }
}

#[test]
fn malformed_json_exits_2() {
    let dir = std::env::temp_dir().join(format!("herald-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"from": "a@example.com", "to": "#).unwrap();
    let out = herald(&["send", "--dry-run", "--json", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).starts_with("error: --json:"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).ok();
}
