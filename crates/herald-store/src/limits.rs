//! What the store answers about a relay's shared limits.

use std::time::Duration;

/// The answer to [`Store::take_rate_slots`](crate::Store::take_rate_slots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateSlots {
    /// The slots were taken. The rule's start was `ahead` of the deciding
    /// clock's now (0 when the relay was idle, at most the burst's
    /// tolerance): slot `i` falls due `ahead + i × interval − tolerance`
    /// after the grant. Relative, so a node whose clock differs from the
    /// database's places them on its own.
    Taken {
        /// How many slots were taken.
        count: u32,
        /// How far ahead of now the rule's start was.
        ahead: Duration,
    },
    /// Nothing taken: a slot is free again after about this long (a hint
    /// for when to ask again, not a promise).
    Wait(Duration),
}
