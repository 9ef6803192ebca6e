//! herald's fuzz targets as plain functions over bytes. cargo-fuzz runs
//! them from `fuzz/` (one line per target); `tests/corpus.rs` replays the
//! committed corpus (`fuzz/corpus/TARGET/`) through the same functions in
//! the ordinary test suite, on stable Rust. A target fails by panicking:
//! each states what must hold for every input.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a broken invariant is the finding

pub mod client;
pub mod config;
pub mod json;
pub mod mime;
pub mod reply;
pub mod submission;
mod wire;

/// A target: one input in, a panic if an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus directory and cargo-fuzz binary.
pub const TARGETS: &[(&str, Target)] = &[
    ("reply", reply::run),
    ("client", client::run),
    ("mime", mime::run),
    ("json", json::run),
    ("config", config::run),
    ("submission", submission::run),
];
