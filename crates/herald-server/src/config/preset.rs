//! `provider = "…"` in `[[relays]]`: the host, port, TLS mode and sending
//! limits of a well-known mail provider, so that a relay entry needs only
//! credentials. Anything the entry sets itself wins.
//!
//! The limits are conservative starting points taken from what each
//! provider publishes for an ordinary account (accounts differ: Google
//! Workspace allows 2,000 a day, an SES account out of the sandbox far
//! more); raise them to what the account really has.

use herald_smtp::TlsMode;

/// What a provider preset fills in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Preset {
    /// The submission host.
    pub(crate) host: String,
    /// Its port.
    pub(crate) port: u16,
    /// How the connection is encrypted.
    pub(crate) tls: TlsMode,
    /// The default rate, as `rate` would be written.
    pub(crate) rate: &'static str,
    /// The default daily quota.
    pub(crate) daily_quota: u64,
    /// The default quota reset, as `quota_reset` would be written.
    pub(crate) quota_reset: &'static str,
}

/// The names `provider` accepts.
pub(crate) const PROVIDERS: &str = "gmail, outlook, qq, 163, ses";

/// The preset of `provider` (`region` is SES's and only SES's).
pub(crate) fn preset(
    provider: &str,
    region: Option<&str>,
) -> Result<Preset, (&'static str, String)> {
    if provider != "ses" && region.is_some() {
        return Err(("region", "is only used with provider = \"ses\"".to_owned()));
    }
    let fixed = |host: &str, port, tls, rate, daily_quota, quota_reset| Preset {
        host: host.to_owned(),
        port,
        tls,
        rate,
        daily_quota,
        quota_reset,
    };
    Ok(match provider {
        // Gmail: about 500 messages a day for a personal account.
        "gmail" => fixed(
            "smtp.gmail.com",
            587,
            TlsMode::StartTls,
            "20/min",
            500,
            "00:00 UTC",
        ),
        // Outlook.com: 300 recipients a day, 30 messages a minute.
        "outlook" => fixed(
            "smtp-mail.outlook.com",
            587,
            TlsMode::StartTls,
            "30/min",
            300,
            "00:00 UTC",
        ),
        // QQ Mail and NetEase 163: SMTP over implicit TLS; their days end
        // at midnight in China.
        "qq" => fixed(
            "smtp.qq.com",
            465,
            TlsMode::Implicit,
            "10/min",
            500,
            "00:00 +08:00",
        ),
        "163" => fixed(
            "smtp.163.com",
            465,
            TlsMode::Implicit,
            "10/min",
            200,
            "00:00 +08:00",
        ),
        // Amazon SES: the sandbox's 1 message a second and 200 a day (a
        // rolling 24 hours; counted here from midnight UTC).
        "ses" => {
            let region =
                region.ok_or(("region", "is required with provider = \"ses\"".to_owned()))?;
            let valid = !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return Err((
                    "region",
                    format!("{region:?} is not an AWS region such as eu-west-1"),
                ));
            }
            fixed(
                &format!("email-smtp.{region}.amazonaws.com"),
                587,
                TlsMode::StartTls,
                "1/s",
                200,
                "00:00 UTC",
            )
        }
        other => {
            return Err((
                "provider",
                format!("unknown provider {other:?} ({PROVIDERS})"),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset() {
        let table = [
            (
                "gmail",
                None,
                "smtp.gmail.com",
                587,
                TlsMode::StartTls,
                "20/min",
                500,
            ),
            (
                "outlook",
                None,
                "smtp-mail.outlook.com",
                587,
                TlsMode::StartTls,
                "30/min",
                300,
            ),
            (
                "qq",
                None,
                "smtp.qq.com",
                465,
                TlsMode::Implicit,
                "10/min",
                500,
            ),
            (
                "163",
                None,
                "smtp.163.com",
                465,
                TlsMode::Implicit,
                "10/min",
                200,
            ),
            (
                "ses",
                Some("eu-west-1"),
                "email-smtp.eu-west-1.amazonaws.com",
                587,
                TlsMode::StartTls,
                "1/s",
                200,
            ),
        ];
        for (provider, region, host, port, tls, rate, quota) in table {
            let p = preset(provider, region).expect(provider);
            assert_eq!(
                (p.host.as_str(), p.port, p.tls, p.rate, p.daily_quota),
                (host, port, tls, rate, quota),
                "{provider}"
            );
            assert!(p.rate.parse::<herald_policy::Rate>().is_ok(), "{provider}");
            assert!(
                p.quota_reset.parse::<herald_policy::QuotaReset>().is_ok(),
                "{provider}"
            );
        }
        for (provider, region, field) in [
            ("ses", None, "region"),
            ("ses", Some("EU WEST"), "region"),
            ("gmail", Some("eu-west-1"), "region"),
            ("yahoo", None, "provider"),
        ] {
            let e = preset(provider, region).expect_err(provider);
            assert_eq!(e.0, field, "{provider} {region:?}: {}", e.1);
        }
    }
}
