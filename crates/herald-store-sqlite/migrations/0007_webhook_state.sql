-- Webhook endpoints disabled by a 410 stay disabled across restarts; a
-- manual retry that fails has an outcome of its own; retention finds old
-- outbox events, tries and lapsed suppressions by time.

-- An endpoint that answered 410 Gone, by its configured name. The URL's
-- digest (never the URL, which may hold a token) says which URL answered:
-- the same name at another URL is not disabled. `delivery` is the try
-- that disabled it.
CREATE TABLE webhook_disabled (
    endpoint   TEXT    PRIMARY KEY NOT NULL,
    url_digest TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    delivery   INTEGER
) STRICT, WITHOUT ROWID;

-- 'failed' joins the outcomes. SQLite cannot change a CHECK in place: the
-- table is copied into one that has it (ids kept, so cursors given out by
-- GET /v1/webhooks/deliveries still work).
CREATE TABLE webhook_deliveries_v2 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint    TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    http_status INTEGER,
    duration_ms INTEGER NOT NULL,
    error       TEXT,
    outcome     TEXT    NOT NULL
        CHECK (outcome IN ('delivered', 'retrying', 'gave_up', 'disabled', 'failed'))
) STRICT;
INSERT INTO webhook_deliveries_v2
    (id, endpoint, event_id, kind, attempt, at, http_status, duration_ms, error, outcome)
    SELECT id, endpoint, event_id, kind, attempt, at, http_status, duration_ms, error, outcome
    FROM webhook_deliveries;
DROP TABLE webhook_deliveries;
ALTER TABLE webhook_deliveries_v2 RENAME TO webhook_deliveries;

-- Retention's look-ups.
CREATE INDEX webhook_deliveries_by_at ON webhook_deliveries (at);
CREATE INDEX webhook_outbox_by_at ON webhook_outbox (at);
CREATE INDEX suppressions_by_expiry ON suppressions (expires_at) WHERE expires_at IS NOT NULL;
