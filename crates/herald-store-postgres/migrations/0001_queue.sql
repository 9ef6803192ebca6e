-- herald's queue on PostgreSQL.
--
-- Times are timestamptz, bodies bytea. Everything is created in the first
-- schema of the connection's search_path, so one database can hold several
-- herald queues apart (one per schema).

CREATE TABLE messages (
    id              text        PRIMARY KEY,           -- ULID: sorts by creation time
    message_id      text        NOT NULL,              -- RFC 5322 Message-ID
    status          text        NOT NULL CHECK (status IN ('scheduled', 'queued', 'sending',
                        'deferred', 'delivered', 'partial', 'failed', 'cancelled')),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    send_at         timestamptz,
    -- When the message is due. Kept while `sending` (it is then the time the
    -- claimed message had become due, never later than the claim), so that
    -- `release` can make the message due again without a clock; NULL once
    -- final.
    next_attempt_at timestamptz,
    attempts        int         NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- How many times in a row the message's lease ended without an attempt
    -- being recorded; reset by every recorded attempt. Reaching the store's
    -- limit fails it as a poison message.
    lost_leases     int         NOT NULL DEFAULT 0 CHECK (lost_leases >= 0),
    sender          text,                              -- NULL is the null reverse-path <>
    smtputf8        boolean     NOT NULL,
    tags            jsonb       NOT NULL DEFAULT '[]', -- array of strings, in the given order
    metadata        jsonb       NOT NULL DEFAULT '{}', -- object of strings
    trace_id        text,
    submitted_by    text,                              -- the API key's name
    lease_owner     text,
    lease_until     timestamptz,
    -- A lease exists exactly while a worker is sending.
    CHECK ((status = 'sending') = (lease_owner IS NOT NULL AND lease_until IS NOT NULL))
);

-- Claims: the due messages, oldest first. Partial, so that delivered
-- history does not weigh on the hot path.
CREATE INDEX messages_due ON messages (next_attempt_at, id)
    WHERE status IN ('scheduled', 'queued', 'deferred');
-- Expired leases (claims, reclaim).
CREATE INDEX messages_leases ON messages (lease_until, id) WHERE status = 'sending';
-- A node's own leases (heartbeats, reclaim at start-up).
CREATE INDEX messages_lease_owners ON messages (lease_owner) WHERE status = 'sending';
-- Listing by status, newest first.
CREATE INDEX messages_by_status ON messages (status, id);
-- Retention: final messages by when they last changed.
CREATE INDEX messages_finished ON messages (updated_at, id)
    WHERE status IN ('delivered', 'partial', 'failed', 'cancelled');
-- The `tag` filter of listings (`tags @> '["x"]'`).
CREATE INDEX messages_by_tag ON messages USING gin (tags jsonb_path_ops);

-- The rendered bytes live apart from the message row: a status change
-- writes a new version of the whole row, which must not copy the body.
CREATE TABLE message_bodies (
    message_id text  PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    rendered   bytea NOT NULL
);

CREATE TABLE recipients (
    message_id    text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    position      int  NOT NULL,                       -- envelope order
    address       text NOT NULL,
    status        text NOT NULL CHECK (status IN ('pending', 'deferred', 'delivered',
                      'failed', 'suppressed')),
    smtp_code     int,
    enhanced_code text,
    response      text,
    PRIMARY KEY (message_id, position)
);

-- The `recipient` filter of listings.
CREATE INDEX recipients_by_address ON recipients (address, message_id);

-- A message's history, in the order it happened: the identity only grows,
-- and a message's events are written under its row lock.
CREATE TABLE events (
    message_id    text        NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    id            bigint      GENERATED ALWAYS AS IDENTITY,
    at            timestamptz NOT NULL,
    kind          text        NOT NULL,
    relay         text,
    attempt       int,
    outcome       text,
    smtp_code     int,
    enhanced_code text,
    detail        text,
    duration_ms   bigint,
    PRIMARY KEY (message_id, id)
);

-- Idempotency keys. A single message's key is one row (kind 'message',
-- position 0); a keyed batch is one row per item (kind 'batch', the item's
-- position), all written together, position 0 first. Whoever inserts (or
-- takes over, once expired) position 0 owns the key; the others find the
-- first answers by key and position. The reference to the message is
-- checked at commit, so the key can be taken before its message exists.
CREATE TABLE idempotency (
    key          text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('message', 'batch')),
    position     int         NOT NULL CHECK (position >= 0 AND (kind = 'batch' OR position = 0)),
    request_hash text        NOT NULL,
    message_id   text        NOT NULL REFERENCES messages (id) ON DELETE CASCADE
                                 DEFERRABLE INITIALLY DEFERRED,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (key, kind, position)
);

-- Retention of keys, and the cascade from a deleted message.
CREATE INDEX idempotency_by_age ON idempotency (created_at);
CREATE INDEX idempotency_by_message ON idempotency (message_id);

