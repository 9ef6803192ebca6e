//! `[submission]`: off by default, limits inherited from `[limits]`, and
//! every mistake named.

use super::*;

const BASE: &str =
    "[submission]\nlisten = \"127.0.0.1:2587\"\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n";

#[test]
fn off_unless_configured() {
    assert!(ok("").submission.is_none());
    assert!(Config::default_embedded().submission.is_none());
}

#[test]
fn defaults_come_from_limits_and_rfc_5321() {
    let c = ok(&format!(
        "[limits]\nmax_message_bytes = 1000\nmax_recipients = 7\n{BASE}"
    ));
    let s = c.submission.expect("configured");
    assert_eq!(s.listen, Some("127.0.0.1:2587".parse().expect("addr")));
    assert_eq!(s.implicit_tls_listen, None);
    assert_eq!(s.max_message_bytes, 1000);
    assert_eq!(s.max_recipients, 7);
    assert_eq!(s.max_connections, 100);
    assert_eq!(s.command_timeout, Duration::from_secs(300));
    assert_eq!(s.data_timeout, Duration::from_secs(180));
    let c = ok(&format!(
        "{BASE}implicit_tls_listen = \"127.0.0.1:2465\"\nmax_message_bytes = 50\nmax_recipients = 3\n"
    ));
    let s = c.submission.expect("configured");
    assert_eq!(s.max_message_bytes, 50);
    assert_eq!(s.max_recipients, 3);
}

#[test]
fn mistakes_name_their_field() {
    for (text, field) in [
        (
            "[submission]\ncert_file = \"c\"\nkey_file = \"k\"\n".to_owned(),
            "submission",
        ),
        (
            "[submission]\nlisten = \"127.0.0.1:25\"\nkey_file = \"k\"\n".to_owned(),
            "submission.cert_file",
        ),
        (
            "[submission]\nlisten = \"127.0.0.1:25\"\ncert_file = \"c\"\n".to_owned(),
            "submission.key_file",
        ),
        (
            format!("{BASE}implicit_tls_listen = \"127.0.0.1:2587\"\n"),
            "submission.implicit_tls_listen",
        ),
        (
            format!("{BASE}max_connections = 0\n"),
            "submission.max_connections",
        ),
        (
            format!("{BASE}max_message_bytes = 0\n"),
            "submission.max_message_bytes",
        ),
        (
            format!("{BASE}max_recipients = 0\n"),
            "submission.max_recipients",
        ),
        (
            format!("{BASE}max_recipients = 10001\n"),
            "submission.max_recipients",
        ),
        (
            format!("{BASE}command_timeout = \"0s\"\n"),
            "submission.command_timeout",
        ),
        (
            format!("{BASE}data_timeout = \"0s\"\n"),
            "submission.data_timeout",
        ),
    ] {
        let e = err(&text);
        assert_eq!(e.field, field, "{text}\n→ {e}");
    }
    let e = err(&format!("{BASE}lsten = \"x\"\n"));
    assert!(e.to_string().contains("lsten"), "{e}");
}
