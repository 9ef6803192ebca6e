//! `GET /v1/errors`: failures grouped by fingerprint (relay, class, codes,
//! normalised reply text), so an operator sees "550 5.1.1 user unknown at
//! primary: 1,204 times since 09:12" instead of 1,204 log lines.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use herald_alerts::GroupFilter;
use herald_api::ErrorGroups;

use super::{AppState, Problem, answers};

/// `GET /v1/errors?window=15m&relay=primary`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<ErrorGroups>, Problem> {
    let mut filter = GroupFilter::default();
    for (name, value) in &query {
        match name.as_str() {
            "window" => {
                let window = humantime::parse_duration(value)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| Problem::malformed("window: a duration such as 5m or 1h"))?;
                filter.window = Some(window);
            }
            "relay" => filter.relay = Some(value.clone()),
            other => {
                return Err(Problem::malformed(format!(
                    "unknown query parameter {other:?}"
                )));
            }
        }
    }
    let Some(alerting) = &state.alerting else {
        return Ok(Json(ErrorGroups {
            window_seconds: filter.window.unwrap_or_default().as_secs(),
            groups: Vec::new(),
        }));
    };
    let window: Duration = filter.window.unwrap_or_else(|| alerting.default_window());
    Ok(Json(ErrorGroups {
        window_seconds: window.as_secs(),
        groups: alerting
            .groups(&filter, state.clock.now())
            .into_iter()
            .map(answers::error_group)
            .collect(),
    }))
}
