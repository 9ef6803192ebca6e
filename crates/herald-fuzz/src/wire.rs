//! What every rendered message must be on the wire, whatever its content.

use herald_message::{Message, RenderOptions, message_id_for};
use time::macros::datetime;

/// Fixed render options: rendering is then a function of the message.
pub(crate) fn options(message: &Message) -> RenderOptions {
    RenderOptions {
        message_id: message_id_for("01JD7Y3M6N8Q4R2S5T7V9W0XYZ", message.from()),
        date: datetime!(2026-11-22 10:00:00 UTC),
        extra_headers: Vec::new(),
    }
}

/// CRLF line endings only, no NUL, no line over 998 octets, a header
/// block, and no Bcc header.
pub(crate) fn assert_wire_safe(bytes: &[u8]) {
    for (i, &b) in bytes.iter().enumerate() {
        assert_ne!(b, 0, "NUL at byte {i}");
        if b == b'\n' {
            assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF at byte {i}");
        }
        if b == b'\r' {
            assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at byte {i}");
        }
    }
    for line in bytes.split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "a line of {} octets", line.len());
    }
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header/body separator");
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    assert!(
        !head.starts_with("bcc:") && !head.contains("\nbcc:"),
        "Bcc leaked"
    );
}
