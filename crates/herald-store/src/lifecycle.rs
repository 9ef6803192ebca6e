//! The rules of a message's life, as pure functions over the model's
//! enums: what status a message starts in, what an attempt's results make
//! of it, which user actions are legal when, and the words its history is
//! written in. Every backend carries these decisions out; none restates
//! them (a backend's SQL may only mirror a rule named here, and the
//! conformance suite holds both to it).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{MessageStatus, NextStep, RecipientResult, RecipientStatus, StoreError};

/// What an event in a message's history records (the API's event `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Accepted, due at once.
    Queued,
    /// Accepted, due at `send_at`.
    Scheduled,
    /// One delivery attempt (relay, outcome, codes, duration).
    Attempt,
    /// Recipients remain deferred; the next attempt is scheduled.
    Deferred,
    /// Final: every recipient accepted.
    Delivered,
    /// Final: some recipients accepted, the others failed.
    Partial,
    /// Final: no recipient accepted.
    Failed,
    /// Stopped by a user.
    Cancelled,
    /// Failed recipients put back in the queue by a user.
    Retried,
    /// A worker's lease ran out before it recorded an attempt; the message
    /// is due again.
    LeaseExpired,
    /// A restarted node took back a lease it held when it stopped; the
    /// message is due again at once.
    LeaseReclaimed,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [Self; 11] = [
        Self::Queued,
        Self::Scheduled,
        Self::Attempt,
        Self::Deferred,
        Self::Delivered,
        Self::Partial,
        Self::Failed,
        Self::Cancelled,
        Self::Retried,
        Self::LeaseExpired,
        Self::LeaseReclaimed,
    ];

    /// The name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Scheduled => "scheduled",
            Self::Attempt => "attempt",
            Self::Deferred => "deferred",
            Self::Delivered => "delivered",
            Self::Partial => "partial",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Retried => "retried",
            Self::LeaseExpired => "lease_expired",
            Self::LeaseReclaimed => "lease_reclaimed",
        }
    }

    /// The event that records a message reaching `status`, for the
    /// statuses that have one.
    pub fn entering(status: MessageStatus) -> Option<Self> {
        Some(match status {
            MessageStatus::Scheduled => Self::Scheduled,
            MessageStatus::Queued => Self::Queued,
            MessageStatus::Deferred => Self::Deferred,
            MessageStatus::Delivered => Self::Delivered,
            MessageStatus::Partial => Self::Partial,
            MessageStatus::Failed => Self::Failed,
            MessageStatus::Cancelled => Self::Cancelled,
            MessageStatus::Sending => return None,
        })
    }
}

/// What one attempt came to, over all the recipients it tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Every recipient accepted.
    Delivered,
    /// Some accepted; the others refused or deferred.
    Partial,
    /// Nobody accepted, and every recipient is to be retried.
    Transient,
    /// Nobody accepted, and nobody is to be retried.
    Permanent,
    /// The relay failed as a whole (connect, TLS, AUTH, a dropped session,
    /// a timeout): no recipient got an answer of its own. Only the
    /// dispatcher knows this; [`of`](Self::of) never says it.
    Error,
}

impl AttemptOutcome {
    /// Every outcome.
    pub const ALL: [Self; 5] = [
        Self::Delivered,
        Self::Partial,
        Self::Transient,
        Self::Permanent,
        Self::Error,
    ];

    /// The outcome of an attempt with these per-recipient results. An
    /// attempt that tried nobody counts as delivered (nothing is left).
    pub fn of(results: &[RecipientResult]) -> Self {
        let count = |status| results.iter().filter(|r| r.status == status).count();
        let delivered = count(RecipientStatus::Delivered);
        let deferred = count(RecipientStatus::Deferred);
        match (delivered, deferred) {
            (d, _) if d == results.len() => Self::Delivered,
            (0, 0) => Self::Permanent,
            (0, d) if d == results.len() => Self::Transient,
            _ => Self::Partial,
        }
    }

    /// The name in the API, the database, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Partial => "partial",
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::Error => "error",
        }
    }
}

macro_rules! named {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| format!("unknown {} {s:?}", stringify!($ty)))
            }
        }

        /// Compares with the name in the API.
        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    )*};
}

named!(EventKind, AttemptOutcome);

/// The status and due time of a message accepted at `created`: scheduled
/// until a `send_at` still ahead, queued (due at once) otherwise.
pub fn initial_state(
    created: OffsetDateTime,
    send_at: Option<OffsetDateTime>,
) -> (MessageStatus, OffsetDateTime) {
    match send_at {
        Some(at) if at > created => (MessageStatus::Scheduled, at),
        _ => (MessageStatus::Queued, created),
    }
}

/// A message's recipients counted by what they still need.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Pending or deferred: an attempt should still include them.
    pub open: u64,
    /// Accepted.
    pub delivered: u64,
    /// Refused for good, given up on, or cancelled.
    pub failed: u64,
}

