//! A relay's limits as the dispatcher applies them: its daily quota
//! (counted in the store, so every node and every restart shares it) and
//! its rate (GCRA slots taken from the store: in memory on SQLite, one
//! conditional upsert on PostgreSQL). Both are taken a block at a time and
//! spent from what this node holds ([`Held`]), so a busy relay costs the
//! store one round trip per block rather than per message; small limits
//! have blocks of one and are exact. A message over the rate waits for a
//! slot under its lease, which the heartbeat keeps; a relay over its quota
//! is skipped until the reset.

use std::time::Duration;

use herald_policy::{QuotaBlock, RateLimit, Slot, SlotBlock, quota_block, rate_block};
use herald_store::RateSlots;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{Dispatcher, Relay};

/// The longest single sleep while waiting for a rate slot: the slot is
/// asked for again after it, so a wait the store over-estimated (another
/// node's slot given back, a clock step) is not slept through.
const MAX_NAP: Duration = Duration::from_secs(1);

/// What this node holds of a relay's limits: quota units of the current
/// period and rate slots, taken from the store in blocks. The locks are
/// async so that one worker refills a block while the others wait for it
/// instead of each asking the store.
#[derive(Debug, Default)]
pub(crate) struct Held {
    quota: Mutex<QuotaBlock<OffsetDateTime>>,
    slots: Mutex<SlotBlock>,
}

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
    /// Takes one message from `relay`'s quota, if it has one: from the
    /// block this node holds, or a new block from the store.
    pub(super) async fn take_quota(&self, relay: &Relay) -> Quota {
        let Some(quota) = relay.quota else {
            return Quota::Free;
        };
        let now = self.clock.now();
        let period = quota.reset.period(now);
        let mut held = relay.held.quota.lock().await;
        if held.take(period) {
            return Quota::Taken(period);
        }
        let want = quota_block(quota.limit);
        match self
            .store
            .take_quota(&relay.name, period, quota.limit, want)
            .await
        {
            Ok(0) => Quota::Spent(quota.reset.next(now)),
            Ok(granted) => {
                held.hold(period, granted - 1);
                Quota::Taken(period)
            }
            Err(error) => {
                tracing::warn!(relay = %relay.name, error = %error, "reading the quota failed; sending anyway");
                Quota::Free
            }
        }
    }

    /// Gives back what [`take_quota`](Self::take_quota) took: the message
    /// was not sent, or the relay refused it before the data. It goes back
    /// to this node's block, for the next message.
    pub(super) async fn return_quota(&self, relay: &Relay, quota: Quota) {
        if let Quota::Taken(period) = quota {
            relay.held.quota.lock().await.give_back(period);
        }
    }

    /// Gives every relay's unspent quota units back to the store, so a node
    /// that stops leaves the rest of the period to the others.
    pub(super) async fn give_back_held(&self) {
        for relay in &self.relays {
            let drained = relay.held.quota.lock().await.drain();
            if let Some((period, units)) = drained
                && let Err(error) = self.store.return_quota(&relay.name, period, units).await
            {
                tracing::warn!(relay = %relay.name, units, error = %error, "giving back held quota failed");
            }
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

    /// A slot from the block this node holds, or a new block from the
    /// store: `None` when taken, or how long to wait before asking again.
    async fn take_slot(&self, relay: &Relay, limit: RateLimit) -> Option<Duration> {
        let mut held = relay.held.slots.lock().await;
        let now = self.clock.now();
        let since_epoch = Duration::try_from(now - OffsetDateTime::UNIX_EPOCH).unwrap_or_default();
        match held.take(since_epoch) {
            Slot::Taken => return None,
            Slot::Wait(wait) => return Some(wait),
            Slot::Empty => {}
        }
        match self
            .store
            .take_rate_slots(&relay.name, limit, now, rate_block(limit))
            .await
        {
            Ok(RateSlots::Taken { count, ahead }) => {
                *held = SlotBlock::granted(limit, since_epoch, ahead, count);
                match held.take(since_epoch) {
                    Slot::Taken => None,
                    // The rule never grants a first slot that is not due.
                    Slot::Wait(wait) => Some(wait),
                    Slot::Empty => Some(limit.interval()),
                }
            }
            Ok(RateSlots::Wait(wait)) => Some(wait),
            Err(error) => {
                tracing::warn!(relay = %relay.name, error = %error, "taking a rate slot failed; sending anyway");
                None
            }
        }
    }
}
