//! `rate`, `burst`, `daily_quota` and `quota_reset` of `[[relays]]`.

use herald_policy::{DailyQuota, QuotaReset, Rate, RateLimit};

use super::*;

#[test]
fn a_relay_has_no_limits_unless_told() {
    let c = ok(RELAY);
    assert_eq!(c.relays[0].rate, None);
    assert_eq!(c.relays[0].daily_quota, None);
}

#[test]
fn limits_are_read() {
    let c = ok(&format!(
        "{RELAY}rate = \"300/min\"\nburst = 10\ndaily_quota = 500\nquota_reset = \"00:00 +08:00\"\n"
    ));
    let r = &c.relays[0];
    assert_eq!(
        r.rate,
        Some(RateLimit {
            rate: Rate {
                count: 300,
                per: Duration::from_secs(60)
            },
            burst: 10
        })
    );
    assert_eq!(
        r.daily_quota,
        Some(DailyQuota {
            limit: 500,
            reset: "00:00 +08:00".parse().expect("reset"),
        })
    );
    // Midnight UTC unless told.
    let c = ok(&format!("{RELAY}daily_quota = 5\n"));
    assert_eq!(
        c.relays[0].daily_quota.map(|q| q.reset),
        Some(QuotaReset::default())
    );
}

#[test]
fn bad_limits_name_their_field() {
    for (text, field) in [
        ("rate = \"20\"", "relays[0].rate"),
        ("rate = \"0/s\"", "relays[0].rate"),
        ("rate = \"20/week\"", "relays[0].rate"),
        ("rate = \"20/s\"\nburst = 0", "relays[0].burst"),
        ("daily_quota = 0", "relays[0].daily_quota"),
        (
            "daily_quota = 5\nquota_reset = \"25:00\"",
            "relays[0].quota_reset",
        ),
        ("quota_reset = \"midnight\"", "relays[0].quota_reset"),
    ] {
        let e = err(&format!("{RELAY}{text}\n"));
        assert_eq!(e.field, field, "{text}: {e}");
    }
}
