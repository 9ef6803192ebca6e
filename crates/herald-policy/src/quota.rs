//! Daily quotas: a relay may take `limit` messages between two resets, at
//! a time of day in a fixed UTC offset (midnight UTC unless told). The
//! count itself lives in the store; this says which period an instant
//! belongs to (its last reset, the key the store counts under) and when
//! the next one begins.

use std::fmt;
use std::str::FromStr;

use time::{Duration, OffsetDateTime, Time, UtcOffset};

use crate::InvalidPolicy;

/// When a daily quota starts again: a time of day at a UTC offset,
/// written `"00:00"` (UTC), `"07:00 UTC"` or `"00:00 +08:00"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaReset {
    /// The time of day.
    pub at: Time,
    /// The offset that time of day is read in.
    pub offset: UtcOffset,
}

impl Default for QuotaReset {
    /// Midnight UTC.
    fn default() -> Self {
        Self {
            at: Time::MIDNIGHT,
            offset: UtcOffset::UTC,
        }
    }
}

impl QuotaReset {
    /// The last reset at or before `now`: the period `now` counts in.
    pub fn period(&self, now: OffsetDateTime) -> OffsetDateTime {
        let local = now.to_offset(self.offset);
        let today = local.replace_time(self.at);
        let start = if today > local {
            today - Duration::days(1)
        } else {
            today
        };
        start.to_offset(UtcOffset::UTC)
    }

    /// The first reset after `now`.
    pub fn next(&self, now: OffsetDateTime) -> OffsetDateTime {
        self.period(now) + Duration::days(1)
    }
}

impl FromStr for QuotaReset {
    type Err = InvalidPolicy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const FORMAT: &str = "must look like \"00:00\", \"07:30 UTC\" or \"00:00 +08:00\" (a time of day and an offset)";
        let bad = || InvalidPolicy::new("quota_reset", FORMAT);
        let mut parts = text.split_whitespace();
        let clock = parts.next().ok_or_else(bad)?;
        let offset = parts.next();
        if parts.next().is_some() {
            return Err(bad());
        }
        let numbers: Vec<u8> = clock
            .split(':')
            .map(|n| n.parse::<u8>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let at = match numbers[..] {
            [h, m] => Time::from_hms(h, m, 0),
            [h, m, s] => Time::from_hms(h, m, s),
            _ => return Err(bad()),
        }
        .map_err(|_| bad())?;
        let offset = match offset {
            None | Some("UTC" | "utc" | "Z" | "GMT") => UtcOffset::UTC,
            Some(text) => {
                let (sign, rest) = match text.as_bytes().first() {
                    Some(b'+') => (1i8, &text[1..]),
                    Some(b'-') => (-1i8, &text[1..]),
                    _ => return Err(bad()),
                };
                let (h, m) = rest.split_once(':').ok_or_else(bad)?;
                let h: i8 = h.parse().map_err(|_| bad())?;
                let m: i8 = m.parse().map_err(|_| bad())?;
                UtcOffset::from_hms(sign * h, sign * m, 0).map_err(|_| bad())?
            }
        };
        Ok(Self { at, offset })
    }
}

impl fmt::Display for QuotaReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.at.hour(), self.at.minute())?;
        if self.at.second() != 0 {
            write!(f, ":{:02}", self.at.second())?;
        }
        if self.offset == UtcOffset::UTC {
            f.write_str(" UTC")
        } else {
            let (h, m, _) = self.offset.as_hms();
            let sign = if self.offset.is_negative() { '-' } else { '+' };
            write!(f, " {sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs())
        }
    }
}

/// A relay's daily quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyQuota {
    /// Messages per period. At least 1.
    pub limit: u64,
    /// When the period starts again.
    pub reset: QuotaReset,
}

impl DailyQuota {
    /// Checks the limit.
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        if self.limit == 0 {
            return Err(InvalidPolicy::new("daily_quota", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn resets_parse_and_print() {
        let table = [
            ("00:00", "00:00 UTC"),
            ("7:30 UTC", "07:30 UTC"),
            ("00:00 +08:00", "00:00 +08:00"),
            ("23:59:30 -05:30", "23:59:30 -05:30"),
        ];
        for (text, shown) in table {
            let reset: QuotaReset = text.parse().expect(text);
            assert_eq!(reset.to_string(), shown, "{text}");
        }
        for bad in [
            "",
            "24:00",
            "7",
            "07:00 CET",
            "07:00 +8",
            "07:00 +08:00 x",
            "ab:cd",
        ] {
            assert!(bad.parse::<QuotaReset>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn an_instant_counts_in_the_period_of_the_last_reset() {
        let midnight = QuotaReset::default();
        let beijing: QuotaReset = "00:00 +08:00".parse().expect("reset");
        let seven: QuotaReset = "07:00".parse().expect("reset");
        let table = [
            (
                midnight,
                datetime!(2026-12-05 14:00 UTC),
                datetime!(2026-12-05 0:00 UTC),
            ),
            (
                midnight,
                datetime!(2026-12-05 0:00 UTC),
                datetime!(2026-12-05 0:00 UTC),
            ),
            (
                midnight,
                datetime!(2026-12-04 23:59:59 UTC),
                datetime!(2026-12-04 0:00 UTC),
            ),
            // Midnight in Beijing is 16:00 UTC the day before.
            (
                beijing,
                datetime!(2026-12-05 14:00 UTC),
                datetime!(2026-12-04 16:00 UTC),
            ),
            (
                beijing,
                datetime!(2026-12-05 16:00 UTC),
                datetime!(2026-12-05 16:00 UTC),
            ),
            (
                seven,
                datetime!(2026-12-05 6:59 UTC),
                datetime!(2026-12-04 7:00 UTC),
            ),
            (
                seven,
                datetime!(2026-12-05 7:01 UTC),
                datetime!(2026-12-05 7:00 UTC),
            ),
        ];
        for (reset, now, period) in table {
            assert_eq!(reset.period(now), period, "{reset} at {now}");
            assert_eq!(
                reset.next(now),
                period + Duration::days(1),
                "{reset} at {now}"
            );
        }
    }
}
