-- Bounce classes, the suppression list and the webhook outbox.

-- What a recipient's last failure means (herald_policy::BounceClass), and
-- the class of an attempt's failure on its event.
ALTER TABLE recipients ADD COLUMN class TEXT;
ALTER TABLE events ADD COLUMN class TEXT;

-- Addresses not to send to. The address is stored as compared: the local
-- part as written, the domain in lower case. `message` names the message
-- whose failure added it, without a foreign key: the entry outlives the
-- message's retention.
CREATE TABLE suppressions (
    address    TEXT    PRIMARY KEY NOT NULL,
    reason     TEXT    NOT NULL CHECK (reason IN ('bounce', 'complaint', 'manual')),
    message    TEXT,
    response   TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
) STRICT;

-- Listing newest first, and the `since` filter.
CREATE INDEX suppressions_by_created ON suppressions (created_at, address);

-- Webhook events, written in the transaction of the change that causes
-- them. AUTOINCREMENT: one writer commits in id order, so reading on from
-- the last id never misses an event, and ids are never reused.
CREATE TABLE webhook_outbox (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    message TEXT,
    body    TEXT    NOT NULL
) STRICT;

-- How far each webhook endpoint has read the outbox (by its configured
-- name): events up to the cursor were delivered, given up or filtered out.
CREATE TABLE webhook_cursors (
    endpoint  TEXT    PRIMARY KEY NOT NULL,
    cursor_tx INTEGER NOT NULL,
    cursor_id INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Every attempt to deliver an event to an endpoint.
CREATE TABLE webhook_deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint    TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    http_status INTEGER,
    duration_ms INTEGER NOT NULL,
    error       TEXT,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('delivered', 'retrying', 'gave_up', 'disabled'))
) STRICT;
