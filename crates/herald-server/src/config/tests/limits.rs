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

#[test]
fn a_provider_fills_what_the_entry_leaves_out() {
    let c = ok("[[relays]]\nname = \"g\"\nprovider = \"gmail\"\n");
    let r = &c.relays[0];
    assert_eq!(r.provider.as_deref(), Some("gmail"));
    assert_eq!(
        (r.client.host.as_str(), r.client.port, r.client.tls),
        ("smtp.gmail.com", 587, TlsMode::StartTls)
    );
    assert_eq!(r.rate.map(|l| l.rate.to_string()), Some("20/min".into()));
    assert_eq!(r.daily_quota.map(|q| q.limit), Some(500));

    // What the entry sets wins.
    let c = ok(
        "[[relays]]\nname = \"g\"\nprovider = \"qq\"\ndaily_quota = 50\nrate = \"1/s\"\n\
         quota_reset = \"06:00 UTC\"\nport = 587\ntls = \"starttls\"\n",
    );
    let r = &c.relays[0];
    assert_eq!(
        (r.client.host.as_str(), r.client.port, r.client.tls),
        ("smtp.qq.com", 587, TlsMode::StartTls)
    );
    assert_eq!(r.rate.map(|l| l.rate.to_string()), Some("1/s".into()));
    let quota = r.daily_quota.expect("quota");
    assert_eq!(
        (quota.limit, quota.reset.to_string().as_str()),
        (50, "06:00 UTC")
    );
    // QQ's own day ends at midnight in China.
    let c = ok("[[relays]]\nname = \"q\"\nprovider = \"qq\"\n");
    let quota = c.relays[0].daily_quota.expect("quota");
    assert_eq!(quota.reset.to_string(), "00:00 +08:00");
    assert_eq!(c.relays[0].client.port, 465);

    let c = ok("[[relays]]\nname = \"s\"\nprovider = \"ses\"\nregion = \"eu-west-1\"\n");
    assert_eq!(
        c.relays[0].client.host,
        "email-smtp.eu-west-1.amazonaws.com"
    );
    assert_eq!(c.relays[0].provider.as_deref(), Some("ses (eu-west-1)"));

    for (text, field) in [
        ("provider = \"ses\"", "relays[0].region"),
        ("provider = \"yahoo\"", "relays[0].provider"),
        ("host = \"x\"\nregion = \"eu-west-1\"", "relays[0].region"),
    ] {
        let e = err(&format!("[[relays]]\nname = \"p\"\n{text}\n"));
        assert_eq!(e.field, field, "{text}: {e}");
    }
    let e = err("[[relays]]\nname = \"p\"\n");
    assert_eq!(e.field, "relays[0].host");
}
