-- Stored templates: every version kept; (name, version) is the key.
CREATE TABLE templates (
    name       text        NOT NULL,
    version    integer     NOT NULL,
    subject    text        NOT NULL,
    text       text,
    html       text,
    layout     text,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (name, version)
);
