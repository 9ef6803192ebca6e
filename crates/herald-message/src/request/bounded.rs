//! Lists and maps of a request, read with a ceiling on their length.
//!
//! serde would read a list of any length before validation could count it:
//! `"to": ["", "", …]` with millions of items costs 24 bytes of `String`
//! per 3 bytes of JSON, and far more once each item is validated. Every
//! list and map of a request is therefore refused while it is read, as
//! soon as it holds more than [`MAX_ITEMS`] entries — well above any limit
//! a service may configure, so the limits themselves stay in
//! [`Limits`](crate::Limits) and their errors name the field.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

/// The most items any list (recipients, tags, attachments) or map
/// (headers, metadata) of one request may hold.
pub const MAX_ITEMS: usize = 10_000;

/// The error a list or map past [`MAX_ITEMS`] gets.
fn too_many<E: serde::de::Error>() -> E {
    E::custom(format_args!("more than {MAX_ITEMS} items"))
}

/// A list of strings, at most [`MAX_ITEMS`] long.
pub(crate) fn list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct List;

    impl<'de> Visitor<'de> for List {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of at most {MAX_ITEMS} strings")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(item) = seq.next_element::<String>()? {
                if items.len() == MAX_ITEMS {
                    return Err(too_many());
                }
                items.push(item);
            }
            Ok(items)
        }
    }

    deserializer.deserialize_seq(List)
}

/// A map of strings to strings, at most [`MAX_ITEMS`] entries (a key given
/// twice counts twice).
pub(crate) fn map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct Map;

    impl<'de> Visitor<'de> for Map {
        type Value = BTreeMap<String, String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an object of at most {MAX_ITEMS} string values")
        }

        fn visit_map<A: MapAccess<'de>>(
            self,
            mut access: A,
        ) -> Result<BTreeMap<String, String>, A::Error> {
            let mut entries = BTreeMap::new();
            let mut read = 0usize;
            while let Some((key, value)) = access.next_entry::<String, String>()? {
                read += 1;
                if read > MAX_ITEMS {
                    return Err(too_many());
                }
                entries.insert(key, value);
            }
            Ok(entries)
        }
    }

    deserializer.deserialize_map(Map)
}

/// Counts one more item of a list being read: an error past [`MAX_ITEMS`].
pub(crate) fn admit<E: serde::de::Error>(read: usize) -> Result<(), E> {
    if read >= MAX_ITEMS {
        return Err(too_many());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::MessageRequest;

    use super::MAX_ITEMS;

    fn body_with(field: &str, value: &str) -> String {
        format!(r#"{{"from": "a@example.com", "text": "hi", "{field}": {value}}}"#)
    }

    fn strings(n: usize) -> String {
        let items: Vec<String> = (0..n).map(|i| format!("\"t{i}\"")).collect();
        format!("[{}]", items.join(","))
    }

    fn entries(n: usize) -> String {
        let items: Vec<String> = (0..n).map(|i| format!("\"k{i}\": \"v\"")).collect();
        format!("{{{}}}", items.join(","))
    }

    #[test]
    fn lists_up_to_the_ceiling_are_read() {
        for field in ["to", "cc", "bcc", "tags"] {
            let request: MessageRequest =
                serde_json::from_str(&body_with(field, &strings(MAX_ITEMS))).unwrap();
            let len = match field {
                "to" => request.to.len(),
                "cc" => request.cc.len(),
                "bcc" => request.bcc.len(),
                _ => request.tags.len(),
            };
            assert_eq!(len, MAX_ITEMS, "{field}");
        }
    }

    #[test]
    fn lists_past_the_ceiling_are_refused_while_read() {
        for field in ["to", "cc", "bcc", "tags"] {
            let error =
                serde_json::from_str::<MessageRequest>(&body_with(field, &strings(MAX_ITEMS + 1)))
                    .unwrap_err();
            assert!(
                error.to_string().contains("more than 10000 items"),
                "{field}: {error}"
            );
        }
        let attachments: Vec<String> = (0..=MAX_ITEMS)
            .map(|_| r#"{"filename": "a", "content": ""}"#.to_owned())
            .collect();
        let body = body_with("attachments", &format!("[{}]", attachments.join(",")));
        let error = serde_json::from_str::<MessageRequest>(&body).unwrap_err();
        assert!(
            error.to_string().contains("more than 10000 items"),
            "{error}"
        );
    }

    #[test]
    fn maps_past_the_ceiling_are_refused_while_read() {
        for field in ["headers", "metadata"] {
            assert!(
                serde_json::from_str::<MessageRequest>(&body_with(field, &entries(MAX_ITEMS)))
                    .is_ok()
            );
            let error =
                serde_json::from_str::<MessageRequest>(&body_with(field, &entries(MAX_ITEMS + 1)))
                    .unwrap_err();
            assert!(
                error.to_string().contains("more than 10000 items"),
                "{field}: {error}"
            );
        }
    }
}
