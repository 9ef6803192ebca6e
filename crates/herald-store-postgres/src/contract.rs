//! The `Store` contract on PostgreSQL: each method runs its module's
//! statements on a pooled connection (see [`PgStore::run`]).

use super::*;

#[async_trait]
impl Store for PgStore {
    async fn enqueue(&self, message: NewMessage) -> Result<Enqueued, StoreError> {
        let mut answers = self.enqueue_batch(vec![message]).await?;
        answers.pop().unwrap_or_else(|| {
            Err(StoreError::Unavailable(
                "postgres: no enqueue result".into(),
            ))
        })
    }

    async fn replay(
        &self,
        idempotency: &Idempotency,
        now: OffsetDateTime,
    ) -> Result<Option<Enqueued>, StoreError> {
        let idempotency = idempotency.clone();
        self.run(|shared| async move { replay::replay(&shared, &idempotency, now).await })
            .await
    }

    async fn enqueue_batch(
        &self,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let request = enqueue::Request {
            messages,
            batch: None,
        };
        let answer = self.group.submit(request).await;
        answer.map_err(|e| self.shared.target.scrub(e))
    }

    async fn enqueue_batch_once(
        &self,
        batch: &Idempotency,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let request = enqueue::Request {
            messages,
            batch: Some(batch.clone()),
        };
        let answer = self.group.submit(request).await;
        answer
            .and_then(|items| items.into_iter().collect())
            .map_err(|e| self.shared.target.scrub(e))
    }

