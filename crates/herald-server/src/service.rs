//! The service's lifecycle: open the store and reclaim what a crash left
//! behind, start the dispatcher, serve HTTP until told to stop, then stop
//! taking requests, drain deliveries and exit cleanly.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use herald_policy::{CircuitBreaker, SharedClock, SystemClock};
use herald_smtp::Pool;
use herald_store::{Store, StoreOptions, StoreUrl};
use herald_store_postgres::{PgOptions, PgStore};
use herald_store_sqlite::SqliteStore;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use herald_alerts::Alerting;

use crate::api::{self, ApiLimits, AppState};
use crate::config::Config;
use crate::dispatch::{DispatchSettings, Dispatcher, Held, Outbox, Relay};
use crate::observe::Metrics;
use crate::{cluster, upkeep};

/// How often histogram samples are folded into buckets when nobody scrapes.
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] herald_store::StoreError),
    /// Serving HTTP failed.
    #[error("http: {0}")]
    Http(#[from] std::io::Error),
    /// The configuration cannot be served (e.g. an unsupported store URL).
    #[error("config: {0}")]
    Config(String),
}

/// A store opened (and migrated) by its URL's scheme, as its own type.
enum Opened {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Opens (and migrates) the store `config` names.
async fn open(config: &Config) -> Result<Opened, ServeError> {
    let options = StoreOptions {
        max_lost_leases: config.delivery.max_lost_leases,
    };
    Ok(match StoreUrl::parse(&config.store.url)? {
        StoreUrl::Sqlite(_) => {
            Opened::Sqlite(SqliteStore::open_with(&config.store.url, options).await?)
        }
        StoreUrl::Postgres(url) => {
            Opened::Postgres(PgStore::open(&url, pg_options(config, options)).await?)
        }
    })
}

/// Opens (and migrates) the store `config` names, by its URL's scheme.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServeError> {
    Ok(match open(config).await? {
        Opened::Sqlite(store) => Arc::new(store),
        Opened::Postgres(store) => Arc::new(store),
    })
}

/// Applies the store's migrations (as `serve` does at start, under the
/// same lock) and returns the schema version it is at: for running ahead
/// of a rollout, so that new nodes start on a ready schema.
pub async fn migrate(config: &Config) -> Result<i64, ServeError> {
    let version = match open(config).await? {
        Opened::Sqlite(store) => {
            let version = store.schema_version().await;
            store.close().await;
            version
        }
        Opened::Postgres(store) => {
            let version = store.schema_version().await;
            store.close().await;
            version
        }
    };
    Ok(version?)
}

/// PostgreSQL's settings from `config`: the database's clock decides, as
/// it must when several nodes share the queue.
fn pg_options(config: &Config, store: StoreOptions) -> PgOptions {
    PgOptions {
        pool_size: config.store.pool_size,
        store,
        clock: herald_store_postgres::Clock::Database,
    }
}

/// Whether the store `config` names belongs to one process (SQLite), so
/// that every lease in it is this process's own at start-up.
fn exclusive_store(config: &Config) -> bool {
    matches!(
        StoreUrl::parse(&config.store.url),
        Ok(StoreUrl::Sqlite(_)) | Err(_)
    )
}

/// Runs herald on `listener` until `shutdown` completes, then drains.
/// The caller binds the listener (tests bind port 0) and owns the signal.
pub async fn serve(
    config: Config,
    store: Arc<dyn Store>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with_clock(config, store, listener, shutdown, SystemClock::shared()).await
}

