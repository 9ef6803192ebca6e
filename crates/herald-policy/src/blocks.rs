//! A node's share of limits that many nodes hold together: quota units and
//! rate slots taken from the shared count a block at a time and spent
//! locally, so a message costs no round trip to the store while its node
//! still holds some.
//!
//! What blocks change, and what they keep:
//! - A quota is never exceeded: a node spends only units the store counted
//!   as taken. A node that stops gives back what it holds; one that dies
//!   holding a block leaves those units unsent for the rest of the period.
//! - A rate's slots are handed out by the same GCRA rule as one slot at a
//!   time, each with the time it becomes due. A slot not spent within
//!   [`SLOT_GRACE`] of becoming due is dropped, so a node can send at most
//!   one block late: over any window, a rate is exceeded by at most one
//!   block per node (a block covers at most [`MAX_BLOCK`] messages and
//!   [`SLOT_GRACE`] of the rate). With slow rates a block is one slot and
//!   the rate is as exact as before.

use std::time::Duration;

use crate::RateLimit;

/// The most units or slots a node takes at once.
pub const MAX_BLOCK: u32 = 64;

/// How much of a rate one block may cover, and how long after becoming due
/// a held slot stays usable.
pub const SLOT_GRACE: Duration = Duration::from_millis(50);

/// How many quota units a node takes at once for a quota of `limit`: one
/// per thousand of the quota, at least one and at most [`MAX_BLOCK`].
/// Small quotas (a Gmail account's 500 a day) stay exact to the message.
#[must_use]
pub fn quota_block(limit: u64) -> u64 {
    (limit / 1000).clamp(1, u64::from(MAX_BLOCK))
}

/// How many rate slots a node takes at once: those [`SLOT_GRACE`] of the
/// rate holds, at least one and at most [`MAX_BLOCK`]. A rate of 20/s
/// takes one slot at a time, exactly as without blocks.
#[must_use]
pub fn rate_block(limit: RateLimit) -> u32 {
    let interval = limit.interval().as_nanos().max(1);
    let slots = SLOT_GRACE.as_nanos() / interval;
    u32::try_from(slots)
        .unwrap_or(MAX_BLOCK)
        .clamp(1, MAX_BLOCK)
}

/// Quota units a node holds for one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaBlock<P> {
    held: Option<(P, u64)>,
}

impl<P> Default for QuotaBlock<P> {
    fn default() -> Self {
        Self { held: None }
    }
}

impl<P: Copy + PartialEq> QuotaBlock<P> {
    /// Spends one unit held for `period`; false when none is held for it
    /// (units of an earlier period are dropped: that period is over).
    pub fn take(&mut self, period: P) -> bool {
        match &mut self.held {
            Some((held, left)) if *held == period && *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    /// Holds `units` more for `period`, dropping what was held for another.
    pub fn hold(&mut self, period: P, units: u64) {
        match &mut self.held {
            Some((held, left)) if *held == period => *left += units,
            _ => self.held = (units > 0).then_some((period, units)),
        }
    }

    /// Gives back one unit spent in `period` (the relay cannot have taken
    /// the message); one of a period no longer held is dropped.
    pub fn give_back(&mut self, period: P) {
        if let Some((held, left)) = &mut self.held
            && *held == period
        {
            *left += 1;
        }
    }

    /// Empties the block, answering what it held (to give back to the
    /// shared count when the node stops).
    pub fn drain(&mut self) -> Option<(P, u64)> {
        self.held.take().filter(|(_, left)| *left > 0)
    }

    /// How many units are held for `period`.
    #[must_use]
    pub fn left(&self, period: P) -> u64 {
        match self.held {
            Some((held, left)) if held == period => left,
            _ => 0,
        }
    }
}

/// What a [`SlotBlock`] says when asked for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// One slot spent: send now.
    Taken,
    /// The next held slot becomes due after this long.
    Wait(Duration),
    /// Nothing held (or all of it expired): take a new block.
    Empty,
}

/// Rate slots a node holds: `count` slots granted at `granted`, slot `i`
/// due at `first + i × interval` (never before the grant), each usable
/// until [`SLOT_GRACE`] (or one interval, if longer) after it is due.
/// Times are on the node's own timeline (any origin, as `Duration`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotBlock {
    granted: Duration,
    first: Duration,
    interval: Duration,
    count: u32,
    next: u32,
}

impl SlotBlock {
    /// A block of `count` slots granted at `now` by the GCRA rule of
    /// `limit`, the rule's start `ahead` of `now` (its "theoretical arrival
    /// time" before the grant, at least `now`): slot `i` is due at
    /// `now + ahead + i × interval − tolerance`.
    #[must_use]
    pub fn granted(limit: RateLimit, now: Duration, ahead: Duration, count: u32) -> Self {
        Self {
            granted: now,
            first: (now + ahead).saturating_sub(limit.tolerance()),
            interval: limit.interval(),
            count,
            next: 0,
        }
    }

    fn due(&self, index: u32) -> Duration {
        (self.first + self.interval * index).max(self.granted)
    }

    /// Spends the next slot that is due and not expired at `now`.
    pub fn take(&mut self, now: Duration) -> Slot {
        let grace = SLOT_GRACE.max(self.interval);
        while self.next < self.count {
            let due = self.due(self.next);
            if due + grace < now {
                // Too late to send at this slot's time: dropped.
                self.next += 1;
                continue;
            }
            if due > now {
                return Slot::Wait(due - now);
            }
            self.next += 1;
            return Slot::Taken;
        }
        Slot::Empty
    }

