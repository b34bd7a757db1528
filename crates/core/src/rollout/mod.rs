//! The rollout: the state machine that takes one image to one environment of one service, step
//! by step, through git, watched by the canary judge, and reverts it when the judge (or a human)
//! says so.
//!
//! The core is one pure function, [`step`]: `(rollout, input, now) -> Transition { next,
//! effects, outcome, note }`. It does no I/O and reads no clock; effects are data that the shell
//! runs (and that must be idempotent). Beside it: `record` (the [`Rollout`] and its [`State`]),
//! `admission` (which release starts where: supersede, queue, held, the next environment),
//! `store` (the persistence port), `legacy` (records stored by earlier versions), `view` (the
//! JSON shape), `metrics` (the per-interval metric history), `page`, `chart` and `comment` (the
//! status page, its charts and the PR status comment), `command` (PR comment commands),
//! `approval` (counting approvals on the approval PR's head), `trigger` (image tag, required
//! checks) and `config` (the per-service section). It deliberately does not know about GitHub,
//! git, Prometheus or Argo CD: the shell maps their results onto [`Input`] and runs each
//! [`Effect`].
//!
//! # States
//!
//! A rollout is `Running(Live)`, `Paused { pause, resume: Live }`, `RollingBack` (the revert is
//! owed) or `Ended(End)`; `Live` is `Assessing -> AwaitingApproval -> Shipping { course, step }`,
//! and a [`Step`] is one weight of the plan with its [`Progress`] (`Committing -> Syncing ->
//! Live`), so a pause never loses a commit in flight. [`Phase`] names what a table shows:
//! `RiskAssessment -> [AwaitingApproval] -> Canary{0,w0} -> ProgressiveRollout -> Canary{1,w1}
//! -> ... -> FullRollout -> Verification -> Complete`, or `RolledBack`, `Paused{reason}`,
//! `Superseded`, `Failed{reason}`. Terminal phases: `Complete`, `RolledBack`, `Superseded`,
//! `Failed` (a `RolledBack` rollout is still live for the shell while its revert is owed).
//!
//! # Transition table
//!
//! Each row is a test in `step::tests` (`table_rows`). "live" = any non-terminal phase. Any input
//! not listed for a phase is rejected with a reason and changes nothing.
//!
//! | # | phase (progress) | input | next phase | effects |
//! |---|---|---|---|---|
//! | 1 | RiskAssessment | Assessed (canary, no approval) | Canary{0,w0} (Committing) | CommitStep, Comment, SetStatus |
//! | 2 | RiskAssessment | Assessed (direct) | FullRollout (Committing 100) | CommitStep, Comment, SetStatus |
//! | 3 | RiskAssessment | Assessed (approval required) | AwaitingApproval | OpenApprovalPr, Comment, SetStatus |
//! | 4 | RiskAssessment | Assessed (score outside 0..=1) | rejected | — |
//! | 5 | AwaitingApproval | Approved { by a reviewer, head } | Canary{0,w0} (Committing via PR) | MergeApprovalPr { head }, Comment, SetStatus |
//! | 5b | AwaitingApproval | Approved naming no head | rejected | — |
//! | 5c | Paused (AwaitingApproval) | Approved (a person merged the approved head) | Paused, resumes Committing via PR | MergeApprovalPr { head }, Comment, SetStatus |
//! | 6 | AwaitingApproval | Approved by the change's author | rejected | — |
//! | 7 | AwaitingApproval | ApprovalRevoked | unchanged | — |
//! | 8 | Canary (Committing w) | Committed{sha, w} | Canary (Syncing) | WaitForSync |
//! | 9 | Canary (Committing w) | Committed{sha, other weight} | rejected | — |
//! | 9b | Canary (Committing w) | MergeBlocked (branch protection refuses the step's PR: PR mode's, or the approval PR) | Paused (`/resume` tries again, the checks' wait restarting) | Comment, SetStatus, Notify |
//! | 9c | Canary (Syncing) | MergeBlocked | rejected (nothing is being merged) | — |
//! | 10 | Canary (Syncing sha) | Synced{sha} | Canary (Live) | — |
//! | 11 | Canary (Syncing) | Synced{other revision} | rejected | — |
//! | 12 | Canary (Syncing) | Tick past the sync deadline | Paused (or RolledBack if `on_sync_failure: rollback`) | Comment, SetStatus, Notify |
//! | 12b | Canary (Syncing) | Tick before the sync deadline | unchanged | WaitForSync (poll again) |
//! | 13 | Canary (Syncing) | SyncFailed | Paused (or RolledBack if `on_sync_failure: rollback`) | Comment, SetStatus, Notify |
//! | 13b | Canary (Syncing) | Overwritten (a later commit changed the step's values) | Paused, whatever `on_sync_failure` says | Comment, SetStatus, Notify |
//! | 13c | Canary (Live) | Overwritten (found before a judgement: a later commit changed the step's values under the analysis) | Paused: someone else's version is not judged | Comment, SetStatus, Notify |
//! | 14 | Canary (Live) | Tick, an interval since the last query | unchanged phase | QueryMetrics |
//! | 15 | Canary (Live) | Tick, not due | unchanged | — |
//! | 16 | Canary (Live) | Judged Continue | unchanged phase, snapshot recorded | — |
//! | 17 | Canary (Live) | Judged Promote, bake not complete | unchanged phase | — |
//! | 18 | Canary{i} (Live) | Judged Promote, bake complete | ProgressiveRollout (Committing w{i+1}) | CommitStep, Comment, SetStatus |
//! | 19 | Canary{last below 100} (Live) | Judged Promote, bake complete | FullRollout (Committing 100) | CommitStep, Comment, SetStatus |
//! | 20 | ProgressiveRollout (Committing w) | Committed{sha, w} | Canary{i+1, w} (Syncing) | WaitForSync |
//! | 21 | Canary (Live) | Judged Rollback{metric, evidence} | RolledBack, revert owed | Revert, Comment, SetStatus, Label `deploy/rolled-back`, HoldService, Notify |
//! | 22 | Canary (Live) | Judged Inconclusive, within `max_inconclusive_intervals` | unchanged phase | — |
//! | 23 | Canary (Live) | Judged Inconclusive past `max_inconclusive_intervals` (or `escalate`) | Paused | Comment, SetStatus, Notify |
//! | 24 | Canary (Live) | MetricsUnavailable | Paused | Comment, SetStatus, Notify |
//! | 25 | Canary (Syncing) | Judged | rejected (no analysis window) | — |
//! | 26 | Canary (Live), last observation Promote | `/promote` | next step (as 18) | CommitStep, Comment, SetStatus |
//! | 27 | Canary (Live), no Promote yet | `/promote` | unchanged phase, bake skipped | — |
//! | 28 | FullRollout (Syncing 100) | Synced | Verification (Live) | Comment, SetStatus |
//! | 29 | Verification (Live) | Judged Promote, verification time served | Complete | Comment, SetStatus, Notify |
//! | 30 | Verification (Live) | Judged Rollback | RolledBack | Revert, ... (as 21) |
//! | 31 | live | `/pause` | Paused | Comment, SetStatus |
//! | 32 | Paused | `/resume` | the phase before the pause (bake restarts) | outstanding effects, Comment, SetStatus |
//! | 33 | Paused | Judged | rejected | — |
//! | 34 | live | `/rollback` | RolledBack (revert owed if anything was committed) | Revert, ... (as 21) |
//! | 35 | live | `/hold` | Paused, held | Comment, SetStatus, HoldService, Notify |
//! | 36 | Paused, held | `/resume` | rejected | — |
//! | 37 | Paused, held | `/hold cancel` | the phase before the hold | ReleaseService, outstanding effects, Comment, SetStatus |
//! | 38 | live, something shipped | Superseded{by} | Superseded, revert owed | Revert, Comment, SetStatus (CloseApprovalPr) |
//! | 38b | Superseded, revert owed | Reverted{sha} | Superseded, revert done | — |
//! | 38c | Superseded, revert owed | EffectFailed Revert permanent | Superseded, revert failed | Comment, Notify critical |
//! | 38d | live, nothing shipped | Superseded{by} | Superseded | Comment, SetStatus |
//! | 38e | Superseded, revert owed | any command | rejected | — |
//! | 39 | RolledBack, revert owed | Reverted{sha} | RolledBack, revert done | — |
//! | 40 | terminal | any command, Superseded, Committed | rejected | — |
//! | 41 | live | EffectFailed transient | unchanged phase, `retry_at` set | — |
//! | 42 | any, `retry_at` passed | Tick | unchanged phase | the outstanding effects again |
//! | 43 | live | EffectFailed CommitStep permanent | Failed | Comment, SetStatus, Notify |
//! | 44 | RolledBack, revert owed | EffectFailed Revert permanent | RolledBack, revert failed | Comment, Notify critical |
//! | 45 | live | `/deploy` | rejected (it starts a new rollout) | — |
//! | 46 | Canary (Committing via PR) | ApprovalOutdated (the head moved) | AwaitingApproval, approval cleared | Comment, SetStatus |
//! | 46b | not merging an approval PR | ApprovalOutdated | rejected | — |
//! | 47 | AwaitingApproval, or merging it | UnapprovedMerge (revert) | Paused, revert owed | Revert, Comment, SetStatus, CloseApprovalPr, Notify critical |
//! | 48 | Paused, revert owed | `/resume`, `/hold cancel` | rejected | — |
//! | 49 | Paused, revert owed | Reverted | Paused (`/resume` reopens an approval PR) | — |
//! | 50 | AwaitingApproval, or merging it | UnapprovedMerge (no revert) | Paused, the merge tracked as the first step | WaitForSync, Comment, SetStatus, CloseApprovalPr, Notify critical |
//! | 51b | any | UnapprovedMerge of its own merge commit | rejected | — |
//! | 52 | ended | UnapprovedMerge (revert) | unchanged | Revert of the merge, CloseApprovalPr, Notify critical |
//! | 53 | ended | UnapprovedMerge (no revert) | unchanged | CloseApprovalPr, Notify critical |
//!
//! Every end of a rollout whose course required an approval (Complete, RolledBack, Superseded,
//! Failed) also asks for `CloseApprovalPr` with the reason. A `Revert` names the recorded commits
//! and the deploy ids whose commits the shell finds on the branch: the rollout's own, and those
//! of the rollouts it superseded (`Rollout::supersedes`), so a rollback returns the environment
//! to the last version that completed. A superseded rollout reverts what it shipped before the
//! newer one starts (`State::Superseding`; admission queues behind it meanwhile).
//!
//! Promotion between environments (staging, then production) is a new rollout per environment:
//! `admission::promotions` says which `Complete` rollouts start the next one, and the shell's
//! pipeline starts them.

pub mod admission;
pub mod approval;
pub mod chart;
pub mod command;
pub mod comment;
pub mod config;
pub mod evidence;
pub mod input;
pub mod lease;
pub mod legacy;
pub mod metrics;
pub mod page;
pub mod plan;
pub mod record;
pub mod step;
pub mod store;
pub mod summary;
/// Fixtures for tests of the rollout and of the shell around it (a fixed epoch, the usual
/// trigger); compiled only for tests and for the `test-support` feature.
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod trigger;
pub mod view;

pub use evidence::Evidence;
pub use input::{Command, Effect, EffectKind, Input, Judgement, Level, Notice, StatusState};
pub use plan::{Plan, PlanError, Weight};
pub use record::{
    Approval, CommitKind, CommitRecord, Course, End, JudgeSpans, Live, MetricPoint, Observation,
    ObservationKind, Pause, Phase, Progress, Release, Revert, Rollback, Rollout, Settings,
    Snapshot, State, Step, StepSpan, SyncFailurePolicy, Target, Trigger,
};
pub use step::{Outcome, Transition, outstanding, step};
