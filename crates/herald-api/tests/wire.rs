//! The types read and write the API's JSON byte for byte: each example, as
//! the server writes it, comes back the same after a round trip.

#![allow(clippy::unwrap_used)]

use herald_api::{
    Accepted, BatchAnswer, BatchResult, ErrorGroups, EventKind, FailureClass, Message, MessagePage,
    MessageStatus, Problem, RecipientStatus,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Parses `json` as `T` and writes it again: the same bytes.
fn round_trip<T: DeserializeOwned + Serialize>(json: &str) -> T {
    let value: T = serde_json::from_str(json).unwrap();
    assert_eq!(serde_json::to_string(&value).unwrap(), json);
    value
}

const MESSAGE: &str = r#"{"id":"01JABCDEFGHJKMNPQRSTVWXYZ0","message_id":"<01JABCDEFGHJKMNPQRSTVWXYZ0@example.com>","status":"partial","created_at":"2026-12-05T13:00:00Z","updated_at":"2026-12-05T13:00:02.5Z","attempts":1,"next_attempt_at":null,"recipients":[{"address":"a@example.net","status":"delivered","smtp_code":250,"enhanced_code":"2.0.0","response":"250 2.0.0 ok"},{"address":"b@example.net","status":"failed","smtp_code":550,"enhanced_code":"5.1.1","response":"550 5.1.1 user unknown"}],"events":[{"at":"2026-12-05T13:00:00Z","type":"queued"},{"at":"2026-12-05T13:00:02Z","type":"attempt","relay":"primary","attempt":1,"outcome":"partial","smtp_code":550,"enhanced_code":"5.1.1","detail":"1 of 2 accepted","duration_ms":42},{"at":"2026-12-05T13:00:02.5Z","type":"partial"}],"tags":["welcome"],"metadata":{"user":"42"},"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","submitted_by":"app","template":"welcome","template_version":3}"#;

#[test]
fn a_message_with_its_history() {
    let message: Message = round_trip(MESSAGE);
    assert_eq!(message.status, MessageStatus::Partial);
    assert!(message.status.is_final());
    assert_eq!(message.recipients[1].status, RecipientStatus::Failed);
    let events = message.events.unwrap();
    assert_eq!(events[1].kind, EventKind::Attempt);
    assert_eq!(events[1].smtp_code, Some(550));
    assert_eq!(message.template.as_deref(), Some("welcome"));
    assert_eq!(message.template_version, Some(3));
}

#[test]
fn a_page_of_a_list_without_events_and_with_a_scheduled_message() {
    let json = r#"{"messages":[{"id":"x","message_id":"<x@h>","status":"scheduled","created_at":"2026-12-05T13:00:00Z","updated_at":"2026-12-05T13:00:00Z","send_at":"2026-12-06T00:00:00Z","attempts":0,"next_attempt_at":"2026-12-06T00:00:00Z","recipients":[{"address":"a@example.net","status":"pending","smtp_code":null,"enhanced_code":null,"response":null}],"tags":[],"metadata":{},"template":null,"template_version":null}],"next_cursor":"x"}"#;
    let page: MessagePage = round_trip(json);
    assert_eq!(page.messages[0].events, None);
    assert_eq!(page.next_cursor.as_deref(), Some("x"));
    round_trip::<MessagePage>(r#"{"messages":[],"next_cursor":null}"#);
}

#[test]
fn problems_alone_and_in_a_batch() {
    let problem: Problem = round_trip(
        r#"{"type":"/problems/validation","title":"Invalid message","status":422,"detail":"to: is required (and 1 more)","errors":[{"field":"to","message":"is required"},{"field":"text","message":"text or html is required"}],"omitted_errors":3}"#,
    );
    assert_eq!(problem.errors[1].field, "text");
    round_trip::<Problem>(
        r#"{"type":"/problems/unauthorized","title":"Unauthorized","status":401,"detail":"a valid API key is required"}"#,
    );
    let batch: BatchAnswer = round_trip(
        r#"{"results":[{"id":"a","status":"queued","message_id":"<a@h>"},{"error":{"type":"/problems/malformed","title":"Malformed request","status":400,"detail":"messages[1]: not a JSON object"}}]}"#,
    );
    assert!(matches!(
        &batch.results[0],
        BatchResult::Accepted(Accepted {
            status: MessageStatus::Queued,
            ..
        })
    ));
    assert!(matches!(&batch.results[1], BatchResult::Error { error } if error.status == 400));
}

#[test]
fn error_groups() {
    let groups: ErrorGroups = round_trip(
        r#"{"window_seconds":900,"groups":[{"id":"0123456789ab","relay":"primary","class":"permanent","smtp_code":550,"enhanced_code":null,"text":"550 user <id> unknown","count":3,"window_count":2,"first_seen":"2026-12-05T13:00:00Z","last_seen":"2026-12-05T13:05:00Z","sample_message_id":"m","sample_response":"550 user bob unknown"}]}"#,
    );
    assert_eq!(groups.groups[0].class, FailureClass::Permanent);
}

#[test]
fn every_name_parses_back() {
    for status in MessageStatus::ALL {
        assert_eq!(status.as_str().parse::<MessageStatus>(), Ok(*status));
        assert_eq!(
            serde_json::to_string(status).unwrap(),
            format!("\"{status}\"")
        );
    }
    for kind in EventKind::ALL {
        assert_eq!(serde_json::to_string(kind).unwrap(), format!("\"{kind}\""));
    }
    let unknown = "bounced".parse::<MessageStatus>().unwrap_err();
    assert_eq!(unknown.to_string(), "unknown status \"bounced\"");
}
