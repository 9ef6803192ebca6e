//! The herald service: configuration, the HTTP API, the dispatcher and its
//! delivery workers, and the lifecycle that ties them together.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod alerts;
pub mod api;
pub mod config;
mod dispatch;
pub mod observe;
mod service;
pub mod trace;

pub use service::{ServeError, open_store, serve};
