//! The SMTP reply parser (herald-smtp) over arbitrary bytes: never a
//! panic, and a reply it cuts off is a well-formed one that every shorter
//! read of the same bytes would have waited for.

use herald_smtp::parse_reply_for_fuzzing as parse;

/// One input: the bytes a server sent so far.
pub fn run(data: &[u8]) {
    let Ok(Some((reply, used))) = parse(data) else {
        return;
    };
    assert!(
        used > 0 && used <= data.len(),
        "used {used} of {}",
        data.len()
    );
    assert_eq!(data[used - 1], b'\n', "a reply ends at a line feed");
    assert!((200..600).contains(&reply.code()), "code {}", reply.code());
    assert!(!reply.lines().is_empty());
    if let Some(enhanced) = reply.enhanced_code() {
        assert_eq!(u16::from(enhanced.class), reply.code() / 100);
    }
    // Framing does not depend on what follows, nor on how reads split.
    assert_eq!(parse(&data[..used]), Ok(Some((reply.clone(), used))));
    assert_eq!(parse(&data[..used - 1]), Ok(None), "a shorter read waits");
    if let Some(mid) = data[..used - 1].iter().position(|&b| b == b'\n') {
        assert_eq!(parse(&data[..=mid]), Ok(None), "an earlier line waits");
    }
    // What logs and the API show is one line.
    let shown = reply.to_string();
    assert!(!shown.contains(['\r', '\n']), "{shown:?}");
}
