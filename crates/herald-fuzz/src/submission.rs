//! herald's SMTP submission session (herald-server) over arbitrary client
//! bytes, as the implicit-TLS listener runs it (so AUTH, MAIL, RCPT, DATA
//! and BDAT are reachable; the key is [`KEY`]). Never a panic, and every
//! byte the server writes is a valid SMTP reply: CRLF-terminated lines of
//! at most 512 octets, printable ASCII, framed as herald's own client reads
//! replies.

use std::sync::{Arc, Mutex, OnceLock};

pub use herald_server::submission_fuzzing::KEY;
use herald_server::submission_fuzzing::session;
use herald_store::Store;
use herald_store_sqlite::SqliteStore;

/// Inputs served by one in-memory store before it is replaced: opening
/// one per input (migrations included) held the target to ~30 inputs a
/// second; a store kept for ever would grow with every queued message.
const RUNS_PER_STORE: usize = 500;

/// One input: everything the client sends, pipelined at once.
pub fn run(data: &[u8]) {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    static STORE: Mutex<Option<(Arc<SqliteStore>, usize)>> = Mutex::new(None);
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    });
    let output = runtime.block_on(async {
        let lock = || {
            STORE
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let reused = match lock().as_mut() {
            Some((store, runs)) if *runs < RUNS_PER_STORE => {
                *runs += 1;
                Some(Arc::clone(store))
            }
            _ => None,
        };
        let store = match reused {
            Some(store) => store,
            None => {
                let store = SqliteStore::open("sqlite::memory:")
                    .await
                    .expect("an in-memory store");
                let store = Arc::new(store);
                let old = lock().replace((Arc::clone(&store), 1));
                if let Some((old, _)) = old
                    && let Ok(old) = Arc::try_unwrap(old)
                {
                    old.close().await;
                }
                store
            }
        };
        session(store as Arc<dyn Store>, data).await
    });
    assert_replies(&output);
}

/// Every line is an SMTP reply line, and the whole is a run of replies.
fn assert_replies(output: &[u8]) {
    assert!(
        output.is_empty() || output.ends_with(b"\r\n"),
        "unterminated"
    );
    for line in output.split_inclusive(|&b| b == b'\n') {
        assert!(line.len() <= 512, "a reply line of {} octets", line.len());
        let text = line.strip_suffix(b"\r\n").expect("CRLF line ending");
        assert!(
            text.iter().all(|&b| (b' '..=b'~').contains(&b)),
            "not printable ASCII: {:?}",
            String::from_utf8_lossy(text)
        );
        let valid = text.len() >= 3
            && text[..3].iter().all(u8::is_ascii_digit)
            && (b'2'..=b'5').contains(&text[0])
            && matches!(text.get(3), None | Some(b' ' | b'-'));
        assert!(
            valid,
            "not a reply line: {:?}",
            String::from_utf8_lossy(text)
        );
    }
    let mut rest = output;
    while !rest.is_empty() {
        match herald_smtp::parse_reply_for_fuzzing(rest) {
            Ok(Some((_, used))) => rest = &rest[used..],
            other => panic!(
                "not a reply: {other:?} at {:?}",
                String::from_utf8_lossy(rest)
            ),
        }
    }
}
