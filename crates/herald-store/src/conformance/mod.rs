//! The behaviour every [`Store`] backend must show, written once against
//! the trait and run against each backend (SQLite always, PostgreSQL when
//! it exists), so the service can rely on the contract, not on a backend.
//!
//! Each behaviour is a `pub async fn` taking a fresh store; [`run_all`]
//! runs them all, each on its own store, and names the one that failed.
//! Times are fixed instants (whole seconds, so any backend's precision
//! keeps them), never the wall clock: the suite never sleeps, except to
//! wait for what a feed holds back (see [`visible`]).

// A test suite reports by panicking; `expect` with a sentence is its
// clearest way to say what went wrong.
#![allow(clippy::expect_used)]

mod admin;
mod claim;
mod enqueue;
mod limits;
mod nodes;
mod outcome;
mod query;
mod suppress;
mod template;
mod webhooks;

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use time::OffsetDateTime;
use time::macros::datetime;

use crate::{
    AttemptOutcome, AttemptRecord, EventKind, Idempotency, NewMessage, NextStep, RecipientResult,
    RecipientStatus, Store,
};

pub use admin::{
    cancel_final_message_is_illegal, cancel_stops_a_queued_or_scheduled_message,
    cancel_while_sending_makes_the_worker_lose_its_lease,
    retry_of_unfinished_or_delivered_is_illegal, retry_requeues_only_failed_recipients,
    unknown_ids_are_not_found,
};
pub use claim::{
    claim_is_exclusive_under_concurrency, claim_takes_oldest_due_first_within_limit,
    expired_lease_goes_to_another_owner, extend_lease_keeps_the_claim,
    postpone_defers_without_spending_an_attempt, reclaim_expired_makes_leases_due_again,
    release_makes_the_message_due_again,
};
pub use enqueue::{
    batch_commits_valid_items_and_reports_each_conflict, enqueue_then_get_round_trips,
    idempotency_key_expires_after_the_window, idempotency_key_with_another_body_conflicts,
    idempotent_repeat_returns_the_first_message, keyed_batch_replays_whole_or_conflicts_whole,
    replay_answers_with_the_first_answer_and_stores_nothing, scheduled_message_waits_for_send_at,
};
pub use limits::{
    a_quota_counts_to_its_limit_and_resets_with_the_period,
    a_quota_hands_out_blocks_and_takes_them_back, a_quota_is_never_overdrawn_under_concurrency,
    rate_slots_follow_the_gcra_rule,
};
pub use nodes::{
    a_message_whose_leases_keep_ending_is_failed_as_poison,
    lead_gives_a_role_to_one_holder_at_a_time, purge_deletes_old_final_messages_in_batches,
    reclaim_all_takes_back_every_lease, reclaim_owned_takes_back_that_owners_leases_at_once,
    renew_leases_extends_the_owners_leases, the_feed_misses_nothing_under_concurrent_appends,
    the_feed_reads_on_from_any_cursor,
};
pub use outcome::{
    all_accepted_is_delivered, events_tell_the_story_in_order, give_up_fails_open_recipients,
    mixed_results_are_partial_with_per_recipient_detail, permanent_failure_fails_the_message,
    transient_failure_defers_and_retries_only_open_recipients,
    wrong_owner_cannot_record_and_changes_nothing,
};
pub use query::{
    list_filters_by_status_tag_recipient_and_time, list_pages_cover_everything_exactly_once,
    ping_answers, stats_and_depth_count_by_status,
};
pub use suppress::{
    a_hard_bounce_suppresses_in_the_attempts_transaction, a_lapsed_entry_no_longer_holds,
    a_policy_rejection_does_not_suppress, giving_up_and_suppressed_recipients_make_their_events,
    suppressions_are_added_listed_and_removed, webhook_cursors_and_deliveries_are_kept,
};
pub use template::{
    concurrent_template_versions_are_distinct, templates_keep_every_version,
    the_latest_template_is_never_stale,
};
pub use webhooks::{
    a_disabled_webhook_stays_disabled_until_enabled, an_attempt_counts_only_the_entries_it_adds,
    event_retention_deletes_only_what_is_done_and_old, tries_and_events_are_found_by_id,
};