-- What nodes tell each other (the alert feed: failures and attempt
-- counts for error groups and alert rules). Read in (tx, id) order, and
-- only below the oldest transaction still running, so that an entry
-- committed late never sorts before one a reader has already passed.
CREATE TABLE feed (
    tx   xid8        NOT NULL DEFAULT pg_current_xact_id(),
    id   bigint      GENERATED ALWAYS AS IDENTITY,
    at   timestamptz NOT NULL,
    node text        NOT NULL,
    body text        NOT NULL,
    PRIMARY KEY (tx, id)
);
CREATE INDEX feed_by_age ON feed (at);

-- Roles that one holder at a time may take (the alert evaluator).
CREATE TABLE leaders (
    role   text        PRIMARY KEY,
    holder text        NOT NULL,
    until  timestamptz NOT NULL
);

-- Messages per status, as a ledger: every statement that changes
-- `messages` appends one row of signed changes (statement triggers below),
-- and readers add the rows up. Appending never waits for another writer,
-- where one counter row per status would serialise every enqueue, claim
-- and attempt in the cluster on it. Readers fold the rows into one now
-- and then (see the store's `depth`), so there are never many to add.
CREATE TABLE status_counts (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scheduled bigint NOT NULL DEFAULT 0,
    queued    bigint NOT NULL DEFAULT 0,
    sending   bigint NOT NULL DEFAULT 0,
    deferred  bigint NOT NULL DEFAULT 0,
    delivered bigint NOT NULL DEFAULT 0,
    partial   bigint NOT NULL DEFAULT 0,
    failed    bigint NOT NULL DEFAULT 0,
    cancelled bigint NOT NULL DEFAULT 0
);

-- What an UPDATE changed: each new row counts +1 for its status, each old
-- row -1.
CREATE FUNCTION herald_count_changes() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO status_counts (scheduled, queued, sending, deferred, delivered, partial,
                               failed, cancelled)
    SELECT * FROM (
        SELECT coalesce(sum(n) FILTER (WHERE status = 'scheduled'), 0)::bigint AS scheduled,
               coalesce(sum(n) FILTER (WHERE status = 'queued'), 0)::bigint AS queued,
               coalesce(sum(n) FILTER (WHERE status = 'sending'), 0)::bigint AS sending,
               coalesce(sum(n) FILTER (WHERE status = 'deferred'), 0)::bigint AS deferred,
               coalesce(sum(n) FILTER (WHERE status = 'delivered'), 0)::bigint AS delivered,
               coalesce(sum(n) FILTER (WHERE status = 'partial'), 0)::bigint AS partial,
               coalesce(sum(n) FILTER (WHERE status = 'failed'), 0)::bigint AS failed,
               coalesce(sum(n) FILTER (WHERE status = 'cancelled'), 0)::bigint AS cancelled
        FROM (
            SELECT status, 1 AS n FROM herald_changed_new
            UNION ALL
            SELECT status, -1 AS n FROM herald_changed_old
        ) changes
    ) delta
    -- Heartbeats and lease extensions change no status: no row for them.
    WHERE (scheduled, queued, sending, deferred, delivered, partial, failed, cancelled)
        <> (0, 0, 0, 0, 0, 0, 0, 0);
    RETURN NULL;
END
$$;

-- A trigger with transition tables serves one event (and no column list),
-- so inserts and deletes have functions of their own.
CREATE FUNCTION herald_count_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO status_counts (scheduled, queued, sending, deferred, delivered, partial,
                               failed, cancelled)
    SELECT count(*) FILTER (WHERE status = 'scheduled'),
           count(*) FILTER (WHERE status = 'queued'),
           count(*) FILTER (WHERE status = 'sending'),
           count(*) FILTER (WHERE status = 'deferred'),
           count(*) FILTER (WHERE status = 'delivered'),
           count(*) FILTER (WHERE status = 'partial'),
           count(*) FILTER (WHERE status = 'failed'),
           count(*) FILTER (WHERE status = 'cancelled')
    FROM herald_changed_new
    HAVING count(*) > 0;
    RETURN NULL;
END
$$;

CREATE FUNCTION herald_count_deleted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO status_counts (scheduled, queued, sending, deferred, delivered, partial,
                               failed, cancelled)
    SELECT -count(*) FILTER (WHERE status = 'scheduled'),
           -count(*) FILTER (WHERE status = 'queued'),
           -count(*) FILTER (WHERE status = 'sending'),
           -count(*) FILTER (WHERE status = 'deferred'),
           -count(*) FILTER (WHERE status = 'delivered'),
           -count(*) FILTER (WHERE status = 'partial'),
           -count(*) FILTER (WHERE status = 'failed'),
           -count(*) FILTER (WHERE status = 'cancelled')
    FROM herald_changed_old
    HAVING count(*) > 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_counted_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS herald_changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION herald_count_inserted();

CREATE TRIGGER messages_counted_update AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS herald_changed_old NEW TABLE AS herald_changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION herald_count_changes();

CREATE TRIGGER messages_counted_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS herald_changed_old
    FOR EACH STATEMENT EXECUTE FUNCTION herald_count_deleted();
