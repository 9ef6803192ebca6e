//! The SQLite backend: one file, WAL journal, `synchronous=FULL` so that a
//! commit is on disk before anyone hears of it. Every change goes through
//! one writer thread that commits concurrent operations together (see
//! [`writer`]); questions are answered by a small pool of read-only
//! connections, each in its own snapshot.

mod attempt;
mod codec;
mod enqueue;
mod lease;
mod limits;
mod open;
pub use open::SCHEMA_VERSION;
mod query;
mod readers;
mod suppress;
mod template;
mod upkeep;
mod webhooks;
mod writer;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use herald_policy::RateLimit;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use rusqlite::Connection;

use self::lease::OwnedLeases;
use self::open::Location;
use self::readers::Readers;
use self::writer::{Closure, Op, Reply, Shared};
use herald_store::{
    Added, AttemptRecord, Claimed, DisabledWebhook, Enqueued, EventRetention, FeedCursor,
    FeedEntry, FeedRecord, Idempotency, Leases, ListFilter, MessageRecord, NewMessage, NewTemplate,
    OutboxEvent, Page, Postponed, Purged, PurgedEvents, QueueStats, RateSlots, Recorded, Retention,
    Store, StoreError, StoreOptions, Suppression, SuppressionFilter, SuppressionPage,
    TemplateRecord, WebhookDelivery, WebhookDeliveryRecord,
};

/// Read connections: enough for the API's questions on a small machine;
/// WAL lets them read while the writer writes.
const READERS: usize = 4;

/// The queue in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    ops: mpsc::Sender<Op>,
    reads: Readers,
    shared: Arc<Shared>,
    writer: JoinHandle<()>,
    options: StoreOptions,
    rates: limits::Rates,
}

impl SqliteStore {
    /// Opens (creating the file and its directory if missing) and migrates
    /// the database at `url`: `sqlite:///abs/path/herald.db`,
    /// `sqlite://relative.db`, `sqlite:relative.db`, `sqlite::memory:`, or
    /// a plain path. Starts the writer thread.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, StoreOptions::default()).await
    }

    /// [`open`](Self::open) with `options`.
    pub async fn open_with(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let location = Location::parse(url)?;
        if let Some(dir) = location.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                StoreError::Unavailable(format!("sqlite: create {}: {e}", dir.display()))
            })?;
        }
        let shared = Arc::new(Shared::default());
        let (ops, rx) = mpsc::channel(writer::QUEUE);
        let (opening, thread_shared) = (location.clone(), Arc::clone(&shared));
        // Opening, migrating and the first depth reading are SQLite calls:
        // off the runtime, like everything the writer does after.
        let writer = tokio::task::spawn_blocking(move || {
            let conn = opening.open_writer()?;
            writer::refresh_depth(&conn, &thread_shared);
            std::thread::Builder::new()
                .name("herald-sqlite-writer".into())
                .spawn(move || writer::run(conn, rx, &thread_shared))
                .map_err(|e| StoreError::Unavailable(format!("sqlite: start writer thread: {e}")))
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("sqlite: open task failed: {e}")))??;
        Ok(Self {
            ops,
            reads: Readers::new(location, READERS),
            shared,
            writer,
            options,
            rates: limits::Rates::default(),
        })
    }

    /// Stops the writer after the operations already handed to it, and
    /// closes every connection. Dropping the store is also safe (every
    /// answered change is committed); this only waits for the files to be
    /// closed.
    pub async fn close(self) {
        let Self {
            ops, reads, writer, ..
        } = self;
        drop(ops);
        let joined = tokio::task::spawn_blocking(move || writer.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            tracing::warn!("sqlite writer thread ended abnormally");
        }
        reads.close_idle().await;
    }

    /// Transactions the writer has committed (for tests and benchmarks of
    /// group commit).
    #[doc(hidden)]
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// The value of `PRAGMA name` on the write connection, where the
    /// durability settings (`synchronous`, `journal_mode`) live.
    #[doc(hidden)]
    pub async fn writer_pragma(&self, name: &'static str) -> Result<i64, StoreError> {
        self.write(|reply| Op::Pragma { name, reply }).await
    }

    /// Runs `work` on the write connection in the writer's next group and
    /// waits for its committed answer.
    async fn job<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write(|reply| Op::Job(Box::new(Closure { work, reply })))
            .await
    }

    /// The schema version the database is at (`PRAGMA user_version`).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        self.writer_pragma("user_version").await
    }

    /// Hands an operation to the writer and waits for its committed answer.
    async fn write<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        writer::submit(&self.ops, op).await
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("sqlite: the writer has stopped".to_owned())
}

