//! Exact tables for every rule of a message's life.

use time::macros::datetime;

use super::*;

fn result(status: RecipientStatus) -> RecipientResult {
    RecipientResult {
        address: "x@example.com".to_owned(),
        status,
        smtp_code: None,
        enhanced_code: None,
        response: None,
        class: None,
    }
}

#[test]
fn attempt_outcome_table() {
    use AttemptOutcome::*;
    use RecipientStatus::{Deferred as D, Delivered as Ok, Failed as F};
    let table: &[(&[RecipientStatus], AttemptOutcome)] = &[
        (&[], Delivered),
        (&[Ok], Delivered),
        (&[Ok, Ok], Delivered),
        (&[F], Permanent),
        (&[F, F], Permanent),
        (&[D], Transient),
        (&[D, D], Transient),
        // Nobody delivered, some to retry and some refused for good: a
        // mix, not "transient" (the rule the conformance suite's fixture
        // had drifted from).
        (&[D, F], Partial),
        (&[Ok, F], Partial),
        (&[Ok, D], Partial),
        (&[Ok, D, F], Partial),
    ];
    for (statuses, want) in table {
        let results: Vec<_> = statuses.iter().map(|s| result(*s)).collect();
        assert_eq!(AttemptOutcome::of(&results), *want, "{statuses:?}");
    }
}

#[test]
fn names_round_trip_and_compare_with_text() {
    for kind in EventKind::ALL {
        assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
        assert_eq!(kind, kind.as_str());
        let json = serde_json::to_string(&kind).unwrap_or_default();
        assert_eq!(json, format!("\"{kind}\""));
    }
    for outcome in AttemptOutcome::ALL {
        assert_eq!(outcome.as_str().parse::<AttemptOutcome>(), Ok(outcome));
    }
    assert!("sent".parse::<EventKind>().is_err());
    assert!("failed".parse::<AttemptOutcome>().is_err());
}

#[test]
fn entering_names_the_event_of_each_status() {
    let table = [
        (MessageStatus::Scheduled, Some(EventKind::Scheduled)),
        (MessageStatus::Queued, Some(EventKind::Queued)),
        (MessageStatus::Sending, None),
        (MessageStatus::Deferred, Some(EventKind::Deferred)),
        (MessageStatus::Delivered, Some(EventKind::Delivered)),
        (MessageStatus::Partial, Some(EventKind::Partial)),
        (MessageStatus::Failed, Some(EventKind::Failed)),
        (MessageStatus::Cancelled, Some(EventKind::Cancelled)),
    ];
    for (status, kind) in table {
        assert_eq!(EventKind::entering(status), kind, "{status}");
    }
}

#[test]
fn initial_state_table() {
    let now = datetime!(2030-01-01 12:00 UTC);
    let later = datetime!(2030-01-01 13:00 UTC);
    let earlier = datetime!(2030-01-01 11:00 UTC);
    assert_eq!(initial_state(now, None), (MessageStatus::Queued, now));
    assert_eq!(initial_state(now, Some(now)), (MessageStatus::Queued, now));
    assert_eq!(
        initial_state(now, Some(earlier)),
        (MessageStatus::Queued, now)
    );
    assert_eq!(
        initial_state(now, Some(later)),
        (MessageStatus::Scheduled, later)
    );
}

fn tally(open: u64, delivered: u64, failed: u64) -> Tally {
    Tally {
        open,
        delivered,
        failed,
    }
}

#[test]
fn tally_counts_every_recipient_status() {
    let mut t = Tally::default();
    for (status, n) in [
        (RecipientStatus::Pending, 1),
        (RecipientStatus::Deferred, 2),
        (RecipientStatus::Delivered, 3),
        (RecipientStatus::Failed, 4),
        (RecipientStatus::Suppressed, 5),
    ] {
        t.add(status, n);
    }
    assert_eq!(t, tally(3, 3, 4));
}

#[test]
fn final_status_table() {
    let table = [
        ((0, 0), MessageStatus::Failed),
        ((0, 2), MessageStatus::Failed),
        ((2, 0), MessageStatus::Delivered),
        ((1, 1), MessageStatus::Partial),
    ];
    for ((delivered, failed), want) in table {
        assert_eq!(tally(0, delivered, failed).final_status(), want);
    }
}

#[test]
fn after_attempt_table() {
    let at = datetime!(2030-01-01 12:05 UTC);
    let retry = NextStep::RetryAt(at);
    // Open recipients and a retry time: deferred.
    assert_eq!(
        after_attempt(tally(2, 1, 0), retry),
        AfterAttempt::Defer { at, open: 2 }
    );
    // Nobody open: final whatever the policy said.
    assert_eq!(
        after_attempt(tally(0, 2, 0), retry),
        AfterAttempt::Finish {
            status: MessageStatus::Delivered,
            given_up: 0,
            tally: tally(0, 2, 0)
        }
    );
    // Giving up: open recipients fail, and the mix decides the status.
    assert_eq!(
        after_attempt(tally(2, 1, 0), NextStep::GiveUp),
        AfterAttempt::Finish {
            status: MessageStatus::Partial,
            given_up: 2,
            tally: tally(0, 1, 2)
        }
    );
    assert_eq!(
        after_attempt(tally(1, 0, 1), NextStep::GiveUp),
        AfterAttempt::Finish {
            status: MessageStatus::Failed,
            given_up: 1,
            tally: tally(0, 0, 2)
        }
    );
}

#[test]
fn cancel_and_retry_legality_table() {
    for status in MessageStatus::ALL {
        assert_eq!(
            check_cancel(status).is_ok(),
            !status.is_final(),
            "cancel while {status}"
        );
        assert_eq!(
            check_retry(status).is_ok(),
            matches!(status, MessageStatus::Failed | MessageStatus::Partial),
            "retry while {status}"
        );
    }
}

#[test]
fn lost_leases_requeue_until_the_poison_limit() {
    assert_eq!(unclaimed_status(0), MessageStatus::Queued);
    assert_eq!(unclaimed_status(3), MessageStatus::Deferred);
    let due = LostLease::Due;
    assert_eq!(after_lost_lease(1, 3, 0), due(MessageStatus::Queued));
    assert_eq!(after_lost_lease(2, 3, 1), due(MessageStatus::Deferred));
    assert_eq!(after_lost_lease(3, 3, 0), LostLease::Poisoned);
    assert_eq!(after_lost_lease(4, 3, 2), LostLease::Poisoned);
    // A limit of 0 means the first loss (a limit below one is one).
    assert_eq!(after_lost_lease(1, 0, 0), LostLease::Poisoned);
    assert_eq!(
        lost_lease_detail(EventKind::LeaseExpired, "n1", due(MessageStatus::Queued), 1),
        "lease of n1 expired"
    );
    assert!(
        lost_lease_detail(EventKind::LeaseReclaimed, "n1", LostLease::Poisoned, 3)
            .contains("poison message")
    );
}