/// [`serve`], reading the time from `clock` wherever the service decides
/// by time (due times, leases, retention, alert windows, lockouts). A
/// shared PostgreSQL store still takes leases and due times from the
/// database's clock.
pub async fn serve_with_clock(
    config: Config,
    store: Arc<dyn Store>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: SharedClock,
) -> Result<(), ServeError> {
    let node_id = config.server.node_id.clone();
    let exclusive = exclusive_store(&config);
    // Before anything starts: a certificate that cannot be read or a port
    // in use stops the start here.
    let submission = match &config.submission {
        Some(submission) => Some(crate::submission::bind(submission).await?),
        None => None,
    };
    upkeep::reclaim_at_start(store.as_ref(), &node_id, exclusive, clock.as_ref()).await?;

    // One recorder per server: never the process-wide one (tests run many
    // servers in one process).
    let metrics = Arc::new(Metrics::new());
    let wake = Arc::new(Notify::new());
    // Other nodes' new work wakes this one's dispatcher too (PostgreSQL's
    // LISTEN/NOTIFY); the poll stays as the backstop.
    let waker = wake.clone();
    store.on_new_work(Arc::new(move || waker.notify_one()));
    let workers_running = Arc::new(AtomicBool::new(false));
    let relays = config
        .relays
        .iter()
        .map(|r| Relay {
            name: r.name.clone(),
            pool: Pool::new(r.client.clone(), r.pool),
            breaker: Mutex::new(CircuitBreaker::new(r.breaker.clone())),
            rate: r.rate,
            quota: r.daily_quota,
            held: Held::default(),
            max_connections: r.pool.max_connections,
        })
        .collect();
    let alerting = Alerting::new(config.alerts.clone(), clock.clone());
    let alerting = if exclusive {
        alerting
    } else {
        alerting.shared()
    };
    let alerting = Arc::new(alerting);
    let dispatcher = Arc::new(Dispatcher::new(
        store.clone(),
        relays,
        Outbox::new(config.outbox.dir.clone()),
        DispatchSettings {
            owner: node_id.clone(),
            concurrency: config.delivery.concurrency,
            lease: config.delivery.lease,
            poll_interval: config.delivery.poll_interval,
            drain_timeout: config.server.drain_timeout,
            policy: config.retry.clone(),
            suppression: config.suppression.clone(),
            clock: clock.clone(),
        },
        wake.clone(),
        metrics.clone(),
        alerting.clone(),
    ));
    let stop_dispatch = CancellationToken::new();
    workers_running.store(true, Ordering::Relaxed);
    let dispatch_task = tokio::spawn(supervise(
        dispatcher.clone().run(stop_dispatch.clone()),
        workers_running.clone(),
        stop_dispatch.clone(),
    ));
    let upkeep_task = tokio::spawn(upkeep(metrics.clone(), stop_dispatch.clone()));
    // Heartbeats outlive the dispatcher: deliveries still draining keep
    // their leases until they are recorded or released.
    let stop_heartbeat = CancellationToken::new();
    let heartbeat_task = tokio::spawn(upkeep::heartbeat(
        store.clone(),
        node_id.clone(),
        config.delivery.lease,
        clock.clone(),
        stop_heartbeat.clone(),
    ));
    let retention_task = tokio::spawn(upkeep::retention(
        store.clone(),
        upkeep::Keep {
            messages: config.store.retention,
            events: config.store.event_retention,
            lapsed: config.store.lapsed_retention,
            webhooks: config.webhooks.clone(),
        },
        clock.clone(),
        stop_dispatch.clone(),
    ));
    // Alerts are evaluated and sent on their own tasks: a slow webhook never
    // holds up mail.
    let stop_alerts = CancellationToken::new();
    // On a shared store, failures travel between the nodes through the
    // store, and one node at a time evaluates the rules.
    let (leading, cluster_tasks) = if exclusive {
        (None, Vec::new())
    } else {
        let (tx, rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(cluster::share_failures(
                store.clone(),
                alerting.clone(),
                node_id.clone(),
                config.alerts.history,
                clock.clone(),
                stop_alerts.clone(),
            )),
            tokio::spawn(cluster::lead_alerts(
                store.clone(),
                node_id.clone(),
                alerting.evaluate_every(),
                tx,
                clock.clone(),
                stop_alerts.clone(),
            )),
        ];
        (Some(rx), tasks)
    };
    let alert_task =
        alerting
            .clone()
            .spawn_evaluator(alerting.evaluate_every(), stop_alerts.clone(), leading);
    // Webhooks are sent on their own tasks too: a dead endpoint never
    // delays mail.
    let stop_webhooks = CancellationToken::new();
    let webhook_tasks = crate::webhooks::spawn(
        store.clone(),
        config.webhooks.clone(),
        node_id.clone(),
        metrics.clone(),
        clock.clone(),
        stop_webhooks.clone(),
    );

    let mut message_limits = herald_message::Limits::default();
    message_limits.max_recipients = config.limits.max_recipients;
    let state = AppState::new(
        store,
        config.auth.api_keys.clone(),
        ApiLimits {
            max_message_bytes: config.limits.max_message_bytes,
            max_batch: config.limits.max_batch,
            max_queue_depth: config.limits.max_queue_depth,
            message: message_limits,
        },
        wake,
        workers_running.clone(),
    )
    .with_observability(metrics, dispatcher)
    .with_alerting(alerting)
    .with_webhooks(config.webhooks.clone())
    .with_clock(clock.clone());
    let submission =
        submission.map(|bound| bound.serve(state.clone(), config.delivery.helo_name.clone()));
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "herald listening");
    let served =
        crate::http::serve(listener, api::router(state), http_limits(&config), shutdown).await;

    if let Some(submission) = submission {
        tracing::info!("shutting down: no new SMTP sessions");
        submission.stop(config.server.drain_timeout).await;
    }
    tracing::info!("shutting down: no new requests; draining deliveries");
    workers_running.store(false, Ordering::Relaxed);
    stop_dispatch.cancel();
    if let Err(error) = dispatch_task.await {
        tracing::error!(error = %error, "dispatcher supervisor failed");
    }
    stop_heartbeat.cancel();
    for (task, name) in [(heartbeat_task, "heartbeat"), (retention_task, "retention")] {
        if let Err(error) = task.await {
            tracing::error!(error = %error, task = name, "task failed");
        }
    }
    stop_webhooks.cancel();
    for task in webhook_tasks {
        // A POST in flight ends at its own timeout; shutdown does not wait
        // for it (its event is sent again by the next sender).
        let abort = task.abort_handle();
        if tokio::time::timeout(WEBHOOK_GRACE, task).await.is_err() {
            abort.abort();
        }
    }
    stop_alerts.cancel();
    if let Err(error) = alert_task.await {
        tracing::error!(error = %error, "alert task failed");
    }
    for task in cluster_tasks {
        if let Err(error) = task.await {
            tracing::error!(error = %error, "cluster task failed");
        }
    }
    if let Err(error) = upkeep_task.await {
        tracing::error!(error = %error, "metrics upkeep task failed");
    }
    tracing::info!("stopped");
    served.map_err(ServeError::from)
}

