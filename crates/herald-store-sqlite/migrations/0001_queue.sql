-- herald's queue on SQLite.
--
-- Times are INTEGER Unix milliseconds (UTC): they compare and index as
-- plain numbers, which is what claims and listings need.
-- Tables are STRICT so a wrongly typed bind fails loudly instead of being
-- stored as text.

CREATE TABLE messages (
    id              TEXT    PRIMARY KEY NOT NULL,   -- ULID: sorts by creation time
    message_id      TEXT    NOT NULL,               -- RFC 5322 Message-ID
    status          TEXT    NOT NULL CHECK (status IN ('scheduled', 'queued', 'sending',
                        'deferred', 'delivered', 'partial', 'failed', 'cancelled')),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    send_at         INTEGER,
    -- When the message is due. Kept while `sending` (it is then the time the
    -- claimed message had become due, never later than the claim), so that
    -- `release` can make the message due again without a clock; NULL once
    -- final.
    next_attempt_at INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    sender          TEXT,                            -- NULL is the null reverse-path <>
    smtputf8        INTEGER NOT NULL,
    tags            TEXT    NOT NULL DEFAULT '[]',   -- JSON array, for display
    metadata        TEXT    NOT NULL DEFAULT '{}',   -- JSON object
    trace_id        TEXT,
    lease_owner     TEXT,
    lease_until     INTEGER,
    -- A lease exists exactly while a worker is sending.
    CHECK ((status = 'sending') = (lease_owner IS NOT NULL AND lease_until IS NOT NULL))
) STRICT;

-- Claims: the due messages, oldest first. Partial, so delivered history
-- does not weigh on the hot path.
CREATE INDEX messages_due ON messages (next_attempt_at, id)
    WHERE status IN ('scheduled', 'queued', 'deferred');
-- Claims of expired leases, and reclaim_expired.
CREATE INDEX messages_leases ON messages (lease_until, id) WHERE status = 'sending';
-- Listing by status, newest first.
CREATE INDEX messages_by_status ON messages (status, id);
-- Listing by creation time (since / until).
CREATE INDEX messages_by_created ON messages (created_at, id);

-- The rendered bytes live apart from the message row so that scans of
-- `messages` (listings, claims, stats) never page through bodies of up to
-- tens of MiB.
CREATE TABLE message_bodies (
    message_id TEXT PRIMARY KEY NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    rendered   BLOB NOT NULL
) STRICT;

CREATE TABLE recipients (
    message_id    TEXT    NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,                  -- envelope order
    address       TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'deferred', 'delivered',
                      'failed', 'suppressed')),
    smtp_code     INTEGER,
    enhanced_code TEXT,
    response      TEXT,
    PRIMARY KEY (message_id, position),
    -- record_attempt finds a recipient by address.
    UNIQUE (message_id, address)
) STRICT, WITHOUT ROWID;

-- The `recipient` filter of listings.
CREATE INDEX recipients_by_address ON recipients (address, message_id);

-- The `tag` filter of listings (messages.tags keeps the display copy).
CREATE TABLE message_tags (
    tag        TEXT NOT NULL,
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    PRIMARY KEY (tag, message_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX message_tags_by_message ON message_tags (message_id);

-- A message's history. AUTOINCREMENT so ids never go back, which keeps
-- "ordered by id" equal to "in the order it happened".
CREATE TABLE events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id    TEXT    NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    at            INTEGER NOT NULL,
    kind          TEXT    NOT NULL,
    relay         TEXT,
    attempt       INTEGER,
    outcome       TEXT,
    smtp_code     INTEGER,
    enhanced_code TEXT,
    detail        TEXT,
    duration_ms   INTEGER
) STRICT;

CREATE INDEX events_by_message ON events (message_id, id);

CREATE TABLE idempotency (
    key          TEXT    PRIMARY KEY NOT NULL,
    request_hash TEXT    NOT NULL,
    message_id   TEXT    NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL
) STRICT;

-- Pruning keys older than the idempotency window.
CREATE INDEX idempotency_by_age ON idempotency (created_at);

-- Messages per status, kept by triggers: `depth()` is consulted on every
-- enqueue (backpressure) and must not count a large table each time. All
-- writes go through one connection, so this row is no contention point.
CREATE TABLE status_counts (
    status TEXT    PRIMARY KEY NOT NULL,
    n      INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

INSERT INTO status_counts (status, n) VALUES
    ('scheduled', 0), ('queued', 0), ('sending', 0), ('deferred', 0),
    ('delivered', 0), ('partial', 0), ('failed', 0), ('cancelled', 0);

CREATE TRIGGER messages_count_insert AFTER INSERT ON messages
BEGIN
    UPDATE status_counts SET n = n + 1 WHERE status = NEW.status;
END;

CREATE TRIGGER messages_count_update AFTER UPDATE OF status ON messages
    WHEN OLD.status <> NEW.status
BEGIN
    UPDATE status_counts SET n = n - 1 WHERE status = OLD.status;
    UPDATE status_counts SET n = n + 1 WHERE status = NEW.status;
END;

CREATE TRIGGER messages_count_delete AFTER DELETE ON messages
BEGIN
    UPDATE status_counts SET n = n - 1 WHERE status = OLD.status;
END;
