//! `GET /v1/relays`: each relay's circuit (this node's), limits, quota use
//! (the store's, shared by every node) and connections (this node's).

use axum::Json;
use axum::extract::State;
use herald_api::{CircuitState, PoolUse, QuotaStatus, RateStatus, RelayStatus, Relays};
use herald_policy::BreakerState;

use super::{AppState, Problem};

/// `GET /v1/relays`. A server without delivery workers has no relays to
/// show.
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Relays>, Problem> {
    let Some(dispatcher) = &state.dispatcher else {
        return Ok(Json(Relays { relays: Vec::new() }));
    };
    let now = state.clock.now();
    let mut relays = Vec::new();
    for sample in dispatcher.relay_samples() {
        let quota = match sample.quota {
            None => None,
            Some(quota) => {
                let period_start = quota.reset.period(now);
                let used = state
                    .store
                    .quota_used(&sample.name, period_start)
                    .await
                    .map_err(|error| {
                        tracing::warn!(error = %error, "reading a relay's quota failed");
                        Problem::unavailable()
                    })?;
                Some(QuotaStatus {
                    limit: quota.limit,
                    used,
                    left: quota.limit.saturating_sub(used),
                    period_start,
                    resets_at: quota.reset.next(now),
                })
            }
        };
        relays.push(RelayStatus {
            name: sample.name,
            host: sample.host,
            port: sample.port,
            circuit: match sample.circuit {
                BreakerState::Closed => CircuitState::Closed,
                BreakerState::Open { .. } => CircuitState::Open,
                BreakerState::HalfOpen => CircuitState::HalfOpen,
            },
            rate: sample.rate.map(|limit| RateStatus {
                limit: limit.rate.to_string(),
                burst: limit.burst,
            }),
            quota,
            pool: PoolUse {
                open: sample.pool.open,
                idle: sample.pool.idle,
                max: sample.max_connections,
            },
        });
    }
    Ok(Json(Relays { relays }))
}
