//! Compiled template versions, kept per node, so that sending with a
//! template parses it once rather than at every message.
//!
//! Never stale: every send asks the store for the template (and its
//! layout), which answers with the latest version (SQLite from memory,
//! forgotten at each change; PostgreSQL with one indexed read, so a `PUT`
//! on any node is used by the next message on every node). What this cache
//! saves is the parsing. An entry is keyed by name and version and used
//! only while the stored sources are exactly those it was compiled from (a
//! template deleted and created again starts at version 1 with other
//! text); otherwise it is compiled again and replaced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use herald_message::{CompiledTemplate, Layout, TemplateError, TemplateLimits, TemplateParts};
use herald_store::TemplateRecord;

/// Compiled versions kept at most (a few MiB at worst: each is its
/// sources plus their parsed instructions).
pub(crate) const CAPACITY: usize = 256;

/// The cache.
#[derive(Debug)]
pub(crate) struct TemplateCache {
    entries: Mutex<Entries>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<(String, u32), Entry>,
    /// Ticks on every use; the entry used longest ago goes first.
    tick: u64,
}

#[derive(Debug)]
struct Entry {
    sources: Sources,
    compiled: Arc<CompiledTemplate>,
    used: u64,
}

/// What an entry was compiled from.
#[derive(Debug, PartialEq, Eq)]
struct Sources {
    parts: TemplateParts,
    layout: Option<(String, u32, TemplateParts)>,
}

impl Sources {
    fn of(record: &TemplateRecord, layout: Option<&TemplateRecord>) -> Self {
        Self {
            parts: parts_of(record),
            layout: layout.map(|l| (l.name.clone(), l.version, parts_of(l))),
        }
    }
}

impl Default for TemplateCache {
    fn default() -> Self {
        Self::new(CAPACITY)
    }
}

impl TemplateCache {
    /// A cache of at most `capacity` compiled versions.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(Entries::default()),
            capacity: capacity.max(1),
        }
    }

    /// `record` (in `layout`, if any) compiled: from the cache when it
    /// holds these very sources, else compiled now and kept.
    pub(crate) fn compiled(
        &self,
        record: &TemplateRecord,
        layout: Option<&TemplateRecord>,
    ) -> Result<Arc<CompiledTemplate>, TemplateError> {
        let key = (record.name.clone(), record.version);
        {
            let mut entries = self.lock();
            entries.tick += 1;
            let tick = entries.tick;
            if let Some(entry) = entries.map.get_mut(&key)
                && entry.sources.matches(record, layout)
            {
                entry.used = tick;
                return Ok(entry.compiled.clone());
            }
        }
        // Compiled outside the lock: other templates are served meanwhile.
        let sources = Sources::of(record, layout);
        let layout_view = sources.layout.as_ref().map(|(name, _, parts)| Layout {
            name: name.as_str(),
            parts,
        });
        let compiled = Arc::new(CompiledTemplate::new(
            &sources.parts,
            layout_view.as_ref(),
            TemplateLimits::default(),
        )?);
        let mut entries = self.lock();
        entries.tick += 1;
        let used = entries.tick;
        if entries.map.len() >= self.capacity
            && !entries.map.contains_key(&key)
            && let Some(oldest) = entries
                .map
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
        {
            entries.map.remove(&oldest);
        }
        entries.map.insert(
            key,
            Entry {
                sources,
                compiled: compiled.clone(),
                used,
            },
        );
        Ok(compiled)
    }

    /// Entries held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().map.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Sources {
    /// Whether these are the sources of `record` in `layout`, compared
    /// without copying them.
    fn matches(&self, record: &TemplateRecord, layout: Option<&TemplateRecord>) -> bool {
        same_parts(&self.parts, record)
            && match (&self.layout, layout) {
                (None, None) => true,
                (Some((name, version, parts)), Some(l)) => {
                    *name == l.name && *version == l.version && same_parts(parts, l)
                }
                _ => false,
            }
    }
}

fn same_parts(parts: &TemplateParts, record: &TemplateRecord) -> bool {
    parts.subject == record.subject && parts.text == record.text && parts.html == record.html
}

fn parts_of(record: &TemplateRecord) -> TemplateParts {
    TemplateParts {
        subject: record.subject.clone(),
        text: record.text.clone(),
        html: record.html.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn record(name: &str, version: u32, text: &str) -> TemplateRecord {
        TemplateRecord {
            name: name.into(),
            version,
            subject: "s".into(),
            text: Some(text.into()),
            html: None,
            layout: None,
            created_at: datetime!(2026-12-05 12:00 UTC),
        }
    }

    fn text(compiled: &CompiledTemplate, vars: serde_json::Value) -> String {
        compiled.render(&vars).unwrap().text.unwrap()
    }

    #[test]
    fn a_version_is_compiled_once_and_other_sources_are_never_served_from_it() {
        let cache = TemplateCache::new(8);
        let v1 = record("welcome", 1, "hello {{ who }}");
        let a = cache.compiled(&v1, None).unwrap();
        let b = cache.compiled(&v1, None).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the second use is the cached one");
        assert_eq!(text(&b, json!({"who": "ada"})), "hello ada");

        // A new version is a new entry.
        let v2 = record("welcome", 2, "welcome {{ who }}");
        assert_eq!(
            text(&cache.compiled(&v2, None).unwrap(), json!({"who": "ada"})),
            "welcome ada"
        );
        // Deleted and created again: version 1 again, other text.
        let again = record("welcome", 1, "hi {{ who }}");
        assert_eq!(
            text(
                &cache.compiled(&again, None).unwrap(),
                json!({"who": "ada"})
            ),
            "hi ada"
        );
        // A changed layout is a change too.
        let mut framed = record("framed", 1, "body");
        framed.layout = Some("base".into());
        let base1 = TemplateRecord {
            text: Some("[{{ content }}]".into()),
            ..record("base", 1, "")
        };
        let base2 = TemplateRecord {
            text: Some("<{{ content }}>".into()),
            ..record("base", 2, "")
        };
        let with = |l: &TemplateRecord| text(&cache.compiled(&framed, Some(l)).unwrap(), json!({}));
        assert_eq!(with(&base1), "[body]");
        assert_eq!(with(&base2), "<body>");
    }

    #[test]
    fn the_cache_is_bounded_and_drops_the_least_recently_used() {
        let cache = TemplateCache::new(2);
        let a = record("a", 1, "a");
        let b = record("b", 1, "b");
        let c = record("c", 1, "c");
        let first_a = cache.compiled(&a, None).unwrap();
        cache.compiled(&b, None).unwrap();
        cache.compiled(&a, None).unwrap(); // a is now the most recent
        cache.compiled(&c, None).unwrap(); // b goes
        assert_eq!(cache.len(), 2);
        assert!(Arc::ptr_eq(&first_a, &cache.compiled(&a, None).unwrap()));
        assert_eq!(text(&cache.compiled(&b, None).unwrap(), json!({})), "b");
        assert_eq!(cache.len(), 2);
    }
}
