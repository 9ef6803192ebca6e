//! The API's answers (herald-api's types) built from what the store and
//! the error groups hold. The conversions are exhaustive matches, so a
//! state added to the store without its API name does not compile; the
//! tests below check that both spell every name alike.

use herald_api as api;
use herald_store::{
    AttemptOutcome, Enqueued, Event, EventKind, MessageRecord, MessageStatus, RecipientRecord,
    RecipientStatus,
};

use herald_alerts::{FailureClass, GroupView};

/// The `202` body for a stored (or replayed) message.
pub(crate) fn accepted(enqueued: Enqueued) -> api::Accepted {
    api::Accepted {
        id: enqueued.id,
        status: status(enqueued.status),
        message_id: enqueued.message_id,
    }
}

/// A message as `GET /v1/messages/{id}`, retry and cancel show it.
pub(crate) fn full(record: MessageRecord) -> api::Message {
    message(record, true)
}

/// A message as a list shows it: without its events.
pub(crate) fn summary(record: MessageRecord) -> api::Message {
    message(record, false)
}

fn message(record: MessageRecord, with_events: bool) -> api::Message {
    api::Message {
        id: record.id,
        message_id: record.message_id,
        status: status(record.status),
        created_at: record.created_at,
        updated_at: record.updated_at,
        send_at: record.send_at,
        attempts: record.attempts,
        next_attempt_at: record.next_attempt_at,
        recipients: record.recipients.into_iter().map(recipient).collect(),
        events: with_events.then(|| record.events.into_iter().map(event).collect()),
        tags: record.tags,
        metadata: record.metadata,
        trace_id: record.trace_id,
        submitted_by: record.submitted_by,
    }
}

fn recipient(record: RecipientRecord) -> api::Recipient {
    api::Recipient {
        address: record.address,
        status: recipient_status(record.status),
        smtp_code: record.smtp_code,
        enhanced_code: record.enhanced_code,
        response: record.response,
    }
}

fn event(event: Event) -> api::Event {
    api::Event {
        at: event.at,
        kind: event_kind(event.kind),
        relay: event.relay,
        attempt: event.attempt,
        outcome: event.outcome.map(outcome),
        smtp_code: event.smtp_code,
        enhanced_code: event.enhanced_code,
        detail: event.detail,
        duration_ms: event.duration_ms,
    }
}

/// One error group of `GET /v1/errors`.
pub(crate) fn error_group(view: GroupView) -> api::ErrorGroup {
    api::ErrorGroup {
        id: view.id,
        relay: view.relay,
        class: failure_class(view.class),
        smtp_code: view.smtp_code,
        enhanced_code: view.enhanced_code,
        text: view.text,
        count: view.count,
        window_count: view.window_count,
        first_seen: view.first_seen,
        last_seen: view.last_seen,
        sample_message_id: view.sample_message_id,
        sample_response: view.sample_response,
    }
}

/// A message status in the API's terms.
pub(crate) fn status(status: MessageStatus) -> api::MessageStatus {
    use api::MessageStatus as Api;
    match status {
        MessageStatus::Scheduled => Api::Scheduled,
        MessageStatus::Queued => Api::Queued,
        MessageStatus::Sending => Api::Sending,
        MessageStatus::Deferred => Api::Deferred,
        MessageStatus::Delivered => Api::Delivered,
        MessageStatus::Partial => Api::Partial,
        MessageStatus::Failed => Api::Failed,
        MessageStatus::Cancelled => Api::Cancelled,
    }
}

/// The store's status for an API status (a list filter).
pub(crate) fn store_status(status: api::MessageStatus) -> MessageStatus {
    use api::MessageStatus as Api;
    match status {
        Api::Scheduled => MessageStatus::Scheduled,
        Api::Queued => MessageStatus::Queued,
        Api::Sending => MessageStatus::Sending,
        Api::Deferred => MessageStatus::Deferred,
        Api::Delivered => MessageStatus::Delivered,
        Api::Partial => MessageStatus::Partial,
        Api::Failed => MessageStatus::Failed,
        Api::Cancelled => MessageStatus::Cancelled,
    }
}

fn recipient_status(status: RecipientStatus) -> api::RecipientStatus {
    use api::RecipientStatus as Api;
    match status {
        RecipientStatus::Pending => Api::Pending,
        RecipientStatus::Deferred => Api::Deferred,
        RecipientStatus::Delivered => Api::Delivered,
        RecipientStatus::Failed => Api::Failed,
        RecipientStatus::Suppressed => Api::Suppressed,
    }
}

fn event_kind(kind: EventKind) -> api::EventKind {
    use api::EventKind as Api;
    match kind {
        EventKind::Queued => Api::Queued,
        EventKind::Scheduled => Api::Scheduled,
        EventKind::Attempt => Api::Attempt,
        EventKind::Deferred => Api::Deferred,
        EventKind::Delivered => Api::Delivered,
        EventKind::Partial => Api::Partial,
        EventKind::Failed => Api::Failed,
        EventKind::Cancelled => Api::Cancelled,
        EventKind::Retried => Api::Retried,
        EventKind::LeaseExpired => Api::LeaseExpired,
        EventKind::LeaseReclaimed => Api::LeaseReclaimed,
    }
}

fn failure_class(class: FailureClass) -> api::FailureClass {
    match class {
        FailureClass::Transient => api::FailureClass::Transient,
        FailureClass::Permanent => api::FailureClass::Permanent,
    }
}

fn outcome(outcome: AttemptOutcome) -> api::AttemptOutcome {
    use api::AttemptOutcome as Api;
    match outcome {
        AttemptOutcome::Delivered => Api::Delivered,
        AttemptOutcome::Partial => Api::Partial,
        AttemptOutcome::Transient => Api::Transient,
        AttemptOutcome::Permanent => Api::Permanent,
        AttemptOutcome::Error => Api::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_spells_every_name_as_the_store_does() {
        for s in MessageStatus::ALL {
            assert_eq!(status(s).as_str(), s.as_str());
            assert_eq!(store_status(status(s)), s);
        }
        assert_eq!(api::MessageStatus::ALL.len(), MessageStatus::ALL.len());
        for s in [
            RecipientStatus::Pending,
            RecipientStatus::Deferred,
            RecipientStatus::Delivered,
            RecipientStatus::Failed,
            RecipientStatus::Suppressed,
        ] {
            assert_eq!(recipient_status(s).as_str(), s.as_str());
        }
        assert_eq!(api::RecipientStatus::ALL.len(), 5);
        for k in EventKind::ALL {
            assert_eq!(event_kind(k).as_str(), k.as_str());
        }
        assert_eq!(api::EventKind::ALL.len(), EventKind::ALL.len());
        for o in AttemptOutcome::ALL {
            assert_eq!(outcome(o).as_str(), o.as_str());
        }
        assert_eq!(api::AttemptOutcome::ALL.len(), AttemptOutcome::ALL.len());
        for c in [FailureClass::Transient, FailureClass::Permanent] {
            assert_eq!(
                serde_json::to_value(failure_class(c)).ok(),
                Some(serde_json::Value::from(c.as_str()))
            );
        }
    }
}
