-- Leases that heal, retention, and one leader at a time.

-- How many times in a row the message's lease ended without an attempt
-- being recorded (expired, or taken back at start-up); reset by every
-- recorded attempt. Reaching store's limit fails it as a poison message.
ALTER TABLE messages ADD COLUMN lost_leases INTEGER NOT NULL DEFAULT 0;

-- The name of the API key that queued the message (NULL before keys had
-- names, or for keys from the plain list, named by position).
ALTER TABLE messages ADD COLUMN submitted_by TEXT;

-- Retention: final messages by when they last changed.
CREATE INDEX messages_finished ON messages (updated_at, id)
    WHERE status IN ('delivered', 'partial', 'failed', 'cancelled');

-- Roles that one holder at a time may take (the alert evaluator).
CREATE TABLE leaders (
    role   TEXT    PRIMARY KEY NOT NULL,
    holder TEXT    NOT NULL,
    until  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- What nodes sharing a store tell each other (alert feed). One process
-- per SQLite file, so herald itself does not read it on SQLite; kept so
-- that every backend carries the whole contract.
CREATE TABLE feed (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    at   INTEGER NOT NULL,
    node TEXT    NOT NULL,
    body TEXT    NOT NULL
) STRICT;

CREATE INDEX feed_by_age ON feed (at);
