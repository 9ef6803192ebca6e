//! `GET /v1/relays`: each relay as this node sees it now — its circuit,
//! its limits and how much of its daily quota is used, its connections.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The answer of `GET /v1/relays`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relays {
    /// The relays, in the order they are tried.
    pub relays: Vec<RelayStatus>,
}

/// One relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayStatus {
    /// The relay's name.
    pub name: String,
    /// Its host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// This node's circuit breaker for it.
    pub circuit: CircuitState,
    /// Its rate limit, `null` when it has none.
    pub rate: Option<RateStatus>,
    /// Its daily quota, `null` when it has none.
    pub quota: Option<QuotaStatus>,
    /// This node's connections to it.
    pub pool: PoolUse,
}

/// A circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Mail flows.
    Closed,
    /// The relay is skipped for a while.
    Open,
    /// A few probe messages decide whether it closes again.
    HalfOpen,
}

/// A relay's rate limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateStatus {
    /// The rate as configured, e.g. `20/s`.
    pub limit: String,
    /// Messages it lets go back to back.
    pub burst: u32,
}

/// A relay's daily quota, shared by every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaStatus {
    /// Messages per period.
    pub limit: u64,
    /// Messages taken in the current period.
    pub used: u64,
    /// Messages left in it.
    pub left: u64,
    /// When the current period began.
    #[serde(with = "time::serde::rfc3339")]
    pub period_start: OffsetDateTime,
    /// When the quota resets.
    #[serde(with = "time::serde::rfc3339")]
    pub resets_at: OffsetDateTime,
}

/// A relay's connection pool on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolUse {
    /// Connections open, busy or idle.
    pub open: usize,
    /// Of those, idle.
    pub idle: usize,
    /// The most it may open.
    pub max: usize,
}
