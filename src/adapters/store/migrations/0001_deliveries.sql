-- Webhook deliveries: the durable queue. A row exists before GitHub gets its 202.
CREATE TABLE deliveries (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id  TEXT    NOT NULL UNIQUE,
    event        TEXT    NOT NULL,
    action       TEXT,
    repository   TEXT,
    received_at  TEXT    NOT NULL,
    payload      BLOB    NOT NULL,
    -- pending | done | ignored | failed
    status       TEXT    NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    detail       TEXT,
    processed_at TEXT
);
CREATE INDEX deliveries_pending ON deliveries (status, seq);
