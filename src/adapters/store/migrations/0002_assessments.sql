-- Risk assessments of pull requests. One row per (repository, PR, head SHA, inputs digest): a
-- redelivered event for the same head and inputs finds its row and does not ask the model again.
CREATE TABLE assessments (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    repository     TEXT    NOT NULL,
    pr_number      INTEGER NOT NULL,
    head_sha       TEXT    NOT NULL,
    -- sha256 over the change, the risk config, the model and the prompt version
    inputs_digest  TEXT    NOT NULL,
    -- the assessment as JSON (score, strategy, approval, factors, rationale)
    result         TEXT    NOT NULL,
    risk_score     REAL    NOT NULL,
    model          TEXT,
    prompt_version TEXT,
    created_at     TEXT    NOT NULL,
    UNIQUE (repository, pr_number, head_sha, inputs_digest)
);
CREATE INDEX assessments_pr ON assessments (repository, pr_number, id);
