//! A relay's limits as the dispatcher applies them: its daily quota
//! (counted in the store, so every node and every restart shares it) and
//! its rate (a GCRA slot taken from the store: in memory on SQLite, one
//! conditional upsert on PostgreSQL). A message over the rate waits for a
//! slot under its lease, which the heartbeat keeps; a relay over its
//! quota is skipped until the reset.

use std::time::Duration;

use herald_policy::RateLimit;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{Dispatcher, Relay};

/// The longest single sleep while waiting for a rate slot: the slot is
/// asked for again after it, so a wait the store over-estimated (another
/// node's slot given back, a clock step) is not slept through.
const MAX_NAP: Duration = Duration::from_secs(1);

/// What the quota said about a relay for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Quota {
    /// No quota, or the store could not be asked (sending is the safer
    /// mistake: the relay itself refuses what is over its limit).
    Free,
    /// One message taken in the period that began then; given back if the
    /// relay cannot have taken it.
    Taken(OffsetDateTime),
    /// Spent until the reset at this time.
    Spent(OffsetDateTime),
}

impl Dispatcher {
    /// Takes one message from `relay`'s quota, if it has one.
    pub(super) async fn take_quota(&self, relay: &Relay) -> Quota {
        let Some(quota) = relay.quota else {
            return Quota::Free;
        };
        let now = self.clock.now();
        let period = quota.reset.period(now);
        match self
            .store
            .take_quota(&relay.name, period, quota.limit)
            .await
        {
            Ok(true) => Quota::Taken(period),
            Ok(false) => Quota::Spent(quota.reset.next(now)),
            Err(error) => {
                tracing::warn!(relay = %relay.name, error = %error, "reading the quota failed; sending anyway");
                Quota::Free
            }
        }
    }

    /// Gives back what [`take_quota`](Self::take_quota) took: the message
    /// was not sent, or the relay refused it before the data.
    pub(super) async fn return_quota(&self, relay: &Relay, quota: Quota) {
        if let Quota::Taken(period) = quota
            && let Err(error) = self.store.return_quota(&relay.name, period).await
        {
            tracing::warn!(relay = %relay.name, error = %error, "giving back to the quota failed");
        }
    }

    /// Waits until `relay`'s rate has a slot for one more message; false
    /// if `abort` came first (nothing is sent then). No attempt is spent
    /// while waiting.
    pub(super) async fn wait_for_slot(&self, relay: &Relay, abort: &CancellationToken) -> bool {
        let Some(limit) = relay.rate else {
            return true;
        };
        loop {
            match self.take_slot(relay, limit).await {
                None => return true,
                Some(wait) => {
                    tokio::select! {
                        () = abort.cancelled() => return false,
                        () = tokio::time::sleep(wait.min(MAX_NAP)) => {}
                    }
                }
            }
        }
    }

    async fn take_slot(&self, relay: &Relay, limit: RateLimit) -> Option<Duration> {
        match self
            .store
            .take_rate_slot(&relay.name, limit, self.clock.now())
            .await
        {
            Ok(wait) => wait,
            Err(error) => {
                tracing::warn!(relay = %relay.name, error = %error, "taking a rate slot failed; sending anyway");
                None
            }
        }
    }
}
