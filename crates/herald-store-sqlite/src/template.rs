//! Stored templates on SQLite. The one writer gives each name its next
//! version without a race.

use herald_store::{NewTemplate, StoreError, TemplateRecord};
use rusqlite::{Connection, OptionalExtension as _, Row, params};

use super::codec::{db, ms, time};

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

pub(super) fn get(
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

fn read(row: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
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
