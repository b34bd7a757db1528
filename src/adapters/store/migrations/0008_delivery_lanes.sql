-- Deliveries in lanes (issues 15 and 17): the worker processes deliveries in parallel, one at a
-- time per key, commands in their own lane, and a delivery waiting for its retry holds back only
-- its own key. Rows queued before this migration keep one line between them ('legacy').
ALTER TABLE deliveries ADD COLUMN lane TEXT NOT NULL DEFAULT 'work';       -- work | commands
ALTER TABLE deliveries ADD COLUMN lane_key TEXT NOT NULL DEFAULT 'legacy'; -- pr:owner/name#7, ...
-- Unix milliseconds before which the next attempt must not start (0: now).
ALTER TABLE deliveries ADD COLUMN not_before INTEGER NOT NULL DEFAULT 0;

-- Retention deletes by age.
CREATE INDEX deliveries_received ON deliveries (received_at);

-- The readiness probe's write: one row, rewritten on every probe.
CREATE TABLE store_health (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at TEXT NOT NULL
);
