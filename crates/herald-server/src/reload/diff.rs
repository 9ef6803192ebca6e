//! What differs between the configuration in force and the file: which
//! live sections a reload replaces, and which start-only fields would
//! need a restart. Pure, so that it is table-tested.

use crate::config::{Config, RelayConfig};

/// The differences between the running configuration and a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// `[[relays]]`: any relay added, removed, reordered or changed.
    pub(crate) relays: bool,
    /// `[retry]`.
    pub(crate) retry: bool,
    /// `[suppression]`.
    pub(crate) suppression: bool,
    /// `[limits]`.
    pub(crate) limits: bool,
    /// `[auth]`: the API keys (and their names and scopes).
    pub(crate) auth: bool,
    /// `[[alerts.rules]]`.
    pub(crate) alert_rules: bool,
    /// `[[webhooks]]`.
    pub(crate) webhooks: bool,
    /// Start-only fields that differ, by their names in the file.
    pub(crate) restart_needed: Vec<String>,
}

impl Changes {
    /// The live sections that changed, by their names in the file.
    pub(crate) fn live_sections(&self) -> Vec<String> {
        [
            (self.relays, "relays"),
            (self.retry, "retry"),
            (self.suppression, "suppression"),
            (self.limits, "limits"),
            (self.auth, "auth"),
            (self.alert_rules, "alerts.rules"),
            (self.webhooks, "webhooks"),
        ]
        .into_iter()
        .filter(|(changed, _)| *changed)
        .map(|(_, name)| name.to_owned())
        .collect()
    }

    /// Moves `new`'s live sections into `running`; the start-only fields
    /// stay as they are (they are what runs), so that every later reload
    /// names them again until a restart.
    pub(crate) fn carry_over(&self, running: &mut Config, new: Config) {
        running.relays = new.relays;
        running.retry = new.retry;
        running.suppression = new.suppression;
        running.limits = new.limits;
        running.auth = new.auth;
        running.alerts.rules = new.alerts.rules;
        running.webhooks = new.webhooks;
        // The relays' SMTP settings come from `[delivery]` too (timeouts,
        // HELO name): in force through the relays, compared there.
        running.delivery.timeouts = new.delivery.timeouts;
        running.delivery.helo_name = new.delivery.helo_name;
    }
}

/// Whether two relay entries describe the same relay: same name, same
/// server and TLS, same credentials, same pool, breaker and limits. A
/// relay that is the same keeps its pool and breaker across a reload.
pub(crate) fn same_relay(a: &RelayConfig, b: &RelayConfig) -> bool {
    a.name == b.name
        && a.client.host == b.client.host
        && a.client.port == b.client.port
        && a.client.tls == b.client.tls
        && a.ca_file == b.ca_file
        && same_credentials(a, b)
        && a.client.allow_insecure_auth == b.client.allow_insecure_auth
        && a.client.helo_name == b.client.helo_name
        && a.client.timeouts == b.client.timeouts
        && a.pool == b.pool
        && a.breaker == b.breaker
        && a.rate == b.rate
        && a.daily_quota == b.daily_quota
}

/// Whether two relays authenticate the same way. A token source is made
/// anew for each reading of the file, so relays with `[relays.oauth2]`
/// compare their settings, not their sources.
fn same_credentials(a: &RelayConfig, b: &RelayConfig) -> bool {
    match (&a.oauth2, &b.oauth2) {
        (Some(x), Some(y)) => {
            let user = |r: &RelayConfig| r.client.credentials.as_ref().map(|c| c.username.clone());
            x == y && user(a) == user(b)
        }
        (None, None) => a.client.credentials == b.client.credentials,
        _ => false,
    }
}

/// What differs between `running` and `new`.
pub(crate) fn diff(running: &Config, new: &Config) -> Changes {
    let mut restart = Vec::new();
    let mut start_only = |changed: bool, name: &str| {
        if changed {
            restart.push(name.to_owned());
        }
    };
    let (s, n) = (&running.server, &new.server);
    start_only(s.http_listen != n.http_listen, "server.http_listen");
    start_only(s.drain_timeout != n.drain_timeout, "server.drain_timeout");
    start_only(
        s.header_read_timeout != n.header_read_timeout,
        "server.header_read_timeout",
    );
    start_only(
        s.body_read_timeout != n.body_read_timeout,
        "server.body_read_timeout",
    );
    start_only(s.idle_timeout != n.idle_timeout, "server.idle_timeout");
    start_only(
        s.max_connections != n.max_connections,
        "server.max_connections",
    );
    start_only(s.umask != n.umask, "server.umask");
    start_only(s.node_id != n.node_id, "server.node_id");
    let (s, n) = (&running.store, &new.store);
    start_only(s.url != n.url, "store.url");
    start_only(s.pool_size != n.pool_size, "store.pool_size");
    start_only(s.retention != n.retention, "store.retention");
    let (s, n) = (&running.delivery, &new.delivery);
    start_only(s.concurrency != n.concurrency, "delivery.concurrency");
    start_only(s.lease != n.lease, "delivery.lease");
    start_only(
        s.max_lost_leases != n.max_lost_leases,
        "delivery.max_lost_leases",
    );
    start_only(s.poll_interval != n.poll_interval, "delivery.poll_interval");
    start_only(running.outbox != new.outbox, "outbox.dir");
    start_only(running.tracing != new.tracing, "tracing");
    start_only(running.submission != new.submission, "submission");
    let (s, n) = (&running.alerts, &new.alerts);
    start_only(s.channels != n.channels, "alerts.channels");
    start_only(
        s.window != n.window
            || s.evaluate_every != n.evaluate_every
            || s.history != n.history
            || s.max_groups != n.max_groups
            || s.queue_capacity != n.queue_capacity
            || s.send != n.send,
        "alerts (window, evaluate_every, history, max_groups, queue_capacity, send_*)",
    );
    Changes {
        relays: running.relays.len() != new.relays.len()
            || running
                .relays
                .iter()
                .zip(&new.relays)
                .any(|(a, b)| !same_relay(a, b)),
        retry: running.retry != new.retry,
        suppression: running.suppression != new.suppression,
        limits: running.limits != new.limits,
        auth: running.auth != new.auth,
        alert_rules: running.alerts.rules != new.alerts.rules,
        webhooks: running.webhooks != new.webhooks,
        restart_needed: restart,
    }
}

#[cfg(test)]
mod tests;
