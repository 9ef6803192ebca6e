//! The herald service: configuration, the HTTP API, the dispatcher and its
//! delivery workers, and the lifecycle that ties them together.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
mod cluster;
pub mod config;
mod dispatch;
mod http;
mod live;
pub mod oauth2;
pub mod observe;
pub mod redact;
pub mod reload;
mod service;
mod submission;
/// The submission session for the fuzz targets only (`fuzzing` feature).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use submission::fuzzing as submission_fuzzing;
pub mod trace;
mod upkeep;
mod webhooks;

pub use service::{
    Reload, ServeError, migrate, open_store, serve, serve_reloadable, serve_with_clock,
};

/// The mutex's guard, even if a panic elsewhere poisoned it: for state
/// that every step leaves whole (counts, maps updated in one call).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
