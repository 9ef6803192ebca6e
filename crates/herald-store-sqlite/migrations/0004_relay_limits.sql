-- Relay limits: each relay's daily quota, counted in the period that
-- began at `period` (ms since the epoch, the quota's last reset). One row
-- per relay; a later period starts the count again. (Rate limits are kept
-- in memory: one process owns the file.)
CREATE TABLE relay_quotas (
    relay  TEXT    PRIMARY KEY NOT NULL,
    period INTEGER NOT NULL,
    used   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
