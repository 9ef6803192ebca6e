//! When the client tries a request again: a pure decision over the attempt
//! number, the error and the server's `Retry-After`, tested by tables; the
//! client only carries it out.

use std::time::Duration;

use crate::Error;

/// How the client retries a transient failure (429, 503, a connection
/// error). Bounded by attempts and by the longest wait it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The wait before the second attempt when the server gives none;
    /// doubled for each further attempt.
    pub initial_delay: Duration,
    /// The longest wait between two attempts; a `Retry-After` beyond it
    /// ends the retries (the server asks for more patience than allowed).
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryConfig {
    /// No retries at all.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// How long to wait before attempt `attempt + 1` after `error` on
    /// attempt `attempt` (from 1), or `None` to give up. `repeatable`
    /// says whether the request may be repeated when it may have reached
    /// the server (it carries an idempotency key, or only reads);
    /// `jitter` in `[0, 1)` spreads clients' retries apart.
    pub fn delay(
        &self,
        attempt: u32,
        error: &Error,
        retry_after: Option<Duration>,
        repeatable: bool,
        jitter: f64,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts || !error.is_transient() {
            return None;
        }
        if !repeatable && !error.nothing_done() {
            return None;
        }
        if let Some(asked) = retry_after {
            return (asked <= self.max_delay).then_some(asked);
        }
        let doubling = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        let base = self
            .initial_delay
            .saturating_mul(doubling)
            .min(self.max_delay);
        // Up to a quarter more, so that clients refused together do not
        // come back together.
        let extra = base.mul_f64(jitter.clamp(0.0, 1.0) / 4.0);
        Some(base.saturating_add(extra).min(self.max_delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_api::Problem;

    fn problem(status: u16) -> Error {
        Error::Api(Problem {
            kind: "/problems/x".into(),
            title: "x".into(),
            status,
            detail: "x".into(),
            errors: Vec::new(),
            omitted_errors: 0,
        })
    }

    #[test]
    fn delays_double_from_the_initial_one_and_stop_at_the_attempt_bound() {
        let config = RetryConfig::default();
        let ms = Duration::from_millis;
        let table = [
            (1, Some(ms(250))),
            (2, Some(ms(500))),
            (3, Some(ms(1000))),
            (4, None),
        ];
        for (attempt, want) in table {
            assert_eq!(
                config.delay(attempt, &problem(503), None, true, 0.0),
                want,
                "attempt {attempt}"
            );
        }
        let jittered = config.delay(1, &problem(503), None, true, 0.999);
        assert_eq!(jittered.map(|d| d.as_millis()), Some(312));
    }

    #[test]
    fn retry_after_is_honoured_unless_it_exceeds_the_longest_wait() {
        let config = RetryConfig::default();
        let s = Duration::from_secs;
        assert_eq!(
            config.delay(1, &problem(429), Some(s(30)), true, 0.5),
            Some(s(30))
        );
        assert_eq!(config.delay(1, &problem(429), Some(s(61)), true, 0.5), None);
    }

    #[test]
    fn only_transient_failures_are_retried_and_unsafe_repeats_only_when_nothing_was_done() {
        let config = RetryConfig::default();
        let table = [
            (problem(400), true, false),
            (problem(422), true, false),
            (problem(500), true, false),
            (problem(429), false, true),
            (problem(503), false, true),
            (Error::Connect("refused".into()), false, true),
            (Error::Transport("reset".into()), false, false),
            (Error::Transport("reset".into()), true, true),
            (Error::Timeout(Duration::from_secs(1)), true, true),
        ];
        for (error, repeatable, retried) in table {
            assert_eq!(
                config.delay(1, &error, None, repeatable, 0.0).is_some(),
                retried,
                "{error} repeatable={repeatable}"
            );
        }
        assert_eq!(
            RetryConfig::never().delay(1, &problem(503), None, true, 0.0),
            None
        );
    }
}
