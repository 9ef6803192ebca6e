-- Bounce classes, the suppression list and the webhook outbox.

-- What a recipient's last failure means (herald_policy::BounceClass), and
-- the class of an attempt's failure on its event.
ALTER TABLE recipients ADD COLUMN class text;
ALTER TABLE events ADD COLUMN class text;

-- Addresses not to send to, shared by every node. The address is stored
-- as compared: the local part as written, the domain in lower case.
-- `message` names the message whose failure added it, without a foreign
-- key: the entry outlives the message's retention.
CREATE TABLE suppressions (
    address    text        PRIMARY KEY,
    reason     text        NOT NULL CHECK (reason IN ('bounce', 'complaint', 'manual')),
    message    text,
    response   text,
    created_at timestamptz NOT NULL,
    expires_at timestamptz
);

-- Listing newest first, and the `since` filter.
CREATE INDEX suppressions_by_created ON suppressions (created_at, address);

-- Webhook events, written in the transaction of the change that causes
-- them. Read in (tx, id) order below the oldest transaction still
-- running, like the feed, so that an event committed late never sorts
-- before one a reader has already passed.
CREATE TABLE webhook_outbox (
    tx      xid8        NOT NULL DEFAULT pg_current_xact_id(),
    id      bigint      GENERATED ALWAYS AS IDENTITY,
    at      timestamptz NOT NULL,
    kind    text        NOT NULL,
    message text,
    body    text        NOT NULL,
    PRIMARY KEY (tx, id)
);

-- How far each webhook endpoint has read the outbox (by its configured
-- name): events up to the cursor were delivered, given up or filtered out.
CREATE TABLE webhook_cursors (
    endpoint  text   PRIMARY KEY,
    cursor_tx xid8   NOT NULL,
    cursor_id bigint NOT NULL
);

-- Every attempt to deliver an event to an endpoint.
CREATE TABLE webhook_deliveries (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint    text        NOT NULL,
    event_id    text        NOT NULL,
    kind        text        NOT NULL,
    attempt     int         NOT NULL,
    at          timestamptz NOT NULL,
    http_status int,
    duration_ms bigint      NOT NULL,
    error       text,
    outcome     text        NOT NULL CHECK (outcome IN ('delivered', 'retrying', 'gave_up', 'disabled'))
);
