//! The JSON request path over arbitrary bytes: the API's parse, then
//! validation, then rendering. Every input ends as a refusal (which the
//! API answers with a 4xx) or as wire-safe message bytes; never a panic.

use herald_message::{Limits, MessageRequest};

/// One input: the body of `POST /v1/messages`.
pub fn run(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<MessageRequest>(data) else {
        return;
    };
    match request.validate(&Limits::default()) {
        Ok(message) => {
            let rendered = message.render(&crate::wire::options(&message));
            crate::wire::assert_wire_safe(&rendered.bytes);
        }
        Err(errors) => assert!(!errors.errors().is_empty()),
    }
}
