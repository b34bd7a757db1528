-- Leases (issue 16), the same as PostgreSQL's so both backends answer alike.
--
-- A delivery's claim: it is one worker's until claimed_until (Unix ms); past it, it is claimable
-- again. Finishing or retrying it ends the claim.
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE deliveries ADD COLUMN claimed_until INTEGER NOT NULL DEFAULT 0;

-- Who drives each rollout (core::rollout::lease): one holder until expires_at (Unix ms); fence
-- grows by one at every change of holder, and a fenced save writes only while its token is here.
CREATE TABLE rollout_leases (
    deploy_id  TEXT PRIMARY KEY REFERENCES rollouts (id),
    holder     TEXT    NOT NULL,
    fence      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
