//! The suppression list over HTTP: `GET/POST /v1/suppressions`,
//! `GET/DELETE /v1/suppressions/{address}`. Reading needs the `read`
//! scope, changing it `manage`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use herald_api as api;
use herald_message::{EmailAddress, FieldError};
use herald_store::{Added, Suppression, SuppressionCursor, SuppressionFilter};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::answers::{store_reason, suppression};
use super::{AppState, Problem};

const MAX_ADDRESSES: usize = api::MAX_ADDRESSES;
/// Entries one page lists by default, and at most.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// `GET /v1/suppressions`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<api::SuppressionPage>, Problem> {
    let filter = filter(&query)?;
    let page = state
        .store
        .list_suppressions(&filter, state.clock.now())
        .await?;
    Ok(Json(api::SuppressionPage {
        suppressions: page.entries.into_iter().map(suppression).collect(),
        next_cursor: page.next.map(|c| encode_cursor(&c)),
    }))
}

/// `GET /v1/suppressions/{address}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(address): Path<String>,
) -> Result<Json<api::Suppression>, Problem> {
    let entry = state
        .store
        .suppression(&address, state.clock.now())
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(suppression(entry)))
}

/// `DELETE /v1/suppressions/{address}`: the entry removed.
pub(crate) async fn remove(
    State(state): State<AppState>,
    Path(address): Path<String>,
) -> Result<Json<api::Suppression>, Problem> {
    let entry = state
        .store
        .remove_suppression(&address, state.clock.now())
        .await?
        .ok_or_else(not_found)?;
    tracing::info!(reason = %entry.reason, "suppression removed");
    Ok(Json(suppression(entry)))
}

/// `POST /v1/suppressions`: each address validated and added on its own;
/// the valid ones in one commit.
pub(crate) async fn add(
    State(state): State<AppState>,
    body: Result<Json<api::AddSuppressions>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<api::AddResults>, Problem> {
    let Json(request) = body.map_err(|e| Problem::malformed(e.body_text()))?;
    if request.addresses.is_empty() || request.addresses.len() > MAX_ADDRESSES {
        return Err(Problem::validation(vec![FieldError {
            field: "addresses".into(),
            message: format!("from 1 to {MAX_ADDRESSES} addresses"),
        }]));
    }
    let now = state.clock.now();
    // Each address's parse error, or None for an address to store.
    let mut errors: Vec<Option<String>> = Vec::with_capacity(request.addresses.len());
    let mut entries = Vec::new();
    for address in &request.addresses {
        match EmailAddress::parse_addr_spec(address.trim()) {
            Ok(valid) => {
                entries.push(Suppression {
                    address: valid.address().to_owned(),
                    reason: store_reason(request.reason),
                    message: None,
                    response: None,
                    created_at: now,
                    expires_at: request.expires_at,
                });
                errors.push(None);
            }
            Err(e) => errors.push(Some(e.to_string())),
        }
    }
    let mut answers = state
        .store
        .add_suppressions(entries, now)
        .await?
        .into_iter();
    let mut added = 0usize;
    let mut ordered = Vec::with_capacity(request.addresses.len());
    for (address, error) in request.addresses.iter().zip(errors) {
        if let Some(error) = error {
            ordered.push(api::AddResult {
                address: address.clone(),
                status: api::AddStatus::Invalid,
                suppression: None,
                error: Some(error),
            });
            continue;
        }
        let Some(answer) = answers.next() else {
            return Err(Problem::internal());
        };
        let status = match &answer {
            Added::Added(_) => {
                added += 1;
                state
                    .metrics
                    .suppression_added(store_reason(request.reason));
                api::AddStatus::Added
            }
            Added::Exists(_) => api::AddStatus::Exists,
        };
        ordered.push(api::AddResult {
            address: address.clone(),
            status,
            suppression: Some(suppression(answer.entry().clone())),
            error: None,
        });
    }
    tracing::info!(added, reason = %request.reason, "suppressions added");
    Ok(Json(api::AddResults { results: ordered }))
}

fn not_found() -> Problem {
    let mut problem = Problem::not_found();
    problem.detail = "no suppression for that address".into();
    problem
}

fn filter(query: &HashMap<String, String>) -> Result<SuppressionFilter, Problem> {
    let mut filter = SuppressionFilter {
        limit: DEFAULT_LIMIT,
        ..SuppressionFilter::default()
    };
    for (name, value) in query {
        match name.as_str() {
            "reason" => filter.reason = Some(value.parse().map_err(Problem::malformed)?),
            "since" => {
                filter.since = Some(
                    OffsetDateTime::parse(value, &Rfc3339)
                        .map_err(|_| Problem::malformed("since: not an RFC 3339 time"))?,
                );
            }
            "limit" => {
                filter.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| Problem::malformed("limit: a number from 1 to 500"))?;
            }
            "cursor" => filter.after = Some(decode_cursor(value)?),
            other => {
                return Err(Problem::malformed(format!(
                    "unknown query parameter {other:?}"
                )));
            }
        }
    }
    Ok(filter)
}

/// A cursor as the API gives it: the entry's time in nanoseconds since
/// the epoch, `~`, its address.
fn encode_cursor(cursor: &SuppressionCursor) -> String {
    format!(
        "{}~{}",
        cursor.created_at.unix_timestamp_nanos(),
        cursor.address
    )
}

fn decode_cursor(text: &str) -> Result<SuppressionCursor, Problem> {
    let bad = || Problem::malformed("cursor: not a cursor this API gave");
    let (nanos, address) = text.split_once('~').ok_or_else(bad)?;
    let nanos: i128 = nanos.parse().map_err(|_| bad())?;
    let created_at = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?;
    Ok(SuppressionCursor {
        created_at,
        address: address.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn cursors_round_trip() {
        let cursor = SuppressionCursor {
            created_at: OffsetDateTime::from_unix_timestamp_nanos(1_893_456_000_123_456_000)
                .unwrap(),
            address: "a~b@example.com".into(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&cursor)).unwrap(), cursor);
        assert!(decode_cursor("nonsense").is_err());
    }
}
