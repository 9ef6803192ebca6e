-- Webhook endpoints disabled by a 410 stay disabled across restarts; a
-- manual retry that fails has an outcome of its own; retention finds old
-- outbox events, tries and lapsed suppressions by time.

-- An endpoint that answered 410 Gone, by its configured name. The URL's
-- digest (never the URL, which may hold a token) says which URL answered:
-- the same name at another URL is not disabled. `delivery` is the try
-- that disabled it.
CREATE TABLE webhook_disabled (
    endpoint   text        PRIMARY KEY,
    url_digest text        NOT NULL,
    at         timestamptz NOT NULL,
    reason     text        NOT NULL,
    delivery   bigint
);

ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_outcome_check;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_outcome_check
    CHECK (outcome IN ('delivered', 'retrying', 'gave_up', 'disabled', 'failed'));

-- Retention's look-ups.
CREATE INDEX webhook_deliveries_by_at ON webhook_deliveries (at);
CREATE INDEX webhook_outbox_by_at ON webhook_outbox (at);
CREATE INDEX suppressions_by_expiry ON suppressions (expires_at) WHERE expires_at IS NOT NULL;
