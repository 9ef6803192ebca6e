//! The committed corpus (`fuzz/corpus/TARGET/`) replayed through every
//! target on stable Rust: the ordinary test suite's smoke run of the fuzz
//! targets, and the regression test of every crash they found (each
//! crashing input is kept in the corpus, named `regression-*`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

fn replay(target: &str) {
    let (_, run) = herald_fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a target of that name");
    let inputs = corpus(target);
    assert!(!inputs.is_empty(), "no corpus for {target}");
    let failed: Vec<String> = inputs
        .iter()
        .filter(|(_, bytes)| catch_unwind(AssertUnwindSafe(|| run(bytes))).is_err())
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target} fails on {failed:#?}");
}

#[test]
fn reply_corpus_replays() {
    replay("reply");
}

#[test]
fn client_corpus_replays() {
    replay("client");
}

#[test]
fn mime_corpus_replays() {
    replay("mime");
}

#[test]
fn json_corpus_replays() {
    replay("json");
}

#[test]
fn config_corpus_replays() {
    replay("config");
}

#[test]
fn submission_corpus_replays() {
    replay("submission");
}

#[test]
fn every_target_has_a_corpus_and_a_fuzz_binary() {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    for (name, _) in herald_fuzz::TARGETS {
        assert!(!corpus(name).is_empty(), "{name}");
        let binary = fuzz.join("fuzz_targets").join(format!("{name}.rs"));
        assert!(binary.exists(), "{}", binary.display());
    }
}

/// The submission target's first finding: EHLO and HELO echoed the
/// client's name verbatim, NUL and 8-bit bytes included.
#[test]
fn ehlo_name_is_echoed_printable_only() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let output = runtime.block_on(async {
        let store = herald_store_sqlite::SqliteStore::open("sqlite::memory:")
            .await
            .unwrap();
        let input = b"EHLO c\xff\x00x\x07\r\nHELO \xe4\xb8\xad\r\nQUIT\r\n";
        herald_server::submission_fuzzing::session(std::sync::Arc::new(store), input).await
    });
    let text = String::from_utf8(output).expect("ASCII replies");
    assert!(text.contains("250-fuzz.example greets c??x?\r\n"), "{text}");
    assert!(text.contains("250 fuzz.example greets ?\r\n"), "{text}");
    assert!(text.ends_with("221 2.0.0 Bye\r\n"), "{text}");
}
