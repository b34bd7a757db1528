-- Rollout metric history (issue 7): what the judge saw, per analysis interval and metric, so the
-- status page and the PR comment can draw canary against baseline over the whole rollout.
-- One row per (rollout, interval end, metric): consecutive queries overlap, and recording an
-- interval again updates its row (a value known before is never replaced by a missing one).

CREATE TABLE rollout_metrics (
    deploy_id TEXT NOT NULL REFERENCES rollouts (id),
    at        TEXT NOT NULL,                  -- end of the interval, RFC 3339 UTC, milliseconds
    weight    INTEGER NOT NULL CHECK (weight BETWEEN 0 AND 100),  -- canary traffic, percent
    metric    TEXT NOT NULL,                  -- error_rate, p99_latency_seconds, ...
    canary    REAL,                           -- NULL: no sample (never the same as 0)
    baseline  REAL,
    PRIMARY KEY (deploy_id, at, metric)
) WITHOUT ROWID;
