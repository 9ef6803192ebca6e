//! The message as applications send it: the JSON body of
//! `POST /v1/messages`, shared by the HTTP API and `herald send --json`.
//! Plain strings here; [`MessageRequest::validate`] turns them into a
//! [`Message`](crate::Message) or a list of errors that name each field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

mod bounded;

pub use bounded::MAX_ITEMS;

/// One message, exactly as the API's JSON carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    /// The author, `addr` or `Name <addr>`. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Primary recipients.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "bounded::list"
    )]
    pub to: Vec<String>,
    /// Copied recipients.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "bounded::list"
    )]
    pub cc: Vec<String>,
    /// Blind-copied recipients: in the envelope, never in the headers.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "bounded::list"
    )]
    pub bcc: Vec<String>,
    /// Where replies go, if not to `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// The subject line, UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The plain-text body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The HTML body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Attachments, regular and inline.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "objects::list"
    )]
    pub attachments: Vec<AttachmentRequest>,
    /// Extra headers (not the ones herald sets itself).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "bounded::map"
    )]
    pub headers: BTreeMap<String, String>,
    /// Labels for searching and metrics.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "bounded::list"
    )]
    pub tags: Vec<String>,
    /// Free key/value data kept with the message, never sent.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "bounded::map"
    )]
    pub metadata: BTreeMap<String, String>,
    /// Send no earlier than this instant (RFC 3339).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub send_at: Option<OffsetDateTime>,
    /// A stored template to render at acceptance instead of `subject`,
    /// `text` and `html` (the HTTP API only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The template's version; its latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<u32>,
    /// The template's variables, a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One attachment as the API's JSON carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRequest {
    /// The file name shown to the reader; required unless `inline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The media type; guessed from the file name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The bytes, base64-encoded (standard alphabet; white space ignored).
    pub content: String,
    /// Shown in the HTML body (referenced as `cid:<content_id>`) rather than
    /// offered as a file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inline: bool,
    /// The Content-ID an inline part is referenced by; required if `inline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_id: Option<String>,
}

/// serde's derived `Deserialize` for a struct also takes a sequence of the
/// field values in order (`["a.pdf", "application/pdf", "…"]`), which is
/// not the API's schema and would make the meaning of a value depend on
/// its position. Lists of objects are read through [`objects::list`],
/// which takes JSON objects only.
mod objects {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::Deserialize;
    use serde::de::value::MapAccessDeserializer;
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

    /// A list whose every item must be an object, at most
    /// [`MAX_ITEMS`](super::MAX_ITEMS) of them.
    pub(super) fn list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        deserializer.deserialize_seq(List(PhantomData))
    }

    struct List<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for List<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of JSON objects")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(item) = seq.next_element_seed(Object(PhantomData))? {
                super::bounded::admit(items.len())?;
                items.push(item);
            }
            Ok(items)
        }
    }

    /// One item: a map, handed to `T`'s own (derived) deserializer.
    struct Object<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Object<T> {
        type Value = T;

        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
            deserializer.deserialize_map(self)
        }
    }

    impl<'de, T: Deserialize<'de>> Visitor<'de> for Object<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(attachments: &str) -> Result<MessageRequest, serde_json::Error> {
        serde_json::from_str(&format!(
            r#"{{"from": "a@example.com", "to": ["b@example.com"], "text": "hi",
                "attachments": {attachments}}}"#
        ))
    }

    #[test]
    fn attachments_are_objects() {
        let request = parse(r#"[{"filename": "a.txt", "content": "aGk="}]"#).unwrap();
        assert_eq!(request.attachments.len(), 1);
        assert_eq!(request.attachments[0].filename.as_deref(), Some("a.txt"));
        assert_eq!(request.attachments[0].content, "aGk=");
        assert!(parse("[]").unwrap().attachments.is_empty());
    }

    #[test]
    fn an_attachment_given_as_a_positional_list_is_refused() {
        let error = parse(r#"[["a.txt", "text/plain", "aGk="]]"#).unwrap_err();
        assert!(error.to_string().contains("a JSON object"), "{error}");
        let error = parse(r#"[{"filename": "a.txt", "content": "aGk="}, ["b.txt"]]"#).unwrap_err();
        assert!(error.to_string().contains("a JSON object"), "{error}");
    }

    #[test]
    fn attachments_that_are_not_a_list_are_refused() {
        let error = parse(r#"{"filename": "a.txt", "content": "aGk="}"#).unwrap_err();
        assert!(
            error.to_string().contains("a list of JSON objects"),
            "{error}"
        );
        // The unknown-field check of the items still holds.
        let error = parse(r#"[{"filename": "a.txt", "content": "aGk=", "size": 2}]"#).unwrap_err();
        assert!(error.to_string().contains("size"), "{error}");
    }
}
