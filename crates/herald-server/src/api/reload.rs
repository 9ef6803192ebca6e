//! `POST /v1/admin/reload`: read the configuration file again, as SIGHUP
//! does, and answer what changed, or why the file was refused.

use axum::Json;
use axum::extract::{Extension, State};
use herald_api::{ReloadResult, Reloaded};

use super::{ApiKeyName, AppState, Problem};

/// `POST /v1/admin/reload` (scope `admin`). The body is ignored. `422`
/// with `check-config`'s error when the file does not validate (the
/// running configuration stays); `409` for a server started without a
/// configuration source.
pub(crate) async fn reload(
    State(state): State<AppState>,
    Extension(key): Extension<ApiKeyName>,
) -> Result<Json<Reloaded>, Problem> {
    let Some(reloader) = &state.reloader else {
        return Err(Problem::conflict(
            "this server cannot reload: it was not started from a configuration source",
        ));
    };
    tracing::info!(key = %key.0, "configuration reload asked for over the API");
    match reloader.reload("api").await {
        Ok(applied) => Ok(Json(Reloaded {
            result: ReloadResult::Applied,
            changed: applied.changed,
            restart_needed: applied.restart_needed,
        })),
        Err(error) => Err(Problem::config_refused(error)),
    }
}
