//! Stored templates on PostgreSQL. Two nodes storing a version of one
//! name at once may pick the same number: the loser's insert does nothing
//! and it tries again with the next.

use herald_store::{NewTemplate, StoreError, TemplateRecord};
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::Shared;
use super::codec::get;
use super::pipeline::{Conn, step};

const COLUMNS: &str = "name, version, subject, text, html, layout, created_at";

/// How many times a version number taken by another node is retried.
const RACES: usize = 8;

pub(crate) async fn put(shared: &Shared, t: &NewTemplate) -> Result<TemplateRecord, StoreError> {
    let conn = Conn::get(&shared.pool).await?;
    for _ in 0..RACES {
        let rows = conn
            .pipeline(
                &[step!(
                    "INSERT INTO templates (name, version, subject, text, html, layout, created_at) \
                     SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5, $6 \
                     FROM templates WHERE name = $1 \
                     ON CONFLICT DO NOTHING RETURNING version",
                    t.name,
                    t.subject,
                    t.text,
                    t.html,
                    t.layout,
                    t.created_at,
                )],
                "store a template",
            )
            .await?;
        if let Some(row) = rows.into_iter().flatten().next() {
            let version: i32 = get(&row, 0)?;
            return Ok(TemplateRecord {
                name: t.name.clone(),
                version: u32::try_from(version).unwrap_or(0),
                subject: t.subject.clone(),
                text: t.text.clone(),
                html: t.html.clone(),
                layout: t.layout.clone(),
                created_at: t.created_at,
            });
        }
    }
    Err(StoreError::Unavailable(
        "postgres: store a template: too many concurrent versions".into(),
    ))
}

pub(crate) async fn get_one(
    shared: &Shared,
    name: &str,
    version: Option<u32>,
) -> Result<Option<TemplateRecord>, StoreError> {
    let conn = Conn::get(&shared.pool).await?;
    let version = version.map(|v| i32::try_from(v).unwrap_or(i32::MAX));
    let rows = conn
        .pipeline(
            &[step!(
                &format!(
                    "SELECT {COLUMNS} FROM templates WHERE name = $1 \
                     AND ($2::integer IS NULL OR version = $2) \
                     ORDER BY version DESC LIMIT 1"
                ),
                name,
                version,
            )],
            "read a template",
        )
        .await?;
    rows.into_iter()
        .flatten()
        .next()
        .map(|r| read(&r))
        .transpose()
}

pub(crate) async fn latest(shared: &Shared) -> Result<Vec<TemplateRecord>, StoreError> {
    let conn = Conn::get(&shared.pool).await?;
    let rows = conn
        .pipeline(
            &[step!(&format!(
                "SELECT DISTINCT ON (name) {COLUMNS} FROM templates \
                 ORDER BY name, version DESC"
            ))],
            "list templates",
        )
        .await?;
    rows.into_iter().flatten().map(|r| read(&r)).collect()
}

pub(crate) async fn delete(shared: &Shared, name: &str) -> Result<bool, StoreError> {
    let conn = Conn::get(&shared.pool).await?;
    let rows = conn
        .pipeline(
            &[step!(
                "DELETE FROM templates WHERE name = $1 RETURNING 1",
                name
            )],
            "delete a template",
        )
        .await?;
    Ok(rows.into_iter().flatten().next().is_some())
}

fn read(row: &Row) -> Result<TemplateRecord, StoreError> {
    let version: i32 = get(row, 1)?;
    let created_at: OffsetDateTime = get(row, 6)?;
    Ok(TemplateRecord {
        name: get(row, 0)?,
        version: u32::try_from(version)
            .map_err(|_| StoreError::Unusable(format!("template version {version}")))?,
        subject: get(row, 2)?,
        text: get(row, 3)?,
        html: get(row, 4)?,
        layout: get(row, 5)?,
        created_at,
    })
}