/// Runs every conformance test, each on a fresh store from `make`, one
/// after another. Panics naming the first test that fails. Needs a Tokio
/// runtime (multi-threaded, so concurrency tests run in parallel).
pub async fn run_all<S, F, Fut>(make: F)
where
    S: Store,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    macro_rules! suite {
        ($($test:ident),* $(,)?) => {
            $( run(stringify!($test), $test(make().await)).await; )*
        };
    }
    suite!(
        enqueue_then_get_round_trips,
        idempotent_repeat_returns_the_first_message,
        idempotency_key_with_another_body_conflicts,
        idempotency_key_expires_after_the_window,
        replay_answers_with_the_first_answer_and_stores_nothing,
        batch_commits_valid_items_and_reports_each_conflict,
        keyed_batch_replays_whole_or_conflicts_whole,
        scheduled_message_waits_for_send_at,
        claim_is_exclusive_under_concurrency,
        claim_takes_oldest_due_first_within_limit,
        expired_lease_goes_to_another_owner,
        extend_lease_keeps_the_claim,
        release_makes_the_message_due_again,
        postpone_defers_without_spending_an_attempt,
        reclaim_expired_makes_leases_due_again,
        wrong_owner_cannot_record_and_changes_nothing,
        transient_failure_defers_and_retries_only_open_recipients,
        permanent_failure_fails_the_message,
        mixed_results_are_partial_with_per_recipient_detail,
        give_up_fails_open_recipients,
        all_accepted_is_delivered,
        events_tell_the_story_in_order,
        cancel_stops_a_queued_or_scheduled_message,
        cancel_final_message_is_illegal,
        cancel_while_sending_makes_the_worker_lose_its_lease,
        retry_requeues_only_failed_recipients,
        retry_of_unfinished_or_delivered_is_illegal,
        unknown_ids_are_not_found,
        list_filters_by_status_tag_recipient_and_time,
        list_pages_cover_everything_exactly_once,
        stats_and_depth_count_by_status,
        ping_answers,
        renew_leases_extends_the_owners_leases,
        reclaim_owned_takes_back_that_owners_leases_at_once,
        reclaim_all_takes_back_every_lease,
        a_message_whose_leases_keep_ending_is_failed_as_poison,
        purge_deletes_old_final_messages_in_batches,
        lead_gives_a_role_to_one_holder_at_a_time,
        the_feed_reads_on_from_any_cursor,
        the_feed_misses_nothing_under_concurrent_appends,
        suppressions_are_added_listed_and_removed,
        a_lapsed_entry_no_longer_holds,
        a_hard_bounce_suppresses_in_the_attempts_transaction,
        a_policy_rejection_does_not_suppress,
        giving_up_and_suppressed_recipients_make_their_events,
        webhook_cursors_and_deliveries_are_kept,
        tries_and_events_are_found_by_id,
        a_disabled_webhook_stays_disabled_until_enabled,
        event_retention_deletes_only_what_is_done_and_old,
        an_attempt_counts_only_the_entries_it_adds,
        templates_keep_every_version,
        concurrent_template_versions_are_distinct,
        the_latest_template_is_never_stale,
        a_quota_counts_to_its_limit_and_resets_with_the_period,
        a_quota_hands_out_blocks_and_takes_them_back,
        a_quota_is_never_overdrawn_under_concurrency,
        rate_slots_follow_the_gcra_rule,
    );
}

/// Runs one test in its own task, so its panic can be reported with its
/// name instead of tearing through the runner anonymously.
async fn run(name: &str, test: impl Future<Output = ()> + Send + 'static) {
    if let Err(failure) = tokio::spawn(test).await {
        let why = if failure.is_panic() {
            panic_text(failure.into_panic())
        } else {
            failure.to_string()
        };
        panic!("conformance test `{name}` failed: {why}");
    }
}

fn panic_text(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(text) => (*text).to_owned(),
            Err(_) => "(non-text panic)".to_owned(),
        },
    }
}

// ---- fixtures shared by the tests ----

/// What `read` gives once `done` holds for it: the feeds (the webhook
/// outbox, the nodes' feed) hold back what committed after a transaction
/// still running, and on PostgreSQL that is any transaction in the cluster
/// (a concurrent test's in another database too), so an entry appended
/// just now may show a moment later. After 30 s, whatever `read` gives, for
/// the test's assertion to show.
async fn visible_when<T, F, Fut>(mut read: F, done: impl Fn(&[T]) -> bool) -> Vec<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Vec<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = read().await;
        if done(&got) || tokio::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// [`visible_when`] `read` gives at least `want` items.
async fn visible<T, F, Fut>(want: usize, read: F) -> Vec<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Vec<T>>,
{
    visible_when(read, |got| got.len() >= want).await
}

/// The suite's epoch: every instant is an offset from it.
fn t0() -> OffsetDateTime {
    datetime!(2030-01-01 00:00 UTC)
}

/// `secs` seconds after [`t0`].
fn at(secs: i64) -> OffsetDateTime {
    t0() + time::Duration::seconds(secs)
}

/// The lease every test claims with.
const LEASE: Duration = Duration::from_secs(60);

const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.org";
const DAVE: &str = "dave@example.net";

/// A ULID (Crockford base32 of 48 bits of milliseconds and 80 bits of
/// "randomness", here the sequence number): sorts by creation time, and
/// parses for a backend that checks.
fn ulid(created: OffsetDateTime, seq: u32) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let millis = u128::try_from(created.unix_timestamp_nanos() / 1_000_000)
        .expect("suite times are after 1970");
    let mut value = (millis << 80) | u128::from(seq);
    let mut text = [b'0'; 26];
    for slot in text.iter_mut().rev() {
        *slot = ALPHABET[(value & 31) as usize];
        value >>= 5;
    }
    String::from_utf8(text.to_vec()).expect("the alphabet is ASCII")
}