    /// Slots not yet spent (expired ones included until the next take).
    #[must_use]
    pub fn left(&self) -> u32 {
        self.count - self.next
    }
}

impl RateLimit {
    /// [`decide`](Self::decide) for `count` slots at once: when the first
    /// is allowed at `now`, the new TAT (all `count` counted) and how far
    /// ahead of `now` the rule's start was; otherwise how long until one
    /// slot would be.
    pub fn decide_many(
        &self,
        tat: Duration,
        now: Duration,
        count: u32,
    ) -> Result<(Duration, Duration), Duration> {
        let start = tat.max(now);
        let ahead = start - now;
        let tolerance = self.tolerance();
        if ahead <= tolerance {
            Ok((start + self.interval() * count.max(1), ahead))
        } else {
            Err(ahead - tolerance)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limit(text: &str, burst: u32) -> RateLimit {
        RateLimit {
            rate: text.parse().unwrap(),
            burst,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn block_sizes_follow_the_limit() {
        for (quota, block) in [
            (1, 1),
            (30, 1),
            (500, 1),
            (2000, 2),
            (50_000, 50),
            (10_000_000, 64),
        ] {
            assert_eq!(quota_block(quota), block, "quota {quota}");
        }
        for (rate, block) in [
            ("1/h", 1),
            ("20/s", 1),
            ("40/s", 2),
            ("200/s", 10),
            ("1000/s", 50),
            ("1000000/s", 64),
        ] {
            assert_eq!(rate_block(limit(rate, 1)), block, "rate {rate}");
        }
    }

    #[test]
    fn a_quota_block_spends_only_its_own_period() {
        let mut block = QuotaBlock::default();
        assert!(!block.take(1), "nothing held yet");
        block.hold(1, 2);
        assert!(block.take(1));
        block.give_back(1);
        assert_eq!(block.left(1), 2);
        assert!(block.take(1) && block.take(1));
        assert!(!block.take(1), "spent");
        block.hold(1, 3);
        assert!(!block.take(2), "units of period 1 are not period 2's");
        block.give_back(2);
        assert_eq!(block.left(2), 0, "a unit of a period not held is dropped");
        block.hold(2, 1);
        assert_eq!(
            (block.left(1), block.left(2)),
            (0, 1),
            "a new period drops the old"
        );
        assert_eq!(block.drain(), Some((2, 1)));
        assert_eq!(block.drain(), None);
        block.hold(3, 0);
        assert_eq!(block.drain(), None, "an empty grant holds nothing");
    }

    #[test]
    fn many_slots_are_one_decision_of_the_rule() {
        let l = limit("10/s", 3); // interval 100 ms, tolerance 200 ms
        // Idle: starts now; four slots move the TAT 400 ms on.
        assert_eq!(l.decide_many(ms(0), ms(1000), 4), Ok((ms(1400), ms(0))));
        // Within the burst: starts at the TAT, 200 ms ahead.
        assert_eq!(
            l.decide_many(ms(1200), ms(1000), 2),
            Ok((ms(1400), ms(200)))
        );
        // Beyond it: wait until the first slot would be allowed.
        assert_eq!(l.decide_many(ms(1250), ms(1000), 2), Err(ms(50)));
        // One slot is exactly `decide`.
        assert_eq!(
            l.decide_many(ms(900), ms(1000), 1).map(|(tat, _)| tat),
            l.decide(ms(900), ms(1000))
        );
    }

    #[test]
    fn a_slot_block_paces_its_slots_as_the_rule_would() {
        // 10/s, burst 3, idle: slots due at -200, -100, 0, 100, 200 ms
        // relative to the grant, so the first three (the burst) at once.
        let l = limit("10/s", 3);
        let mut block = SlotBlock::granted(l, ms(1000), ms(0), 5);
        let steps = [
            (1000, Slot::Taken),
            (1000, Slot::Taken),
            (1000, Slot::Taken),
            (1000, Slot::Wait(ms(100))),
            (1100, Slot::Taken),
            (1150, Slot::Wait(ms(50))),
            (1200, Slot::Taken),
            (1200, Slot::Empty),
        ];
        for (at, want) in steps {
            assert_eq!(block.take(ms(at)), want, "at {at} ms");
        }
    }

    #[test]
    fn slots_too_late_to_use_are_dropped() {
        // 1000/s, no burst: 50 slots 1 ms apart from the grant at 0.
        let l = limit("1000/s", 1);
        let mut block = SlotBlock::granted(l, ms(0), ms(0), 50);
        assert_eq!(block.take(ms(0)), Slot::Taken);
        // At 70 ms, slots due before 20 ms are past their grace: the next
        // taken is the one due at 20 ms.
        assert_eq!(block.take(ms(70)), Slot::Taken);
        assert_eq!(block.left(), 29, "slots 1..=19 dropped, 20 spent");
        // Long after the block, nothing is usable.
        assert_eq!(block.take(ms(1000)), Slot::Empty);
        assert_eq!(SlotBlock::default().take(ms(0)), Slot::Empty);
    }

    #[test]
    fn a_grant_ahead_of_now_starts_where_the_rule_was() {
        // 10/s, burst 3, TAT 200 ms ahead: the grant's first slot is due
        // now (200 − 200), the next at +100 ms.
        let l = limit("10/s", 3);
        let mut block = SlotBlock::granted(l, ms(1000), ms(200), 2);
        assert_eq!(block.take(ms(1000)), Slot::Taken);
        assert_eq!(block.take(ms(1000)), Slot::Wait(ms(100)));
    }
}
