//! `POST /v1/admin/reload`: the configuration file read again and its
//! live sections put in force.

use serde::{Deserialize, Serialize};

/// The answer of `POST /v1/admin/reload` when the file was applied (a
/// file that does not validate is a `422` problem whose `detail` is what
/// `herald check-config` says about it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloaded {
    /// Always `applied`.
    pub result: ReloadResult,
    /// The sections now in force that differ from before, by their names
    /// in the file (`relays`, `retry`, `suppression`, `limits`, `auth`,
    /// `alerts.rules`, `webhooks`); empty when nothing changed.
    pub changed: Vec<String>,
    /// Fields that differ from what runs but are read at start only (for
    /// example `server.http_listen`, `store.url`): a restart applies them.
    pub restart_needed: Vec<String>,
}

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadResult {
    /// The file validated and its live sections are in force.
    Applied,
}