/// How long shutdown waits for a webhook POST in flight.
const WEBHOOK_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the dispatcher on a task of its own and clears `running` the
/// moment it ends, however it ends (a panic included): `/readyz` fails
/// from then on, and the log says so at once.
async fn supervise(
    dispatcher: impl Future<Output = ()> + Send + 'static,
    running: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let ended = tokio::spawn(dispatcher).await;
    running.store(false, Ordering::Relaxed);
    match ended {
        Err(error) => {
            tracing::error!(error = %error, "the dispatcher died: no mail is delivered; /readyz fails")
        }
        Ok(()) if !stop.is_cancelled() => {
            tracing::error!(
                "the dispatcher stopped unexpectedly: no mail is delivered; /readyz fails"
            )
        }
        Ok(()) => {}
    }
}

/// `[server]`'s bounds on HTTP connections.
fn http_limits(config: &Config) -> crate::http::HttpLimits {
    crate::http::HttpLimits {
        header_read_timeout: config.server.header_read_timeout,
        body_read_timeout: config.server.body_read_timeout,
        idle_timeout: config.server.idle_timeout,
        max_connections: config.server.max_connections,
        drain_timeout: config.server.drain_timeout,
    }
}

/// Keeps the recorder's memory bounded between scrapes, until `stop`.
async fn upkeep(metrics: Arc<Metrics>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(METRICS_UPKEEP) => metrics.run_upkeep(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_ends_the_moment_the_dispatcher_dies() {
        let running = Arc::new(AtomicBool::new(true));
        let stop = CancellationToken::new();
        let (die, dying) = tokio::sync::oneshot::channel::<()>();
        let supervisor = tokio::spawn(supervise(
            async move {
                let _ = dying.await;
                panic!("the dispatcher hit a bug");
            },
            running.clone(),
            stop.clone(),
        ));
        tokio::task::yield_now().await;
        assert!(running.load(Ordering::Relaxed), "ready while it runs");
        die.send(()).ok();
        supervisor.await.ok();
        assert!(
            !running.load(Ordering::Relaxed),
            "a dead dispatcher is not ready"
        );
    }

    #[tokio::test]
    async fn a_dispatcher_that_returns_without_being_stopped_is_not_ready() {
        let running = Arc::new(AtomicBool::new(true));
        supervise(async {}, running.clone(), CancellationToken::new()).await;
        assert!(!running.load(Ordering::Relaxed));
    }
}
