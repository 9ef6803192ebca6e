//! The webhook senders as a reload sees them: one group of tasks, built
//! from `[[webhooks]]`, that a reload stops and starts again with the new
//! endpoints. The cursors are in the store, so the new senders go on
//! where the old ones stopped; an event whose POST was cut short is sent
//! again (webhooks are at least once).

use std::sync::Arc;
use std::time::Duration;

use herald_policy::SharedClock;
use herald_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::WebhookConfig;
use crate::live::Live;
use crate::observe::Metrics;

/// How long stopping waits for a webhook POST in flight.
const GRACE: Duration = Duration::from_secs(1);

/// The running webhook senders, replaceable.
pub(crate) struct WebhookSenders {
    store: Arc<dyn Store>,
    node_id: String,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    /// The endpoints the senders run for, as the API and retention see
    /// them.
    endpoints: Live<Vec<WebhookConfig>>,
    running: tokio::sync::Mutex<Running>,
}

/// One generation of senders.
struct Running {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl WebhookSenders {
    /// Starts senders for `endpoints`.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        endpoints: Live<Vec<WebhookConfig>>,
        node_id: String,
        metrics: Arc<Metrics>,
        clock: SharedClock,
    ) -> Self {
        let first = Vec::clone(&endpoints.get());
        let mut this = Self {
            store,
            node_id,
            metrics,
            clock,
            endpoints,
            running: tokio::sync::Mutex::new(Running {
                stop: CancellationToken::new(),
                tasks: Vec::new(),
            }),
        };
        *this.running.get_mut() = this.spawn(first);
        this
    }

    fn spawn(&self, endpoints: Vec<WebhookConfig>) -> Running {
        let stop = CancellationToken::new();
        let tasks = crate::webhooks::spawn(
            Arc::clone(&self.store),
            endpoints,
            self.node_id.clone(),
            Arc::clone(&self.metrics),
            Arc::clone(&self.clock),
            stop.clone(),
        );
        Running { stop, tasks }
    }

    /// Stops the senders and starts senders for `endpoints`, after the old
    /// ones have stopped (two senders of one endpoint would send its
    /// events twice).
    pub(crate) async fn replace(&self, endpoints: Vec<WebhookConfig>) {
        let mut running = self.running.lock().await;
        stop(&mut running).await;
        self.endpoints.set(endpoints.clone());
        *running = self.spawn(endpoints);
    }

    /// Stops the senders for good (shutdown).
    pub(crate) async fn stop(&self) {
        stop(&mut *self.running.lock().await).await;
    }
}

async fn stop(running: &mut Running) {
    running.stop.cancel();
    for task in running.tasks.drain(..) {
        // A POST in flight ends at its own timeout; stopping does not wait
        // for it (its event is sent again by the next sender).
        let abort = task.abort_handle();
        if tokio::time::timeout(GRACE, task).await.is_err() {
            abort.abort();
        }
    }
}
