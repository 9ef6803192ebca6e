//! `[suppression]`: which failures put an address on the suppression list
//! by themselves, and for how long.
//!
//! ```toml
//! [suppression]
//! auto = ["invalid_recipient"]   # the default; [] turns it off
//! expire_after = "180d"          # default: until removed
//! ```

use herald_policy::BounceClass;
use herald_store::SuppressionPolicy;
use serde::Deserialize;

use super::ConfigError;
use super::raw::Dur;

/// `[suppression]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSuppression {
    /// Bounce classes whose permanent failures suppress their address.
    #[serde(default = "default_auto")]
    pub(crate) auto: Vec<String>,
    /// How long an automatic entry lasts; absent: until removed.
    #[serde(default)]
    pub(crate) expire_after: Option<Dur>,
}

fn default_auto() -> Vec<String> {
    vec![BounceClass::InvalidRecipient.as_str().to_owned()]
}

impl Default for RawSuppression {
    fn default() -> Self {
        Self {
            auto: default_auto(),
            expire_after: None,
        }
    }
}

/// The classes that never say anything about the address itself: a
/// configuration naming one would silence real customers (a Gmail
/// reputation block is `policy`).
const NEVER: [BounceClass; 4] = [
    BounceClass::Policy,
    BounceClass::Message,
    BounceClass::Auth,
    BounceClass::Network,
];

/// Validates `[suppression]`.
pub(crate) fn suppression(raw: RawSuppression) -> Result<SuppressionPolicy, ConfigError> {
    let mut auto = Vec::new();
    for (i, name) in raw.auto.iter().enumerate() {
        let field = format!("suppression.auto[{i}]");
        let class: BounceClass = name.parse().map_err(|e| ConfigError::new(&field, e))?;
        if NEVER.contains(&class) {
            return Err(ConfigError::new(
                field,
                format!("a {class} failure says nothing about the address; it cannot suppress it"),
            ));
        }
        if !auto.contains(&class) {
            auto.push(class);
        }
    }
    let expire_after = raw.expire_after.map(|d| d.0);
    if expire_after.is_some_and(|d| d.is_zero()) {
        return Err(ConfigError::new(
            "suppression.expire_after",
            "must be longer than zero (leave it out for entries that never lapse)",
        ));
    }
    Ok(SuppressionPolicy { auto, expire_after })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    fn parse(text: &str) -> Result<SuppressionPolicy, ConfigError> {
        suppression(toml::from_str(text).unwrap())
    }

    #[test]
    fn the_default_suppresses_dead_addresses_for_good() {
        assert_eq!(parse("").unwrap(), SuppressionPolicy::default());
    }

    #[test]
    fn classes_and_expiry_are_read_and_checked() {
        let policy =
            parse("auto = [\"invalid_recipient\", \"mailbox_full\"]\nexpire_after = \"30d\"")
                .unwrap();
        assert_eq!(
            policy.auto,
            [BounceClass::InvalidRecipient, BounceClass::MailboxFull]
        );
        assert_eq!(policy.expire_after, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse("auto = []").unwrap().auto, []);
        let policy_class = parse("auto = [\"policy\"]").unwrap_err();
        assert_eq!(policy_class.field, "suppression.auto[0]");
        let unknown = parse("auto = [\"bogus\"]").unwrap_err();
        assert_eq!(unknown.field, "suppression.auto[0]");
        assert_eq!(
            parse("expire_after = \"0s\"").unwrap_err().field,
            "suppression.expire_after"
        );
    }
}
