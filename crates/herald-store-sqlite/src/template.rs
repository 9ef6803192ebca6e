//! Stored templates on SQLite. The one writer gives each name its next
//! version without a race, and the latest version of each name is kept in
//! memory ([`Latest`]): one process owns the file, so every change passes
//! through this store, which reads a name from the database from the moment
//! a change to it begins until it has committed, and keeps it in memory
//! again after. Memory is never behind the database, and sending with a
//! template costs no read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use herald_store::{NewTemplate, StoreError, TemplateRecord};
use rusqlite::{Connection, OptionalExtension as _, Row, params};
use tokio::sync::mpsc;

use super::codec::{db, ms, time};
use super::readers::Readers;
use super::writer::{Closure, Op, Shared, submit};

/// Names kept at most; past it the memory starts again empty (a service
/// sends with a few dozen templates, not thousands).
const LATEST_CAPACITY: usize = 1024;

/// The latest version of each template read since it last changed.
#[derive(Debug, Default)]
pub(super) struct Latest {
    inner: Mutex<LatestInner>,
}

#[derive(Debug, Default)]
struct LatestInner {
    records: HashMap<String, TemplateRecord>,
    /// One more at every change: a read that began before a change must
    /// not keep what it read after it.
    generation: u64,
    /// Names with a change under way (and how many): read from the
    /// database, never from memory, until it has committed, so memory is
    /// never behind what the database shows.
    changing: HashMap<String, usize>,
}

impl Latest {
    /// `name` (at `version`, or its latest): from memory when known, else
    /// read and, when it is the latest, kept.
    pub(super) async fn get(
        &self,
        reads: &Readers,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<TemplateRecord>, StoreError> {
        let generation = match self.known(name, version) {
            Ok(known) => return Ok(Some(known)),
            Err(generation) => generation,
        };
        let owned = name.to_owned();
        let found = reads.with(move |conn| get(conn, &owned, version)).await?;
        if let Some(record) = found.as_ref().filter(|_| version.is_none()) {
            self.offer(generation, record);
        }
        Ok(found)
    }

    /// The version remembered, or else the generation to read under.
    fn known(&self, name: &str, version: Option<u32>) -> Result<TemplateRecord, u64> {
        let inner = self.lock();
        match inner.records.get(name) {
            Some(known)
                if version.is_none_or(|v| v == known.version)
                    && !inner.changing.contains_key(name) =>
            {
                Ok(known.clone())
            }
            _ => Err(inner.generation),
        }
    }

    /// Keeps `record`, read as the latest under `generation`, unless a
    /// change has come since (it may be older than that change).
    fn offer(&self, generation: u64, record: &TemplateRecord) {
        let mut inner = self.lock();
        if inner.generation != generation || inner.changing.contains_key(&record.name) {
            return;
        }
        if inner.records.len() >= LATEST_CAPACITY {
            inner.records.clear();
        }
        inner.records.insert(record.name.clone(), record.clone());
    }

    /// A change to `name` is about to be made: forgets it, and keeps it
    /// out of memory until [`changed`](Self::changed).
    fn changing(&self, name: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.records.remove(name);
        *inner.changing.entry(name.to_owned()).or_default() += 1;
    }

    /// The change to `name` has committed (or failed): it may be kept in
    /// memory again once no other change to it is under way.
    fn changed(&self, name: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.records.remove(name);
        if let Some(count) = inner.changing.get_mut(name) {
            *count -= 1;
            if *count == 0 {
                inner.changing.remove(name);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LatestInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

const COLUMNS: &str = "name, version, subject, text, html, layout, created_at";

pub(super) fn put(conn: &Connection, t: &NewTemplate) -> Result<TemplateRecord, StoreError> {
    let version: i64 = conn
        .query_row(
            "INSERT INTO templates (name, version, subject, text, html, layout, created_at) \
             SELECT ?1, COALESCE(MAX(version), 0) + 1, ?2, ?3, ?4, ?5, ?6 \
             FROM templates WHERE name = ?1 RETURNING version",
            params![
                t.name,
                t.subject,
                t.text,
                t.html,
                t.layout,
                ms(t.created_at)
            ],
            |row| row.get(0),
        )
        .map_err(db("store a template"))?;
    Ok(TemplateRecord {
        name: t.name.clone(),
        version: u32::try_from(version).unwrap_or(u32::MAX),
        subject: t.subject.clone(),
        text: t.text.clone(),
        html: t.html.clone(),
        layout: t.layout.clone(),
        created_at: t.created_at,
    })
}

/// Runs `work`, a change to template `name`, on the writer, then forgets
/// the name. On a task of its own, so that a caller who stops waiting
/// (a client gone) cannot leave a change committed and the old version
/// remembered.
pub(super) async fn change<T, F>(
    ops: &mpsc::Sender<Op>,
    shared: &Arc<Shared>,
    name: &str,
    work: F,
) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    let (ops, shared, name) = (ops.clone(), Arc::clone(shared), name.to_owned());
    tokio::spawn(async move {
        shared.templates.changing(&name);
        let answer = submit(&ops, |reply| Op::Job(Box::new(Closure { work, reply }))).await;
        shared.templates.changed(&name);
        answer
    })
    .await
    .unwrap_or_else(|_| Err(super::stopped()))
}

fn get(
    conn: &Connection,
    name: &str,
    version: Option<u32>,
) -> Result<Option<TemplateRecord>, StoreError> {
    let found = match version {
        Some(v) => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM templates WHERE name = ? AND version = ?"
            ))
            .and_then(|mut s| s.query_row(params![name, v], read).optional()),
        None => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM templates WHERE name = ? ORDER BY version DESC LIMIT 1"
            ))
            .and_then(|mut s| s.query_row(params![name], read).optional()),
    }
    .map_err(db("read a template"))?;
    found.map(finish).transpose()
}

