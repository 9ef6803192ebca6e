//! SMTP transparency (RFC 5321 section 4.5.2) done defensively: every line
//! ending becomes CRLF and every line starting with `.` gets another, so
//! that no byte sequence in a message can end DATA early ("SMTP
//! smuggling" relies on servers that accept a bare LF or CR around the dot).

/// Appends `body`, dot-stuffed and CRLF-normalised, followed by the
/// end-of-data marker, to `out`.
pub(crate) fn write_data(body: &[u8], out: &mut Vec<u8>) {
    out.reserve(body.len() + body.len() / 64 + 8);
    let mut at_line_start = true;
    let mut i = 0;
    while i < body.len() {
        if at_line_start && body[i] == b'.' {
            out.push(b'.');
        }
        // Copy up to the next CR or LF in one go: the common case is long
        // runs of ordinary bytes.
        let run_end = body[i..]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .map_or(body.len(), |p| i + p);
        out.extend_from_slice(&body[i..run_end]);
        if run_end == body.len() {
            at_line_start = false;
            break;
        }
        // One line ending: CRLF, or a lone CR, or a lone LF.
        let ending_len = if body[run_end] == b'\r' && body.get(run_end + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        out.extend_from_slice(b"\r\n");
        at_line_start = true;
        i = run_end + ending_len;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_data(body, &mut out);
        out
    }

    #[test]
    fn lines_starting_with_a_dot_are_stuffed() {
        assert_eq!(data(b".\r\n"), b"..\r\n.\r\n");
        assert_eq!(data(b"a\r\n.\r\nb\r\n"), b"a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(data(b"..x\r\n"), b"...x\r\n.\r\n");
        assert_eq!(data(b"a.b\r\n"), b"a.b\r\n.\r\n");
    }

    #[test]
    fn bare_cr_and_lf_become_crlf_so_no_dot_can_end_data() {
        assert_eq!(data(b"a\n.\nb"), b"a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(data(b"a\r.\rb"), b"a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(data(b"a\r\n.\nb"), b"a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(data(b"a\n.\r\nb"), b"a\r\n..\r\nb\r\n.\r\n");
        // The only CRLF.CRLF in the output is the real end.
        for body in [&b"x\r\n.\r\ny"[..], b"\n.\n", b"\r.\r", b".", b"\r\n.\r\n"] {
            let out = data(body);
            let ends = out.windows(5).filter(|w| w == b"\r\n.\r\n").count()
                + usize::from(out.starts_with(b".\r\n"));
            assert_eq!(ends, 1, "{body:?} -> {out:?}");
            assert!(out.ends_with(b"\r\n.\r\n") || out == b".\r\n");
        }
    }

    #[test]
    fn a_missing_final_line_ending_is_added() {
        assert_eq!(data(b"abc"), b"abc\r\n.\r\n");
        assert_eq!(data(b""), b".\r\n");
        assert_eq!(data(b"abc\r\n"), b"abc\r\n.\r\n");
    }
}
