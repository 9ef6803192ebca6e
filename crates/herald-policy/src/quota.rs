//! Daily quotas: a relay may take `limit` messages between two resets, at
//! a time of day in a fixed UTC offset or a named (IANA) time zone
//! (midnight UTC unless told). The count itself lives in the store; this
//! says which period an instant belongs to (its last reset, the key the
//! store counts under) and when the next one begins. In a zone with
//! daylight saving time a day is 23 or 25 hours long when the clocks
//! change; a reset time the change skips (02:30 on the spring-forward
//! night) happens that day as much later as the clocks jumped, and one it
//! repeats happens the first time.

use std::fmt;
use std::str::FromStr;

use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};
use time_tz::{
    Offset as _, OffsetDateTimeExt as _, OffsetResult, PrimitiveDateTimeExt as _, TimeZone as _, Tz,
};

use crate::InvalidPolicy;

/// The zone a reset's time of day is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetZone {
    /// A fixed offset from UTC (`UTC`, `+08:00`).
    Fixed(UtcOffset),
    /// An IANA time zone (`America/Los_Angeles`), daylight saving time
    /// included.
    Named(&'static Tz),
}

/// When a daily quota starts again: a time of day in a zone, written
/// `"00:00"` (UTC), `"07:00 UTC"`, `"00:00 +08:00"` or
/// `"00:00 America/Los_Angeles"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaReset {
    /// The time of day.
    pub at: Time,
    /// The zone that time of day is read in.
    pub zone: ResetZone,
}

impl Default for QuotaReset {
    /// Midnight UTC.
    fn default() -> Self {
        Self {
            at: Time::MIDNIGHT,
            zone: ResetZone::Fixed(UtcOffset::UTC),
        }
    }
}

impl QuotaReset {
    /// The last reset at or before `now`: the period `now` counts in.
    pub fn period(&self, now: OffsetDateTime) -> OffsetDateTime {
        let today = self.local_date(now);
        let reset = self.reset_on(today);
        let start = if reset > now {
            self.reset_on(today.previous_day().unwrap_or(today))
        } else {
            reset
        };
        start.to_offset(UtcOffset::UTC)
    }

    /// The first reset after `now`.
    pub fn next(&self, now: OffsetDateTime) -> OffsetDateTime {
        let period = self.period(now);
        let day = self.local_date(period);
        self.reset_on(day.next_day().unwrap_or(day))
            .to_offset(UtcOffset::UTC)
    }

    /// The calendar date at `now` in the reset's zone.
    fn local_date(&self, now: OffsetDateTime) -> Date {
        match self.zone {
            ResetZone::Fixed(offset) => now.to_offset(offset).date(),
            ResetZone::Named(tz) => now.to_timezone(tz).date(),
        }
    }

    /// The instant of the reset on the local date `day`.
    fn reset_on(&self, day: Date) -> OffsetDateTime {
        let local = PrimitiveDateTime::new(day, self.at);
        match self.zone {
            ResetZone::Fixed(offset) => local.assume_offset(offset),
            ResetZone::Named(tz) => match local.assume_timezone(tz) {
                OffsetResult::Some(at) | OffsetResult::Ambiguous(at, _) => at,
                // Skipped by a spring-forward: read with the offset in
                // force before the jump, which lands as much later.
                OffsetResult::None => {
                    let before = tz.get_offset_utc(&(local.assume_utc() - Duration::hours(12)));
                    local.assume_offset(before.to_utc())
                }
            },
        }
    }
}

impl FromStr for QuotaReset {
    type Err = InvalidPolicy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const FORMAT: &str = "must look like \"00:00\", \"07:30 UTC\", \"00:00 +08:00\" or \"00:00 America/Los_Angeles\" (a time of day and an offset or IANA time zone)";
        let bad = || InvalidPolicy::new("quota_reset", FORMAT);
        let mut parts = text.split_whitespace();
        let clock = parts.next().ok_or_else(bad)?;
        let zone = parts.next();
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
        let zone = match zone {
            None | Some("UTC" | "utc" | "Z" | "GMT") => ResetZone::Fixed(UtcOffset::UTC),
            Some(text) if text.starts_with(['+', '-']) => {
                let sign = if text.starts_with('-') { -1i8 } else { 1 };
                let (h, m) = text[1..].split_once(':').ok_or_else(bad)?;
                let h: i8 = h.parse().map_err(|_| bad())?;
                let m: i8 = m.parse().map_err(|_| bad())?;
                ResetZone::Fixed(UtcOffset::from_hms(sign * h, sign * m, 0).map_err(|_| bad())?)
            }
            // IANA names only (`Area/Location`), not Windows' names.
            Some(name) => match time_tz::timezones::get_by_name(name) {
                Some(tz) if name.contains('/') => ResetZone::Named(tz),
                _ => {
                    return Err(InvalidPolicy::new(
                        "quota_reset",
                        format!(
                            "{name:?} is not a known time zone (write an IANA name such as \"America/Los_Angeles\", or an offset such as \"+08:00\")"
                        ),
                    ));
                }
            },
        };
        Ok(Self { at, zone })
    }
}

