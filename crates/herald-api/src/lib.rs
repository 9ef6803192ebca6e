//! What herald's HTTP API says, as types: the bodies it accepts and the
//! answers it gives, exactly as they travel (docs/api.md describes the
//! contract, docs/openapi.yaml its schema). The server serializes these,
//! and the CLI, the tests and clients deserialize them, so that none of
//! them hand-writes or picks apart JSON. Serde only: no HTTP here.
//!
//! The message a client sends is [`MessageRequest`] (from herald-message,
//! which validates it); everything else is defined here.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod admin;
mod errors;
mod lists;
mod message;
mod problem;
mod query;
mod relays;
mod submit;
mod template;

pub use admin::{ReloadResult, Reloaded};
pub use errors::{ErrorGroup, ErrorGroups, FailureClass};
pub use herald_message::{AttachmentRequest, FieldError, MessageRequest};
pub use lists::{
    AddResult, AddResults, AddStatus, AddSuppressions, MAX_ADDRESSES, Suppression, SuppressionPage,
    WebhookDelivery, WebhookDeliveryPage, WebhookDisabled, WebhookEndpoint, WebhookEventType,
    WebhookList,
};
pub use message::{
    AttemptOutcome, BounceClass, DeliveryOutcome, Event, EventKind, Message, MessagePage,
    MessageStatus, Recipient, RecipientStatus, SuppressionReason, UnknownName,
};
pub use problem::{PROBLEM_CONTENT_TYPE, Problem};
pub use query::{DeliveryQuery, ErrorsQuery, ListQuery, MAX_LIST_LIMIT, SuppressionQuery};
pub use relays::{CircuitState, PoolUse, QuotaStatus, RateStatus, RelayStatus, Relays};
pub use submit::{Accepted, BatchAnswer, BatchRequest, BatchResult, RawRequest};
pub use template::{RenderRequest, RenderedTemplate, Template, TemplateList, TemplateRequest};