pub(super) fn latest(conn: &Connection) -> Result<Vec<TemplateRecord>, StoreError> {
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM templates t WHERE version = \
             (SELECT MAX(version) FROM templates WHERE name = t.name) ORDER BY name"
        ))
        .map_err(db("list templates"))?;
    let rows = statement
        .query_map([], read)
        .map_err(db("list templates"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db("list templates"))?;
    rows.into_iter().map(finish).collect()
}

pub(super) fn delete(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    let n = conn
        .execute("DELETE FROM templates WHERE name = ?", params![name])
        .map_err(db("delete a template"))?;
    Ok(n > 0)
}

type Raw = (
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

/// A row's columns, in order (rusqlite reads a tuple of them).
fn read(row: &Row<'_>) -> rusqlite::Result<Raw> {
    Raw::try_from(row)
}

fn finish(raw: Raw) -> Result<TemplateRecord, StoreError> {
    let (name, version, subject, text, html, layout, created_at) = raw;
    Ok(TemplateRecord {
        name,
        version: u32::try_from(version)
            .map_err(|_| StoreError::Unusable(format!("template version {version}")))?,
        subject,
        text,
        html,
        layout,
        created_at: time(created_at)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn record(name: &str, version: u32) -> TemplateRecord {
        TemplateRecord {
            name: name.into(),
            version,
            subject: format!("v{version}"),
            text: None,
            html: Some("<p>hi</p>".into()),
            layout: None,
            created_at: datetime!(2026-12-05 12:00 UTC),
        }
    }

    #[test]
    fn a_read_that_began_before_a_change_is_not_kept() {
        let latest = Latest::default();
        let Err(before) = latest.known("a", None) else {
            panic!("nothing is known yet");
        };
        // The read saw version 1; version 2 committed before it came back.
        latest.changing("a");
        latest.changed("a");
        latest.offer(before, &record("a", 1));
        assert!(latest.known("a", None).is_err(), "version 1 was not kept");

        let Err(after) = latest.known("a", None) else {
            panic!("still nothing known");
        };
        latest.offer(after, &record("a", 2));
        assert_eq!(latest.known("a", None), Ok(record("a", 2)));
        assert_eq!(latest.known("a", Some(2)), Ok(record("a", 2)));
        assert!(
            latest.known("a", Some(1)).is_err(),
            "an old version is read"
        );

        latest.changing("a");
        latest.changed("a");
        assert!(latest.known("a", None).is_err(), "forgotten at a change");
    }

    #[test]
    fn while_a_change_is_under_way_nothing_is_kept_or_served() {
        let latest = Latest::default();
        let Err(generation) = latest.known("a", None) else {
            panic!("nothing is known yet");
        };
        latest.offer(generation, &record("a", 1));
        latest.changing("a");
        latest.changing("a");
        let Err(during) = latest.known("a", None) else {
            panic!("served from memory during a change");
        };
        latest.offer(during, &record("a", 1));
        latest.changed("a");
        let Err(one_left) = latest.known("a", None) else {
            panic!("another change is still under way");
        };
        latest.offer(one_left, &record("a", 2));
        assert!(latest.known("a", None).is_err());
        latest.changed("a");
        let Err(after) = latest.known("a", None) else {
            panic!("nothing kept during the changes");
        };
        latest.offer(after, &record("a", 3));
        assert_eq!(latest.known("a", None), Ok(record("a", 3)));
    }

    #[test]
    fn memory_is_bounded() {
        let latest = Latest::default();
        for n in 0..=LATEST_CAPACITY {
            let Err(generation) = latest.known(&format!("t{n}"), None) else {
                panic!("t{n} is new");
            };
            latest.offer(generation, &record(&format!("t{n}"), 1));
        }
        assert!(latest.lock().records.len() <= LATEST_CAPACITY);
        assert!(latest.known(&format!("t{LATEST_CAPACITY}"), None).is_ok());
    }
}
