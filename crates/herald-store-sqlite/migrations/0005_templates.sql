-- Stored templates: every version kept; (name, version) is the key.
CREATE TABLE templates (
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    subject    TEXT    NOT NULL,
    text       TEXT,
    html       TEXT,
    layout     TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, version)
) WITHOUT ROWID;
