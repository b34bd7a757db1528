-- The PostgreSQL schema: the same tables as SQLite's migrations 0001-0008, in PostgreSQL's
-- types. Timestamps stay RFC 3339 text, as in SQLite, so both backends compare and order them
-- alike (retention, history); records stay the exact JSON text the rollout store compares.

CREATE TABLE deliveries (
    seq           BIGSERIAL PRIMARY KEY,
    delivery_id   TEXT   NOT NULL UNIQUE,      -- GitHub's X-GitHub-Delivery: the de-duplication key
    event         TEXT   NOT NULL,
    action        TEXT,
    repository    TEXT,
    received_at   TEXT   NOT NULL,
    payload       BYTEA  NOT NULL,
    status        TEXT   NOT NULL DEFAULT 'pending',  -- pending | done | ignored | failed
    attempts      BIGINT NOT NULL DEFAULT 0,
    detail        TEXT,
    processed_at  TEXT,
    lane          TEXT   NOT NULL DEFAULT 'work',     -- work | commands
    lane_key      TEXT   NOT NULL DEFAULT 'legacy',
    not_before    BIGINT NOT NULL DEFAULT 0,          -- Unix ms
    -- A replica's claim: the delivery is its own until claimed_until (Unix ms); past it, any
    -- replica may claim it again.
    claimed_by    TEXT,
    claimed_until BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX deliveries_pending ON deliveries (status, seq);
CREATE INDEX deliveries_received ON deliveries (received_at);

CREATE TABLE assessments (
    id             BIGSERIAL PRIMARY KEY,
    repository     TEXT   NOT NULL,
    pr_number      BIGINT NOT NULL,
    head_sha       TEXT   NOT NULL,
    inputs_digest  TEXT   NOT NULL,
    result         TEXT   NOT NULL,
    risk_score     DOUBLE PRECISION NOT NULL,
    model          TEXT,
    prompt_version TEXT,
    created_at     TEXT   NOT NULL,
    UNIQUE (repository, pr_number, head_sha, inputs_digest)
);
CREATE INDEX assessments_pr ON assessments (repository, pr_number, id);

CREATE TABLE rollouts (
    id          TEXT PRIMARY KEY,
    service     TEXT NOT NULL,
    environment TEXT NOT NULL,
    phase       TEXT NOT NULL,
    live        BOOLEAN NOT NULL,
    record      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX rollouts_one_live ON rollouts (service, environment) WHERE live;
CREATE INDEX rollouts_by_service ON rollouts (service, updated_at);

CREATE TABLE rollout_events (
    seq        BIGSERIAL PRIMARY KEY,
    rollout_id TEXT NOT NULL REFERENCES rollouts (id),
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    cause      TEXT NOT NULL,
    input      TEXT,
    decision   TEXT NOT NULL,
    note       TEXT NOT NULL,
    effects    TEXT NOT NULL,
    phase      TEXT NOT NULL
);
CREATE INDEX rollout_events_by_rollout ON rollout_events (rollout_id, seq);

CREATE TABLE rollout_metrics (
    deploy_id TEXT NOT NULL REFERENCES rollouts (id),
    at        TEXT NOT NULL,
    weight    BIGINT NOT NULL CHECK (weight BETWEEN 0 AND 100),
    metric    TEXT NOT NULL,
    canary    DOUBLE PRECISION,
    baseline  DOUBLE PRECISION,
    PRIMARY KEY (deploy_id, at, metric)
);

CREATE TABLE service_holds (
    service     TEXT NOT NULL,
    environment TEXT NOT NULL,
    deploy_id   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    since       TEXT NOT NULL,
    PRIMARY KEY (service, environment)
);

CREATE TABLE approval_prs (
    -- Recording a rollout's approval PR again moves it last, as SQLite's REPLACE does.
    seq       BIGSERIAL,
    deploy_id TEXT PRIMARY KEY,
    repo      TEXT   NOT NULL,
    number    BIGINT NOT NULL,
    branch    TEXT   NOT NULL,
    closed_at TEXT
);
CREATE INDEX approval_prs_by_number ON approval_prs (lower(repo), number);

CREATE TABLE pending_releases (
    seq        BIGSERIAL,
    service    TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    release    TEXT NOT NULL,
    gate       TEXT NOT NULL,
    waiting    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (service, commit_sha)
);

CREATE TABLE store_health (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at TEXT NOT NULL
);
