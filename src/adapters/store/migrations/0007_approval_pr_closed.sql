-- When deploybot closed an approval PR (and deleted its bot branch) because its rollout ended
-- (issue 15): NULL while that is still owed, so the reconcile finishes a close a crash
-- interrupted, and never asks GitHub again about one that is done.
ALTER TABLE approval_prs ADD COLUMN closed_at TEXT;
