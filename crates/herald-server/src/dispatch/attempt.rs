//! Pure decisions about one attempt: what each recipient's SMTP outcome
//! means for its state, how the attempt is summed up, and what comes next.
//! No I/O here, so every rule is a table test.

use herald_policy::{BounceClass, Decision, RetryPolicy};
use herald_smtp::{Error, ErrorKind, RecipientOutcome, Scope};
use herald_store::{NextStep, RecipientResult, RecipientStatus, Suppression};
use rand::Rng;
use time::OffsetDateTime;

/// One recipient's outcome as the store records it.
pub(crate) fn recipient_result(outcome: &RecipientOutcome) -> RecipientResult {
    match &outcome.result {
        Ok(reply) => RecipientResult {
            address: outcome.address.clone(),
            status: RecipientStatus::Delivered,
            smtp_code: Some(reply.code()),
            enhanced_code: reply.enhanced_code().map(|c| c.to_string()),
            response: Some(reply.text()),
            class: None,
        },
        Err(error) => failed_result(&outcome.address, error),
    }
}

/// A recipient that was not delivered because of `error`.
pub(crate) fn failed_result(address: &str, error: &Error) -> RecipientResult {
    RecipientResult {
        address: address.to_owned(),
        // A permanent fault of the relay itself (bad credentials, a
        // refusing banner) is the operator's to fix, not the message's:
        // defer, as Postfix does. Cancelled is neither: try again later.
        status: if error.is_permanent() && error.scope() != Scope::Connection {
            RecipientStatus::Failed
        } else {
            RecipientStatus::Deferred
        },
        smtp_code: error.smtp_code(),
        enhanced_code: error.enhanced_code().map(|c| c.to_string()),
        response: Some(match error.reply() {
            Some(reply) => reply.text(),
            None if error.is_ambiguous() => format!(
                "{error}; the relay may have accepted the message: retried later, not through another relay now"
            ),
            None => error.to_string(),
        }),
        class: Some(class_of(error)),
    }
}

/// The bounce class of a failure: the reply's, by the policy's table,
/// when the server answered; otherwise what the error kind says (no
/// connection, no TLS, a timeout: `network`; our credentials: `auth`).
pub(crate) fn class_of(error: &Error) -> BounceClass {
    match (error.kind(), error.reply()) {
        (ErrorKind::AuthFailed | ErrorKind::AuthUnavailable, _) => BounceClass::Auth,
        (
            ErrorKind::Timeout
            | ErrorKind::Network
            | ErrorKind::Tls
            | ErrorKind::TlsUnavailable
            | ErrorKind::Protocol,
            _,
        ) => BounceClass::Network,
        (ErrorKind::MessageTooLarge | ErrorKind::Smtputf8Unavailable, _) => BounceClass::Message,
        (_, Some(reply)) => herald_policy::classify(
            reply.code(),
            reply.enhanced_code().map(|c| c.to_string()).as_deref(),
            &reply.text(),
        ),
        _ => BounceClass::Other,
    }
}

/// The result of a recipient not sent to because of `entry`.
pub(crate) fn suppressed_result(address: &str, entry: &Suppression) -> RecipientResult {
    RecipientResult {
        address: address.to_owned(),
        status: RecipientStatus::Suppressed,
        smtp_code: None,
        enhanced_code: None,
        response: Some(format!("suppressed ({})", entry.reason)),
        class: None,
    }
}

/// The reply that best describes the attempt: the first failure's, or the
/// acceptance when everyone was delivered.
pub(crate) fn headline(results: &[RecipientResult]) -> (Option<u16>, Option<String>, String) {
    let pick = results
        .iter()
        .find(|r| r.status != RecipientStatus::Delivered)
        .or_else(|| results.first());
    match pick {
        Some(r) => {
            let mut detail = String::new();
            if let Some(code) = r.smtp_code {
                detail.push_str(&code.to_string());
            }
            if let Some(enhanced) = &r.enhanced_code {
                detail.push(' ');
                detail.push_str(enhanced);
            }
            if let Some(text) = &r.response {
                if !detail.is_empty() {
                    detail.push(' ');
                }
                detail.push_str(text);
            }
            (r.smtp_code, r.enhanced_code.clone(), detail)
        }
        None => (None, None, String::new()),
    }
}

/// The class of the failure [`headline`] picks, if it is one.
pub(crate) fn headline_class(results: &[RecipientResult]) -> Option<BounceClass> {
    results
        .iter()
        .find(|r| r.status != RecipientStatus::Delivered)
        .and_then(|r| r.class)
}

/// What follows: retry the deferred recipients per the policy, or stop.
pub(crate) fn next_step<R: Rng + ?Sized>(
    results: &[RecipientResult],
    attempts_made: u32,
    policy: &RetryPolicy,
    created_at: OffsetDateTime,
    now: OffsetDateTime,
    rng: &mut R,
) -> NextStep {
    if !results
        .iter()
        .any(|r| r.status == RecipientStatus::Deferred)
    {
        return NextStep::GiveUp;
    }
    match policy.next_step(attempts_made, created_at, now, rng) {
        Decision::RetryAt(at) => NextStep::RetryAt(at),
        Decision::GiveUp(_) => NextStep::GiveUp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(status: RecipientStatus) -> RecipientResult {
        RecipientResult {
            address: "a@example.com".into(),
            status,
            smtp_code: Some(match status {
                RecipientStatus::Delivered => 250,
                RecipientStatus::Deferred => 451,
                _ => 550,
            }),
            enhanced_code: None,
            response: Some("text".into()),
            class: None,
        }
    }

    #[test]
    fn the_headline_is_the_first_failure() {
        let results = vec![
            result(RecipientStatus::Delivered),
            result(RecipientStatus::Deferred),
        ];
        assert_eq!(headline(&results), (Some(451), None, "451 text".into()));
        let all_good = vec![result(RecipientStatus::Delivered)];
        assert_eq!(headline(&all_good).0, Some(250));
    }

    #[test]
    fn only_deferred_recipients_are_retried() {
        let policy = RetryPolicy {
            jitter: herald_policy::Jitter::None,
            ..RetryPolicy::default()
        };
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let mut rng = rand::rng();
        let done = [
            result(RecipientStatus::Delivered),
            result(RecipientStatus::Failed),
        ];
        assert_eq!(
            next_step(&done, 1, &policy, now, now, &mut rng),
            NextStep::GiveUp
        );
        let retry = [result(RecipientStatus::Deferred)];
        assert_eq!(
            next_step(&retry, 1, &policy, now, now, &mut rng),
            NextStep::RetryAt(now + time::Duration::seconds(30))
        );
        assert_eq!(
            next_step(&retry, 12, &policy, now, now, &mut rng),
            NextStep::GiveUp
        );
    }
}
