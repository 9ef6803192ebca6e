//! A message at the end of DATA made into a [`NewMessage`] and committed:
//! the reply to the final dot (`250 2.0.0 queued as <id>` only after the
//! store's commit).

use std::collections::BTreeMap;

use herald_message::new_id;
use herald_store::NewMessage;

use super::raw;
use super::session::{Shared, Transaction};
use crate::api::queued;
use crate::observe::metrics::AcceptSource;
use crate::trace::TraceId;

/// Commits the message; the reply for the final dot.
pub(super) async fn enqueue(
    shared: &Shared,
    submitter: Option<&str>,
    mail: Transaction,
    data: &[u8],
) -> String {
    let state = &shared.state;
    let id = new_id();
    let now = state.clock.now();
    let prepared = match raw::prepare(data, &id, mail.sender.as_ref(), now) {
        Ok(p) => p,
        Err(raw::RawError(why)) => return format!("554 5.6.0 {why}"),
    };
    let max = shared.config.max_message_bytes;
    if prepared.bytes.len() > max {
        return format!("552 5.3.4 Message size exceeds the limit of {max} bytes");
    }
    let trace = TraceId::generate();
    let new = NewMessage {
        id,
        message_id: prepared.message_id,
        created_at: now,
        send_at: None,
        sender: mail.sender.map(|s| s.address().to_owned()),
        recipients: mail
            .recipients
            .iter()
            .map(|r| r.address().to_owned())
            .collect(),
        rendered: prepared.bytes,
        smtputf8: mail.smtputf8 || prepared.utf8_headers,
        tags: prepared.tags,
        metadata: BTreeMap::new(),
        trace_id: Some(trace.to_string()),
        submitted_by: submitter.map(str::to_owned),
        template: None,
        idempotency: None,
    };
    match state.store.enqueue(new).await {
        Ok(enqueued) => {
            queued(state, &enqueued.id, &trace, AcceptSource::Smtp);
            format!("250 2.0.0 queued as {}", enqueued.id)
        }
        Err(error) => {
            tracing::error!(error = %error, "SMTP message could not be queued");
            "451 4.3.0 The message could not be queued; try again later".to_owned()
        }
    }
}