impl Tally {
    /// Counts `n` recipients in `status`. Suppressed recipients were never
    /// meant to be sent: they neither make a message partial nor count as
    /// delivered.
    pub fn add(&mut self, status: RecipientStatus, n: u64) {
        match status {
            RecipientStatus::Pending | RecipientStatus::Deferred => self.open += n,
            RecipientStatus::Delivered => self.delivered += n,
            RecipientStatus::Failed => self.failed += n,
            RecipientStatus::Suppressed => {}
        }
    }

    /// The final status once nobody is open: delivered if nobody failed,
    /// failed if nobody was delivered, partial otherwise.
    pub fn final_status(&self) -> MessageStatus {
        match (self.delivered, self.failed) {
            (0, _) => MessageStatus::Failed,
            (_, 0) => MessageStatus::Delivered,
            _ => MessageStatus::Partial,
        }
    }
}

/// What an attempt makes of the message, given its recipients' states
/// after the attempt's results were applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    /// Recipients remain deferred: try them again at this instant.
    Defer {
        /// When the next attempt is due.
        at: OffsetDateTime,
        /// How many recipients wait for it.
        open: u64,
    },
    /// Nothing more to try. Every recipient still open becomes failed
    /// ("retries exhausted") and the message ends in `status`.
    Finish {
        /// The final status (delivered, partial or failed).
        status: MessageStatus,
        /// Recipients that were open and are failed now.
        given_up: u64,
        /// The tally with those recipients counted as failed.
        tally: Tally,
    },
}

/// The message's next state after an attempt (see [`AfterAttempt`]).
pub fn after_attempt(tally: Tally, next: NextStep) -> AfterAttempt {
    match (tally.open, next) {
        (open, NextStep::RetryAt(at)) if open > 0 => AfterAttempt::Defer { at, open },
        (given_up, _) => {
            let tally = Tally {
                open: 0,
                failed: tally.failed + given_up,
                ..tally
            };
            AfterAttempt::Finish {
                status: tally.final_status(),
                given_up,
                tally,
            }
        }
    }
}

/// Whether a user may cancel a message in `status`: anything not final.
pub fn check_cancel(status: MessageStatus) -> Result<(), StoreError> {
    if status.is_final() {
        return Err(StoreError::IllegalState(status));
    }
    Ok(())
}

/// Whether a user may retry a message in `status`: failed or partial
/// only (and then only if a recipient failed, which the backend checks).
pub fn check_retry(status: MessageStatus) -> Result<(), StoreError> {
    match status {
        MessageStatus::Failed | MessageStatus::Partial => Ok(()),
        other => Err(StoreError::IllegalState(other)),
    }
}

/// The status of a message whose claim ends without an attempt (a
/// release, an expired or reclaimed lease): queued if it was never tried,
/// deferred otherwise.
pub fn unclaimed_status(attempts: u32) -> MessageStatus {
    if attempts == 0 {
        MessageStatus::Queued
    } else {
        MessageStatus::Deferred
    }
}

/// What becomes of a message whose lease ended without an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostLease {
    /// Due again, in this status.
    Due(MessageStatus),
    /// Given up as a poison message: its open recipients fail, and its
    /// final status follows from its recipients ([`Tally::final_status`]).
    Poisoned,
}

/// What happens to a message whose lease ended without an attempt being
/// recorded, for the `expiries`-th time in a row (counting this one):
/// due again, or given up as a poison message once `limit` is reached (a
/// message that kills its worker every time must not kill nodes forever).
pub fn after_lost_lease(expiries: u32, limit: u32, attempts: u32) -> LostLease {
    if expiries >= limit.max(1) {
        LostLease::Poisoned
    } else {
        LostLease::Due(unclaimed_status(attempts))
    }
}

/// The detail of a `deferred` event.
pub fn deferral_detail(open: u64, at: OffsetDateTime) -> String {
    let at = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string());
    format!("{open} recipient(s) deferred; next attempt at {at}")
}

/// The detail of the event that ends a message after an attempt.
pub fn final_detail(tally: &Tally) -> String {
    format!(
        "{} of {} recipient(s) delivered",
        tally.delivered,
        tally.delivered + tally.failed
    )
}

/// The detail of the event that ends a lease without an attempt: whose
/// lease it was, and what became of the message.
pub fn lost_lease_detail(
    kind: EventKind,
    previous_owner: &str,
    fate: LostLease,
    expiries: u32,
) -> String {
    let what = match kind {
        EventKind::LeaseReclaimed => "taken back at start-up",
        _ => "expired",
    };
    if fate == LostLease::Poisoned {
        format!(
            "lease of {previous_owner} {what}; failed as a poison message: its lease ended \
             {expiries} times in a row without an attempt being recorded"
        )
    } else {
        format!("lease of {previous_owner} {what}")
    }
}

/// The response given to recipients still open when a poison message is
/// failed.
pub const POISON_RESPONSE: &str = "poison message: every attempt ended without a result";

#[cfg(test)]
mod tests;
