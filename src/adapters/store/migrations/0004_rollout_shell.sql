-- What the rollout shell remembers beside the rollout records (issue 6).

-- A service held after a rollback or a `/hold`: no new rollout of it in that environment starts
-- until a human releases it (`/hold cancel`, `/resume` on the rolled-back PR, or the CLI).
CREATE TABLE service_holds (
    service     TEXT NOT NULL,
    environment TEXT NOT NULL,
    deploy_id   TEXT NOT NULL,                 -- the rollout that held it
    reason      TEXT NOT NULL,
    since       TEXT NOT NULL,                 -- RFC 3339, UTC
    PRIMARY KEY (service, environment)
);

-- The approval pull request a gated rollout opened in the GitOps repository, so a review on it
-- finds its rollout and the merge finds its number.
CREATE TABLE approval_prs (
    deploy_id TEXT PRIMARY KEY,
    repo      TEXT NOT NULL,                   -- owner/name of the GitOps repository
    number    INTEGER NOT NULL,
    branch    TEXT NOT NULL
);
CREATE INDEX approval_prs_by_number ON approval_prs (repo, number);

-- A merged change waiting for its required checks before it rolls out. Re-examined when a check
-- suite or workflow run completes and on every reconcile, so a lost webhook only delays it.
CREATE TABLE pending_releases (
    service    TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    release    TEXT NOT NULL,                 -- rollout::pipeline::Release as JSON
    gate       TEXT NOT NULL,                 -- rollout::pipeline::Gate as JSON
    waiting    TEXT NOT NULL,                 -- what it last waited for
    created_at TEXT NOT NULL,
    PRIMARY KEY (service, commit_sha)
);
