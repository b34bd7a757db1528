-- Who drives each rollout (core::rollout::lease): one replica until expires_at (Unix ms); fence
-- grows by one at every change of holder, and a fenced save writes only while its token is here.
CREATE TABLE rollout_leases (
    deploy_id  TEXT PRIMARY KEY REFERENCES rollouts (id),
    holder     TEXT   NOT NULL,
    fence      BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
