//! The pure half of webhook delivery: the Standard Webhooks signature, and
//! what an endpoint's answer means for the event (done, try again at T,
//! give up, disable the endpoint). Table-tested; no I/O.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald_policy::{Decision, RetryPolicy};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use time::OffsetDateTime;

use crate::config::WebhookSecret;

/// The `webhook-signature` header: `v1,<base64 HMAC-SHA256 of
/// "{id}.{timestamp}.{body}">` for every secret, space-separated, so a
/// receiver holding either the old or the new secret accepts it.
pub(crate) fn signature(secrets: &[WebhookSecret], id: &str, timestamp: i64, body: &str) -> String {
    secrets
        .iter()
        .filter_map(|secret| {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.key()).ok()?;
            mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
            Some(format!(
                "v1,{}",
                STANDARD.encode(mac.finalize().into_bytes())
            ))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What an endpoint answered to one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// An HTTP status, with the `Retry-After` it carried (in seconds).
    Status(u16, Option<Duration>),
    /// No answer: connection refused, timeout, TLS… (in words).
    Failed(String),
}

/// What follows one try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// 2xx: the event is delivered.
    Delivered,
    /// Try the event again at this instant.
    RetryAt(OffsetDateTime),
    /// The event is older than the endpoint's maximum age: give it up.
    GiveUp,
    /// 410 Gone: the endpoint does not want events any more.
    Disable,
}

/// The next step after the `attempt`-th try of an event made at
/// `event_at`, answered `answer` at `now`: the policy's backoff, or the
/// endpoint's own `Retry-After` on a 429 or 5xx (capped at the policy's
/// longest delay), never past the event's maximum age.
pub(crate) fn after_try<R: Rng + ?Sized>(
    answer: &Answer,
    attempt: u32,
    event_at: OffsetDateTime,
    now: OffsetDateTime,
    policy: &RetryPolicy,
    rng: &mut R,
) -> Next {
    let retry_after = match answer {
        Answer::Status(200..=299, _) => return Next::Delivered,
        Answer::Status(410, _) => return Next::Disable,
        Answer::Status(429 | 500..=599, Some(after)) => Some(*after),
        _ => None,
    };
    match (policy.next_step(attempt, event_at, now, rng), retry_after) {
        (Decision::GiveUp(_), _) => Next::GiveUp,
        (Decision::RetryAt(at), None) => Next::RetryAt(at),
        (Decision::RetryAt(_), Some(after)) => {
            let at = now + after.min(policy.max_delay);
            if at > event_at + policy.max_age {
                Next::GiveUp
            } else {
                Next::RetryAt(at)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use herald_policy::Jitter;
    use time::macros::datetime;

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The example of the Standard Webhooks specification.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(
                std::slice::from_ref(&secret),
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                body
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let both = signature(
            &[secret.clone(), secret],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            body,
        );
        assert_eq!(both.split(' ').count(), 2);
    }

    #[test]
    fn answers_decide_what_follows() {
        let policy = RetryPolicy {
            initial_delay: Duration::from_secs(5),
            multiplier: 2.0,
            max_delay: Duration::from_secs(4 * 3600),
            min_delay: Duration::from_secs(1),
            max_attempts: u32::MAX,
            max_age: Duration::from_secs(3 * 86_400),
            jitter: Jitter::None,
        };
        let t0 = datetime!(2030-01-01 00:00 UTC);
        let mut rng = rand::rng();
        let mut next =
            |answer: Answer, attempt, now| after_try(&answer, attempt, t0, now, &policy, &mut rng);
        assert_eq!(next(Answer::Status(204, None), 1, t0), Next::Delivered);
        assert_eq!(next(Answer::Status(410, None), 1, t0), Next::Disable);
        let secs = |s| time::Duration::seconds(s);
        assert_eq!(
            next(Answer::Status(500, None), 1, t0),
            Next::RetryAt(t0 + secs(5))
        );
        assert_eq!(
            next(Answer::Status(500, None), 3, t0),
            Next::RetryAt(t0 + secs(20))
        );
        assert_eq!(
            next(Answer::Failed("connection refused".into()), 2, t0),
            Next::RetryAt(t0 + secs(10))
        );
        assert_eq!(
            next(Answer::Status(429, Some(Duration::from_secs(90))), 1, t0),
            Next::RetryAt(t0 + secs(90)),
            "Retry-After wins over the backoff"
        );
        assert_eq!(
            next(Answer::Status(400, Some(Duration::from_secs(90))), 1, t0),
            Next::RetryAt(t0 + secs(5)),
            "only a 429 or 5xx sets the next try"
        );
        let late = t0 + secs(3 * 86_400);
        assert_eq!(next(Answer::Status(503, None), 30, late), Next::GiveUp);
    }
}
