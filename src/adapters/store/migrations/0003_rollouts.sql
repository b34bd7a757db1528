-- Rollouts (issue 6): the current record of each rollout and the audit trail of every input.
-- `record` is the whole `rollout::Rollout` as JSON; the other columns are there to query by.

CREATE TABLE rollouts (
    id          TEXT PRIMARY KEY,              -- the deploy id
    service     TEXT NOT NULL,
    environment TEXT NOT NULL,
    phase       TEXT NOT NULL,                 -- Phase::name()
    live        INTEGER NOT NULL CHECK (live IN (0, 1)),
    record      TEXT NOT NULL,
    created_at  TEXT NOT NULL,                 -- RFC 3339, UTC, millisecond precision
    updated_at  TEXT NOT NULL
);

-- One live rollout per (service, environment): a second insert fails instead of racing.
CREATE UNIQUE INDEX rollouts_one_live ON rollouts (service, environment) WHERE live = 1;
CREATE INDEX rollouts_by_service ON rollouts (service, updated_at);

CREATE TABLE rollout_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id TEXT NOT NULL REFERENCES rollouts (id),
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,                  -- who or what caused it: @user, judge, clock...
    cause      TEXT NOT NULL,                  -- Input::name(), or 'created'
    input      TEXT,                           -- the Input as JSON (NULL for 'created')
    decision   TEXT NOT NULL,                  -- applied | unchanged | rejected
    note       TEXT NOT NULL,
    effects    TEXT NOT NULL,                  -- JSON array of Effect
    phase      TEXT NOT NULL                   -- the phase after the event
);
CREATE INDEX rollout_events_by_rollout ON rollout_events (rollout_id, seq);