/// The rendered bytes of message `seq`: CRLFs, UTF-8, and bytes that are
/// not UTF-8 at all, so a backend that stores text instead of bytes shows.
fn rendered(seq: u32) -> Vec<u8> {
    let mut bytes = format!(
        "From: sender@example.com\r\nTo: bob@example.com\r\nSubject: conformance {seq}\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         订单确认 — {seq}\r\n"
    )
    .into_bytes();
    bytes.extend_from_slice(&[0x00, 0xff, 0xfe, b'\r', b'\n']);
    bytes
}

/// A message `seq` created at `created` for `recipients`.
fn message(seq: u32, created: OffsetDateTime, recipients: &[&str]) -> NewMessage {
    let id = ulid(created, seq);
    NewMessage {
        message_id: format!("<{id}@conformance.test>"),
        id,
        created_at: created,
        send_at: None,
        sender: Some("sender@example.com".to_owned()),
        recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
        rendered: rendered(seq),
        smtputf8: false,
        tags: Vec::new(),
        metadata: BTreeMap::new(),
        trace_id: None,
        submitted_by: None,
        template: None,
        idempotency: None,
    }
}

/// `message` carrying an idempotency key.
fn keyed(seq: u32, created: OffsetDateTime, key: &str, hash: &str) -> NewMessage {
    NewMessage {
        idempotency: Some(Idempotency {
            key: key.to_owned(),
            request_hash: hash.to_owned(),
        }),
        ..message(seq, created, &[BOB])
    }
}

fn result(
    address: &str,
    status: RecipientStatus,
    code: u16,
    enhanced: &str,
    text: &str,
) -> RecipientResult {
    RecipientResult {
        address: address.to_owned(),
        status,
        smtp_code: Some(code),
        enhanced_code: Some(enhanced.to_owned()),
        response: Some(text.to_owned()),
        class: (code >= 400).then(|| herald_policy::classify(code, Some(enhanced), text)),
    }
}

fn delivered(address: &str) -> RecipientResult {
    result(
        address,
        RecipientStatus::Delivered,
        250,
        "2.0.0",
        "OK queued as ABC",
    )
}

fn deferred(address: &str) -> RecipientResult {
    result(
        address,
        RecipientStatus::Deferred,
        451,
        "4.7.1",
        "try again later",
    )
}

fn failed(address: &str) -> RecipientResult {
    result(
        address,
        RecipientStatus::Failed,
        550,
        "5.1.1",
        "user unknown",
    )
}

/// An attempt started at `started` through relay `primary`, 84 ms long;
/// its outcome summarises the results the way the service would.
fn attempt(
    started: OffsetDateTime,
    recipients: Vec<RecipientResult>,
    next: NextStep,
) -> AttemptRecord {
    let outcome = AttemptOutcome::of(&recipients);
    let first = recipients
        .iter()
        .find(|r| r.status != RecipientStatus::Delivered);
    let shown = first.or(recipients.first());
    AttemptRecord {
        started_at: started,
        duration: Duration::from_millis(84),
        relay: "primary".to_owned(),
        outcome,
        smtp_code: shown.and_then(|r| r.smtp_code),
        enhanced_code: shown.and_then(|r| r.enhanced_code.clone()),
        detail: shown
            .map(|r| {
                format!(
                    "{} {} {}",
                    r.smtp_code.unwrap_or(0),
                    r.enhanced_code.as_deref().unwrap_or(""),
                    r.response.as_deref().unwrap_or("")
                )
            })
            .unwrap_or_default(),
        class: shown.and_then(|r| r.class),
        recipients,
        next,
        suppression: crate::SuppressionPolicy::off(),
    }
}

/// Claims exactly one message for `owner` at `now`.
async fn claim_one<S: Store>(store: &S, owner: &str, now: OffsetDateTime) -> crate::Claimed {
    let mut claimed = store
        .claim(owner, 10, LEASE, now)
        .await
        .expect("claim should succeed");
    assert_eq!(
        claimed.len(),
        1,
        "expected exactly one due message at {now}"
    );
    claimed.remove(0)
}

/// The message, which must exist.
async fn get<S: Store>(store: &S, id: &str) -> crate::MessageRecord {
    store
        .get(id)
        .await
        .expect("get should succeed")
        .unwrap_or_else(|| panic!("message {id} should exist"))
}

/// The kinds of the message's events, oldest first.
async fn event_kinds<S: Store>(store: &S, id: &str) -> Vec<EventKind> {
    get(store, id)
        .await
        .events
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulids_sort_by_creation_then_sequence() {
        let a = ulid(at(0), 2);
        let b = ulid(at(1), 1);
        let c = ulid(at(1), 2);
        assert_eq!(a.len(), 26);
        assert!(a < b && b < c, "{a} {b} {c}");
    }
}