    async fn replay_batch(
        &self,
        batch: &Idempotency,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<Enqueued>>, StoreError> {
        let batch = batch.clone();
        self.run(|shared| async move { replay::replay_batch(&shared, &batch, now).await })
            .await
    }

    async fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        now: OffsetDateTime,
    ) -> Result<Vec<Claimed>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let owner = owner.to_owned();
        self.run(|shared| async move { lease::claim(&shared, &owner, limit, lease, now).await })
            .await
    }

    async fn extend_lease(
        &self,
        id: &str,
        owner: &str,
        until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.run(|shared| async move { lease::extend_lease(&shared, &id, &owner, until).await })
            .await
    }

    async fn renew_leases(
        &self,
        owner: &str,
        lease: Duration,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let owner = owner.to_owned();
        self.run(|shared| async move { lease::renew_leases(&shared, &owner, lease, now).await })
            .await
    }

    async fn record_attempt_counted(
        &self,
        id: &str,
        owner: &str,
        attempt: AttemptRecord,
    ) -> Result<Recorded, StoreError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.run(|shared| async move { attempt::record(&shared, &id, &owner, attempt).await })
            .await
    }

    async fn release(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.run(|shared| async move { lease::release(&shared, &id, &owner).await })
            .await
    }

    async fn postpone(
        &self,
        id: &str,
        owner: &str,
        postponed: Postponed,
    ) -> Result<(), StoreError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.run(|shared| async move { lease::postpone(&shared, &id, &owner, &postponed).await })
            .await
    }

    async fn cancel(&self, id: &str, now: OffsetDateTime) -> Result<MessageRecord, StoreError> {
        let id = id.to_owned();
        self.run(|shared| async move { attempt::cancel(&shared, &id, now).await })
            .await
    }

    async fn retry(&self, id: &str, now: OffsetDateTime) -> Result<MessageRecord, StoreError> {
        let id = id.to_owned();
        self.run(|shared| async move { attempt::retry(&shared, &id, now).await })
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<MessageRecord>, StoreError> {
        let id = id.to_owned();
        self.run(|shared| async move { query::get_message(&shared.pool, &id).await })
            .await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Page, StoreError> {
        let filter = filter.clone();
        self.run(|shared| async move { query::list(&shared.pool, &filter).await })
            .await
    }

    async fn stats(&self, now: OffsetDateTime) -> Result<QueueStats, StoreError> {
        self.run(|shared| async move { query::stats(&shared, now).await })
            .await
    }

    async fn depth(&self) -> Result<u64, StoreError> {
        // On every enqueue (backpressure), and mostly the cached figure: no
        // task of its own. Its only write, the ledger's fold, is one
        // autocommit statement, so a caller who stops waiting leaves nothing
        // half done.
        self.shared
            .depth
            .get(&self.shared.pool)
            .await
            .map_err(|e| self.shared.target.scrub(e))
    }

    async fn reclaim(&self, leases: Leases<'_>, now: OffsetDateTime) -> Result<u64, StoreError> {
        let leases = lease::Chosen::from(leases);
        self.run(|shared| async move { lease::reclaim(&shared, &leases, now).await })
            .await
    }

    async fn purge(&self, retention: &Retention) -> Result<Purged, StoreError> {
        let retention = *retention;
        self.run(|shared| async move { upkeep::purge(&shared, &retention).await })
            .await
    }

    async fn lead(
        &self,
        role: &str,
        holder: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (role, holder) = (role.to_owned(), holder.to_owned());
        self.run(|shared| async move { upkeep::lead(&shared, &role, &holder, ttl, now).await })
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
        self.run(
            |shared| async move { limits::take_quota(&shared, &relay, period, limit, want).await },
        )
        .await
    }

    async fn return_quota(
        &self,
        relay: &str,
        period: OffsetDateTime,
        count: u64,
    ) -> Result<(), StoreError> {
        let relay = relay.to_owned();
        self.run(|shared| async move { limits::return_quota(&shared, &relay, period, count).await })
            .await
    }

    async fn quota_used(&self, relay: &str, period: OffsetDateTime) -> Result<u64, StoreError> {
        let relay = relay.to_owned();
        self.run(|shared| async move { limits::quota_used(&shared, &relay, period).await })
            .await
    }

    async fn take_rate_slots(
        &self,
        relay: &str,
        limit: RateLimit,
        now: OffsetDateTime,
        count: u32,
    ) -> Result<RateSlots, StoreError> {
        let relay = relay.to_owned();
        self.run(|shared| async move {
            limits::take_rate_slots(&shared, &relay, limit, now, count).await
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|shared| async move { upkeep::ping(&shared.pool).await })
            .await
    }

    async fn put_template(&self, t: NewTemplate) -> Result<TemplateRecord, StoreError> {
        self.run(|shared| async move { template::put(&shared, &t).await })
            .await
    }

    async fn template(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<TemplateRecord>, StoreError> {
        let name = name.to_owned();
        self.run(|shared| async move { template::get_one(&shared, &name, version).await })
            .await
    }

    async fn templates(&self) -> Result<Vec<TemplateRecord>, StoreError> {
        self.run(|shared| async move { template::latest(&shared).await })
            .await
    }

    async fn delete_template(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.run(|shared| async move { template::delete(&shared, &name).await })
            .await
    }

    async fn append_feed(&self, entries: Vec<FeedEntry>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.run(|shared| async move { upkeep::append_feed(&shared, &entries).await })
            .await
    }

    async fn read_feed(
        &self,
        after: Option<FeedCursor>,
        since: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<FeedRecord>, StoreError> {
        self.run(|shared| async move { upkeep::read_feed(&shared, after, since, limit).await })
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
        self.run(|shared| async move { suppress::add(&shared, entries, now).await })
            .await
    }

    async fn remove_suppression(
        &self,
        address: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Suppression>, StoreError> {
        let address = address.to_owned();
        self.run(|shared| async move { suppress::remove(&shared, &address, now).await })
            .await
    }

    async fn suppression(
        &self,
        address: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Suppression>, StoreError> {
        let addresses = vec![address.to_owned()];
        self.run(|shared| async move { suppress::among(&shared, &addresses, now).await })
            .await
            .map(|mut found| found.pop())
    }

    async fn suppressions_among(
        &self,
        addresses: &[String],
        now: OffsetDateTime,
    ) -> Result<Vec<Suppression>, StoreError> {
        let addresses = addresses.to_vec();
        self.run(|shared| async move { suppress::among(&shared, &addresses, now).await })
            .await
    }

    async fn list_suppressions(
        &self,
        filter: &SuppressionFilter,
        now: OffsetDateTime,
    ) -> Result<SuppressionPage, StoreError> {
        let filter = filter.clone();
        self.run(|shared| async move { suppress::list(&shared, &filter, now).await })
            .await
    }

    async fn read_outbox(
        &self,
        after: Option<FeedCursor>,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        self.run(|shared| async move { webhooks::read_outbox(&shared, after, limit).await })
            .await
    }

    async fn webhook_cursor(&self, endpoint: &str) -> Result<Option<FeedCursor>, StoreError> {
        let endpoint = endpoint.to_owned();
        self.run(|shared| async move { webhooks::webhook_cursor(&shared, &endpoint).await })
            .await
    }

    async fn advance_webhook(&self, endpoint: &str, cursor: FeedCursor) -> Result<(), StoreError> {
        let endpoint = endpoint.to_owned();
        self.run(
            |shared| async move { webhooks::advance_webhook(&shared, &endpoint, cursor).await },
        )
        .await
    }

    async fn record_webhook_delivery(
        &self,
        delivery: WebhookDelivery,
        advance: Option<FeedCursor>,
    ) -> Result<i64, StoreError> {
        self.run(|shared| async move {
            webhooks::record_webhook_delivery(&shared, &delivery, advance).await
        })
        .await
    }

    async fn list_webhook_deliveries(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<WebhookDeliveryRecord>, StoreError> {
        self.run(
            |shared| async move { webhooks::list_webhook_deliveries(&shared, before, limit).await },
        )
        .await
    }

    async fn webhook_delivery(&self, id: i64) -> Result<Option<WebhookDeliveryRecord>, StoreError> {
        self.run(|shared| async move { webhooks::webhook_delivery(&shared, id).await })
            .await
    }

    async fn outbox_event(&self, id: &str) -> Result<Option<OutboxEvent>, StoreError> {
        let id = id.to_owned();
        self.run(|shared| async move { webhooks::outbox_event(&shared, &id).await })
            .await
    }

    async fn disable_webhook(&self, disabled: DisabledWebhook) -> Result<(), StoreError> {
        self.run(|shared| async move { webhooks::disable(&shared, &disabled).await })
            .await
    }

    async fn enable_webhook(&self, endpoint: &str) -> Result<bool, StoreError> {
        let endpoint = endpoint.to_owned();
        self.run(|shared| async move { webhooks::enable(&shared, &endpoint).await })
            .await
    }

    async fn disabled_webhooks(&self) -> Result<Vec<DisabledWebhook>, StoreError> {
        self.run(|shared| async move { webhooks::disabled(&shared).await })
            .await
    }

    async fn purge_events(&self, retention: &EventRetention) -> Result<PurgedEvents, StoreError> {
        let retention = retention.clone();
        self.run(|shared| async move { webhooks::purge(&shared, &retention).await })
            .await
    }

    fn on_new_work(&self, wake: Arc<dyn Fn() + Send + Sync>) {
        self.listen(move || wake());
    }
}