impl fmt::Display for QuotaReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.at.hour(), self.at.minute())?;
        if self.at.second() != 0 {
            write!(f, ":{:02}", self.at.second())?;
        }
        match self.zone {
            ResetZone::Fixed(offset) if offset == UtcOffset::UTC => f.write_str(" UTC"),
            ResetZone::Fixed(offset) => {
                let (h, m, _) = offset.as_hms();
                let sign = if offset.is_negative() { '-' } else { '+' };
                write!(f, " {sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs())
            }
            ResetZone::Named(tz) => write!(f, " {}", tz.name()),
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
            ("00:00 America/Los_Angeles", "00:00 America/Los_Angeles"),
            ("6:00 Europe/Berlin", "06:00 Europe/Berlin"),
        ];
        for (text, shown) in table {
            let reset: QuotaReset = text.parse().expect(text);
            assert_eq!(reset.to_string(), shown, "{text}");
        }
        for bad in [
            "",
            "24:00",
            "7",
            "07:00 Mars/Olympus",
            "07:00 Pacific Standard Time",
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

    /// Around the 2026 clock changes in Los Angeles (spring forward on
    /// 8 March at 02:00 PST, fall back on 1 November at 02:00 PDT): the
    /// period a moment counts in, and when the next begins.
    #[test]
    fn named_zones_follow_daylight_saving_time() {
        let midnight: QuotaReset = "00:00 America/Los_Angeles".parse().expect("reset");
        let skipped: QuotaReset = "02:30 America/Los_Angeles".parse().expect("reset");
        let repeated: QuotaReset = "01:30 America/Los_Angeles".parse().expect("reset");
        let shanghai: QuotaReset = "00:00 Asia/Shanghai".parse().expect("reset");
        // (reset, now, period start, next reset)
        let table = [
            // A winter day: midnight PST is 08:00 UTC.
            (
                midnight,
                datetime!(2026-03-07 12:00 UTC),
                datetime!(2026-03-07 8:00 UTC),
                datetime!(2026-03-08 8:00 UTC),
            ),
            // The spring-forward day lasts 23 hours: the next midnight
            // is PDT, 07:00 UTC.
            (
                midnight,
                datetime!(2026-03-08 12:00 UTC),
                datetime!(2026-03-08 8:00 UTC),
                datetime!(2026-03-09 7:00 UTC),
            ),
            // The last second before midnight PDT in October.
            (
                midnight,
                datetime!(2026-11-01 6:59:59 UTC),
                datetime!(2026-10-31 7:00 UTC),
                datetime!(2026-11-01 7:00 UTC),
            ),
            // The fall-back day lasts 25 hours.
            (
                midnight,
                datetime!(2026-11-01 12:00 UTC),
                datetime!(2026-11-01 7:00 UTC),
                datetime!(2026-11-02 8:00 UTC),
            ),
            // 02:30 does not exist on 8 March: the reset comes at 03:30
            // PDT (10:30 UTC), as late as the clocks jumped.
            (
                skipped,
                datetime!(2026-03-08 10:29 UTC),
                datetime!(2026-03-07 10:30 UTC),
                datetime!(2026-03-08 10:30 UTC),
            ),
            (
                skipped,
                datetime!(2026-03-08 12:00 UTC),
                datetime!(2026-03-08 10:30 UTC),
                datetime!(2026-03-09 9:30 UTC),
            ),
            // 01:30 happens twice on 1 November: the first one (PDT,
            // 08:30 UTC) is the reset; the second (09:30 UTC) is not.
            (
                repeated,
                datetime!(2026-11-01 9:45 UTC),
                datetime!(2026-11-01 8:30 UTC),
                datetime!(2026-11-02 9:30 UTC),
            ),
            (
                repeated,
                datetime!(2026-11-01 8:29 UTC),
                datetime!(2026-10-31 8:30 UTC),
                datetime!(2026-11-01 8:30 UTC),
            ),
            // A zone without daylight saving time is its fixed offset.
            (
                shanghai,
                datetime!(2026-12-05 14:00 UTC),
                datetime!(2026-12-04 16:00 UTC),
                datetime!(2026-12-05 16:00 UTC),
            ),
        ];
        for (reset, now, period, next) in table {
            assert_eq!(reset.period(now), period, "period of {reset} at {now}");
            assert_eq!(reset.next(now), next, "next {reset} after {now}");
            assert!(reset.period(now) <= now && now < reset.next(now));
        }
    }
}
