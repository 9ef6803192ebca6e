//! The API's answers (herald-api's types) built from what the store and
//! the error groups hold. The conversions are exhaustive matches, so a
//! state added to the store without its API name does not compile; the
//! tests below check that both spell every name alike.

use herald_api as api;
use herald_store::{
    AttemptOutcome, BounceClass, DeliveryOutcome, Enqueued, Event, EventKind, MessageRecord,
    MessageStatus, RecipientRecord, RecipientStatus, Suppression, SuppressionReason,
    WebhookDeliveryRecord, WebhookEventType,
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
        template_version: record.template.as_ref().map(|t| t.version),
        template: record.template.map(|t| t.name),
    }
}

fn recipient(record: RecipientRecord) -> api::Recipient {
    api::Recipient {
        address: record.address,
        status: recipient_status(record.status),
        smtp_code: record.smtp_code,
        enhanced_code: record.enhanced_code,
        response: record.response,
        class: record.class.map(bounce_class),
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
        class: event.class.map(bounce_class),
    }
}

fn bounce_class(class: BounceClass) -> api::BounceClass {
    use api::BounceClass as Api;
    match class {
        BounceClass::InvalidRecipient => Api::InvalidRecipient,
        BounceClass::MailboxFull => Api::MailboxFull,
        BounceClass::Policy => Api::Policy,
        BounceClass::Message => Api::Message,
        BounceClass::RateLimited => Api::RateLimited,
        BounceClass::Network => Api::Network,
        BounceClass::Auth => Api::Auth,
        BounceClass::Other => Api::Other,
    }
}

/// An entry of the suppression list.
pub(crate) fn suppression(entry: Suppression) -> api::Suppression {
    api::Suppression {
        address: entry.address,
        reason: suppression_reason(entry.reason),
        message: entry.message,
        response: entry.response,
        created_at: entry.created_at,
        expires_at: entry.expires_at,
    }
}

pub(crate) fn suppression_reason(reason: SuppressionReason) -> api::SuppressionReason {
    use api::SuppressionReason as Api;
    match reason {
        SuppressionReason::Bounce => Api::Bounce,
        SuppressionReason::Complaint => Api::Complaint,
        SuppressionReason::Manual => Api::Manual,
    }
}

pub(crate) fn store_reason(reason: api::SuppressionReason) -> SuppressionReason {
    use api::SuppressionReason as Api;
    match reason {
        Api::Bounce => SuppressionReason::Bounce,
        Api::Complaint => SuppressionReason::Complaint,
        Api::Manual => SuppressionReason::Manual,
    }
}

/// One try of the webhook delivery log.
pub(crate) fn webhook_delivery(record: WebhookDeliveryRecord) -> api::WebhookDelivery {
    let d = record.delivery;
    api::WebhookDelivery {
        id: record.id,
        webhook: d.endpoint,
        event_id: d.event_id,
        event_type: webhook_event_type(d.kind),
        attempt: d.attempt,
        at: d.at,
        http_status: d.http_status,
        duration_ms: u64::try_from(d.duration.as_millis()).unwrap_or(u64::MAX),
        error: d.error,
        outcome: delivery_outcome(d.outcome),
    }
}

pub(crate) fn webhook_event_type(kind: WebhookEventType) -> api::WebhookEventType {
    use api::WebhookEventType as Api;
    match kind {
        WebhookEventType::MessageDelivered => Api::MessageDelivered,
        WebhookEventType::MessageDeferred => Api::MessageDeferred,
        WebhookEventType::MessageBounced => Api::MessageBounced,
        WebhookEventType::MessageSuppressed => Api::MessageSuppressed,
        WebhookEventType::MessageFailed => Api::MessageFailed,
        WebhookEventType::SuppressionAdded => Api::SuppressionAdded,
        WebhookEventType::SuppressionRemoved => Api::SuppressionRemoved,
    }
}

fn delivery_outcome(outcome: DeliveryOutcome) -> api::DeliveryOutcome {
    use api::DeliveryOutcome as Api;
    match outcome {
        DeliveryOutcome::Delivered => Api::Delivered,
        DeliveryOutcome::Retrying => Api::Retrying,
        DeliveryOutcome::GaveUp => Api::GaveUp,
        DeliveryOutcome::Disabled => Api::Disabled,
        DeliveryOutcome::Failed => Api::Failed,
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
        for c in BounceClass::ALL {
            assert_eq!(bounce_class(c).as_str(), c.as_str());
        }
        assert_eq!(api::BounceClass::ALL.len(), BounceClass::ALL.len());
        for r in SuppressionReason::ALL {
            assert_eq!(suppression_reason(r).as_str(), r.as_str());
            assert_eq!(store_reason(suppression_reason(r)), r);
        }
        for o in DeliveryOutcome::ALL {
            assert_eq!(delivery_outcome(o).as_str(), o.as_str());
        }
        for k in WebhookEventType::ALL {
            assert_eq!(webhook_event_type(k).as_str(), k.as_str());
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
