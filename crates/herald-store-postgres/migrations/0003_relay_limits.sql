-- Relay limits that every node shares.

-- Each relay's daily quota, counted in the period that began at `period`
-- (the quota's last reset); a later period starts the count again.
CREATE TABLE relay_quotas (
    relay  text        PRIMARY KEY,
    period timestamptz NOT NULL,
    used   bigint      NOT NULL
);

-- Each relay's rate limit as GCRA keeps it: one number, the theoretical
-- arrival time of the next message (microseconds since the epoch), moved
-- by one conditional upsert per message.
CREATE TABLE relay_rates (
    relay text   PRIMARY KEY,
    tat   bigint NOT NULL
);