#[async_trait]
impl Store for SqliteStore {
    async fn enqueue(&self, message: NewMessage) -> Result<Enqueued, StoreError> {
        self.enqueue_batch(vec![message])
            .await?
            .pop()
            .unwrap_or_else(|| Err(StoreError::Unavailable("sqlite: no enqueue result".into())))
    }

    async fn replay(
        &self,
        idempotency: &Idempotency,
        now: OffsetDateTime,
    ) -> Result<Option<Enqueued>, StoreError> {
        let idempotency = idempotency.clone();
        let at = codec::ms(now);
        self.reads
            .with(move |conn| enqueue::replay(conn, &idempotency, at))
            .await?
            .transpose()
    }

    async fn enqueue_batch(
        &self,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|reply| Op::Enqueue {
            messages,
            batch: None,
            reply,
        })
        .await
    }

    async fn enqueue_batch_once(
        &self,
        batch: &Idempotency,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let batch = Some(batch.clone());
        self.write(|reply| Op::Enqueue {
            messages,
            batch,
            reply,
        })
        .await?
        .into_iter()
        .collect()
    }

    async fn replay_batch(
        &self,
        batch: &Idempotency,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<Enqueued>>, StoreError> {
        let batch = batch.clone();
        let at = codec::ms(now);
        self.reads
            .with(move |conn| enqueue::replay_batch(conn, &batch, at))
            .await?
            .transpose()
    }

    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        now: OffsetDateTime,
    ) -> Result<Vec<Claimed>, StoreError> {
        let owner = owner.to_owned();
        self.write(|reply| Op::Claim {
            owner,
            limit,
            lease,
            now,
            max_lost: self.options.max_lost_leases,
            reply,
        })
        .await
    }

    async fn extend_lease(
        &self,
        id: &str,
        owner: &str,
        until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.write(|reply| Op::ExtendLease {
            id,
            owner,
            until,
            reply,
        })
        .await
    }

    async fn record_attempt_counted(
        &self,
        id: &str,
        owner: &str,
        attempt: AttemptRecord,
    ) -> Result<Recorded, StoreError> {
        let (id, owner, attempt) = (id.to_owned(), owner.to_owned(), Box::new(attempt));
        self.write(|reply| Op::RecordAttempt {
            id,
            owner,
            attempt,
            reply,
        })
        .await
    }

    async fn release(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.write(|reply| Op::Release { id, owner, reply }).await
    }

    async fn postpone(
        &self,
        id: &str,
        owner: &str,
        postponed: Postponed,
    ) -> Result<(), StoreError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.job(move |conn| lease::postpone(conn, &id, &owner, &postponed))
            .await
    }

    async fn cancel(&self, id: &str, now: OffsetDateTime) -> Result<MessageRecord, StoreError> {
        let id = id.to_owned();
        self.write(|reply| Op::Cancel { id, now, reply }).await
    }

    async fn retry(&self, id: &str, now: OffsetDateTime) -> Result<MessageRecord, StoreError> {
        let id = id.to_owned();
        self.write(|reply| Op::Retry { id, now, reply }).await
    }

    async fn get(&self, id: &str) -> Result<Option<MessageRecord>, StoreError> {
        let id = id.to_owned();
        self.reads.snapshot(move |conn| query::get(conn, &id)).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Page, StoreError> {
        let filter = filter.clone();
        self.reads
            .snapshot(move |conn| query::list(conn, &filter))
            .await
    }

    async fn stats(&self, now: OffsetDateTime) -> Result<QueueStats, StoreError> {
        self.reads
            .snapshot(move |conn| query::stats(conn, now))
            .await
    }

    async fn depth(&self) -> Result<u64, StoreError> {
        if self.ops.is_closed() {
            return Err(stopped());
        }
        Ok(self.shared.depth.load(Ordering::Relaxed))
    }

    async fn renew_leases(
        &self,
        owner: &str,
        lease: Duration,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let owner = owner.to_owned();
        self.job(move |conn| lease::renew_leases(conn, &owner, lease, now))
            .await
    }

    async fn reclaim(&self, leases: Leases<'_>, now: OffsetDateTime) -> Result<u64, StoreError> {
        let (leases, max_lost) = (OwnedLeases::from(leases), self.options.max_lost_leases);
        self.job(move |conn| lease::reclaim(conn, &leases, now, max_lost))
            .await
    }

    async fn purge(&self, retention: &Retention) -> Result<Purged, StoreError> {
        let retention = *retention;
        self.job(move |conn| upkeep::purge(conn, &retention)).await
    }

    async fn lead(
        &self,
        role: &str,
        holder: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (role, holder) = (role.to_owned(), holder.to_owned());
        self.job(move |conn| upkeep::lead(conn, &role, &holder, ttl, now))
            .await
    }

    async fn take_quota(
        &self,
        relay: &str,
        period: OffsetDateTime,
        limit: u64,
        want: u64,
    ) -> Result<u64, StoreError> {
        let relay = relay.to_owned();
        self.job(move |conn| limits::take_quota(conn, &relay, period, limit, want))
            .await
    }

    async fn return_quota(
        &self,
        relay: &str,
        period: OffsetDateTime,
        count: u64,
    ) -> Result<(), StoreError> {
        let relay = relay.to_owned();
        self.job(move |conn| limits::return_quota(conn, &relay, period, count))
            .await
    }

    async fn quota_used(&self, relay: &str, period: OffsetDateTime) -> Result<u64, StoreError> {
        let relay = relay.to_owned();
        self.reads
            .with(move |conn| limits::quota_used(conn, &relay, period))
            .await
    }

    async fn take_rate_slots(
        &self,
        relay: &str,
        limit: RateLimit,
        now: OffsetDateTime,
        count: u32,
    ) -> Result<RateSlots, StoreError> {
        Ok(self.rates.take(relay, limit, now, count))
    }

    async fn append_feed(&self, entries: Vec<FeedEntry>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.job(move |conn| upkeep::append_feed(conn, &entries))
            .await
    }

    async fn read_feed(
        &self,
        after: Option<FeedCursor>,
        since: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<FeedRecord>, StoreError> {
        self.reads
            .with(move |conn| upkeep::read_feed(conn, after, since, limit))
            .await
    }

    async fn put_template(&self, t: NewTemplate) -> Result<TemplateRecord, StoreError> {
        let name = t.name.clone();
        template::change(&self.ops, &self.shared, &name, move |conn| {
            template::put(conn, &t)
        })
        .await
    }

    async fn template(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<TemplateRecord>, StoreError> {
        self.shared.templates.get(&self.reads, name, version).await
    }

    async fn templates(&self) -> Result<Vec<TemplateRecord>, StoreError> {
        self.reads.with(|conn| template::latest(conn)).await
    }

    async fn delete_template(&self, name: &str) -> Result<bool, StoreError> {
        let owned = name.to_owned();
        template::change(&self.ops, &self.shared, name, move |conn| {
            template::delete(conn, &owned)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.ops.is_closed() {
            return Err(stopped());
        }
        self.reads
            .with(|conn| {
                conn.query_row("SELECT n FROM status_counts LIMIT 1", [], |_| Ok(()))
                    .map_err(codec::db("ping"))
            })
            .await
    }

    async fn add_suppressions(
        &self,
        entries: Vec<Suppression>,
        now: OffsetDateTime,
    ) -> Result<Vec<Added>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        self.job(move |conn| suppress::add(conn, entries, now))
            .await
    }

    async fn remove_suppression(
        &self,
        address: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Suppression>, StoreError> {
        let address = address.to_owned();
        self.job(move |conn| suppress::remove(conn, &address, now))
            .await
    }

    async fn suppression(
        &self,
        address: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Suppression>, StoreError> {
        let address = address.to_owned();
        self.reads
            .with(move |conn| suppress::get(conn, &address, now))
            .await
    }

    async fn suppressions_among(
        &self,
        addresses: &[String],
        now: OffsetDateTime,
    ) -> Result<Vec<Suppression>, StoreError> {
        let addresses = addresses.to_vec();
        self.reads
            .with(move |conn| suppress::among(conn, &addresses, now))
            .await
    }

    async fn list_suppressions(
        &self,
        filter: &SuppressionFilter,
        now: OffsetDateTime,
    ) -> Result<SuppressionPage, StoreError> {
        let filter = filter.clone();
        self.reads
            .with(move |conn| suppress::list(conn, &filter, now))
            .await
    }

    async fn read_outbox(
        &self,
        after: Option<FeedCursor>,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        self.reads
            .with(move |conn| webhooks::read_outbox(conn, after, limit))
            .await
    }

    async fn webhook_cursor(&self, endpoint: &str) -> Result<Option<FeedCursor>, StoreError> {
        let endpoint = endpoint.to_owned();
        self.reads
            .with(move |conn| webhooks::webhook_cursor(conn, &endpoint))
            .await
    }

    async fn advance_webhook(&self, endpoint: &str, cursor: FeedCursor) -> Result<(), StoreError> {
        let endpoint = endpoint.to_owned();
        self.job(move |conn| webhooks::advance_webhook(conn, &endpoint, cursor))
            .await
    }

    async fn record_webhook_delivery(
        &self,
        delivery: WebhookDelivery,
        advance: Option<FeedCursor>,
    ) -> Result<i64, StoreError> {
        self.job(move |conn| webhooks::record_webhook_delivery(conn, &delivery, advance))
            .await
    }

    async fn list_webhook_deliveries(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<WebhookDeliveryRecord>, StoreError> {
        self.reads
            .with(move |conn| webhooks::list_webhook_deliveries(conn, before, limit))
            .await
    }

    async fn webhook_delivery(&self, id: i64) -> Result<Option<WebhookDeliveryRecord>, StoreError> {
        self.reads
            .with(move |conn| webhooks::webhook_delivery(conn, id))
            .await
    }

    async fn outbox_event(&self, id: &str) -> Result<Option<OutboxEvent>, StoreError> {
        let id = id.to_owned();
        self.reads
            .with(move |conn| webhooks::outbox_event(conn, &id))
            .await
    }

    async fn disable_webhook(&self, disabled: DisabledWebhook) -> Result<(), StoreError> {
        self.job(move |conn| webhooks::disable(conn, &disabled))
            .await
    }

    async fn enable_webhook(&self, endpoint: &str) -> Result<bool, StoreError> {
        let endpoint = endpoint.to_owned();
        self.job(move |conn| webhooks::enable(conn, &endpoint))
            .await
    }

    async fn disabled_webhooks(&self) -> Result<Vec<DisabledWebhook>, StoreError> {
        self.reads.with(|conn| webhooks::disabled(conn)).await
    }

    async fn purge_events(&self, retention: &EventRetention) -> Result<PurgedEvents, StoreError> {
        let retention = retention.clone();
        self.job(move |conn| webhooks::purge(conn, &retention))
            .await
    }
}
