//! What happens to a rollout (`Input`) and what it asks the shell to do (`Effect`), as closed
//! enums. The shell maps the other concepts' types onto these (the risk assessment onto
//! `Input::Assessed`, the canary judge's verdict onto `Observation`, the GitOps writer's results
//! onto `Committed` / `Reverted` / `EffectFailed`).
//!
//! No rendering here: comments and notifications carry a `Notice`, which the shell renders
//! through `templates/`, so user-visible text never lives in the state machine.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::evidence::Evidence;
use super::plan::Weight;
use super::record::{Observation, Phase};
use crate::risk::Strategy;

/// A PR-comment command (or its CLI equivalent). Who may give it is checked by the shell before
/// the command reaches the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// `/deploy`: starts a new rollout; meaningless for one already running.
    Deploy,
    /// `/promote`: skip the remaining bake of the current step.
    Promote,
    Pause,
    Resume,
    Rollback,
    /// `/hold`: emergency stop; only `/hold cancel` lifts it.
    Hold,
    HoldCancel,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Deploy => "/deploy",
            Command::Promote => "/promote",
            Command::Pause => "/pause",
            Command::Resume => "/resume",
            Command::Rollback => "/rollback",
            Command::Hold => "/hold",
            Command::HoldCancel => "/hold cancel",
        }
    }
}

/// Everything that can happen to a rollout. Tagged `type` (not `kind`) because `Judged` wraps an
/// `Observation`, which is tagged `kind` itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Input {
    /// The risk assessment finished.
    Assessed {
        risk_score: f64,
        strategy: Strategy,
        approval_required: bool,
    },
    /// The approval PR has the required approvals (counted by the shell) on `head`, the commit
    /// they approved: only that commit is merged. (`None` only in audit rows written before
    /// approvals named their head; such an approval is refused.)
    Approved {
        by: String,
        #[serde(default)]
        head: Option<String>,
    },
    ApprovalRevoked,
    /// The approval PR's head is no longer the commit that was approved (a push after the
    /// count): nothing was merged, and the approvals are counted again on the new head.
    ApprovalOutdated {
        reason: String,
    },
    /// A person merged the approval PR (as `merge_sha`) although the approvals on its merged
    /// head do not satisfy the rule (`reason` says what was missing), or after its rollout
    /// ended: an out-of-band change of the environment. `revert`: the environment's
    /// `revert_unapproved_merges`.
    UnapprovedMerge {
        by: String,
        merge_sha: String,
        reason: String,
        revert: bool,
    },
    /// The commit for `weight` is in the GitOps repository as `sha`.
    Committed {
        sha: String,
        weight: Weight,
    },
    /// Argo CD (or the settle time) reports `revision` synced and healthy.
    Synced {
        revision: String,
    },
    SyncFailed {
        reason: String,
    },
    /// The revision Argo CD reports synced contains the step's commit, but a later commit
    /// changed a value the step wrote (`reason` names the file and the value): what runs is
    /// someone else's version, which is neither judged nor rolled back over.
    Overwritten {
        reason: String,
    },
    /// The step's pull request (PR mode's, or the approval PR) cannot be merged because branch
    /// protection asks for what the bot cannot give (a review, a required check that did not
    /// pass within `gitops.checks_timeout`, a person's commit on the bot branch); `reason` names
    /// the rule as GitHub worded it. Never bypassed: the rollout pauses until a person acts.
    MergeBlocked {
        reason: String,
    },
    Judged(Judgement),
    /// Metrics could not be read after the shell's retries.
    MetricsUnavailable {
        reason: String,
    },
    /// Time passed; the shell sends these periodically. Never rejected.
    Tick,
    Command {
        cmd: Command,
        by: String,
    },
    Superseded {
        by_deploy_id: String,
    },
    /// The rollback revert is in the GitOps repository as `sha`.
    Reverted {
        sha: String,
    },
    EffectFailed {
        effect: EffectKind,
        reason: String,
        /// Transient failures are retried after `retry_after_secs`; permanent ones stop.
        transient: bool,
    },
}

/// The judge's word on one interval, with the evidence behind it when the canary judge gave
/// one (stored flat: `{"type": "judged", "kind": "continue", "accumulated": {...}}`, a key apart
/// from a rollback's own `evidence` line; rows written before it was kept have none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    #[serde(flatten)]
    pub observation: Observation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accumulated: Option<Evidence>,
}

impl From<Observation> for Judgement {
    fn from(observation: Observation) -> Judgement {
        Judgement {
            observation,
            accumulated: None,
        }
    }
}

impl Input {
    /// The judge's word without evidence (a verification, a guardrail, a test).
    pub fn judged(observation: Observation) -> Input {
        Input::Judged(observation.into())
    }

    /// Short name for the audit trail.
    pub fn name(&self) -> String {
        match self {
            Input::Assessed { .. } => "assessed".into(),
            Input::Approved { .. } => "approved".into(),
            Input::ApprovalRevoked => "approval_revoked".into(),
            Input::ApprovalOutdated { .. } => "approval_outdated".into(),
            Input::UnapprovedMerge { .. } => "unapproved_merge".into(),
            Input::Committed { .. } => "committed".into(),
            Input::Synced { .. } => "synced".into(),
            Input::SyncFailed { .. } => "sync_failed".into(),
            Input::Overwritten { .. } => "overwritten".into(),
            Input::MergeBlocked { .. } => "merge_blocked".into(),
            Input::Judged(j) => format!("judged:{}", observation_name(&j.observation)),
            Input::MetricsUnavailable { .. } => "metrics_unavailable".into(),
            Input::Tick => "tick".into(),
            Input::Command { cmd, .. } => cmd.as_str().into(),
            Input::Superseded { .. } => "superseded".into(),
            Input::Reverted { .. } => "reverted".into(),
            Input::EffectFailed { .. } => "effect_failed".into(),
        }
    }

    /// Who or what caused this input, for the audit trail.
    pub fn actor(&self) -> String {
        match self {
            Input::Approved { by, .. }
            | Input::Command { by, .. }
            | Input::UnapprovedMerge { by, .. } => format!("@{by}"),
            Input::Assessed { .. } => "risk".into(),
            Input::Judged(_) | Input::MetricsUnavailable { .. } => "judge".into(),
            Input::Committed { .. } | Input::Reverted { .. } | Input::MergeBlocked { .. } => {
                "gitops".into()
            }
            Input::Synced { .. } | Input::SyncFailed { .. } | Input::Overwritten { .. } => {
                "argocd".into()
            }
            Input::Tick => "clock".into(),
            Input::Superseded { by_deploy_id } => format!("rollout {by_deploy_id}"),
            Input::ApprovalRevoked | Input::ApprovalOutdated { .. } => "github".into(),
            Input::EffectFailed { .. } => "shell".into(),
        }
    }
}

fn observation_name(o: &Observation) -> &'static str {
    match o {
        Observation::Continue => "continue",
        Observation::Promote => "promote",
        Observation::Rollback { .. } => "rollback",
        Observation::Inconclusive { .. } => "inconclusive",
    }
}

/// Severity of a notification (log level, alert routing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Info,
    Warn,
    Critical,
}

impl Level {
    /// Its serialized name (`info`, `warn`, `critical`), e.g. as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Critical => "critical",
        }
    }
}

/// The commit status deploybot sets on the app commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

/// What a comment or notification says, as data; rendered by the shell from `templates/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    AwaitingApproval,
    StepStarted {
        weight: Weight,
    },
    Promoted {
        from: Weight,
        to: Weight,
    },
    Verifying,
    Completed,
    Paused {
        reason: String,
    },
    Resumed {
        by: String,
    },
    Held {
        by: String,
    },
    HoldReleased {
        by: String,
    },
    RolledBack {
        reason: String,
        evidence: String,
    },
    RevertFailed {
        reason: String,
    },
    Superseded {
        by_deploy_id: String,
    },
    Failed {
        reason: String,
    },
    /// The approved head moved before the merge; the approvals are counted again.
    ApprovalOutdated {
        reason: String,
    },
    /// The approval PR was merged without the approvals (or after the rollout ended).
    UnapprovedMerge {
        by: String,
        reason: String,
        reverted: bool,
    },
}

impl Notice {
    /// A stable name: the key of its text in `templates/rollout/notices.txt`, a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::AwaitingApproval => "awaiting_approval",
            Notice::StepStarted { .. } => "step_started",
            Notice::Promoted { .. } => "promoted",
            Notice::Verifying => "verifying",
            Notice::Completed => "completed",
            Notice::Paused { .. } => "paused",
            Notice::Resumed { .. } => "resumed",
            Notice::Held { .. } => "held",
            Notice::HoldReleased { .. } => "hold_released",
            Notice::RolledBack { .. } => "rolled_back",
            Notice::RevertFailed { .. } => "revert_failed",
            Notice::Superseded { .. } => "superseded",
            Notice::Failed { .. } => "failed",
            Notice::ApprovalOutdated { .. } => "approval_outdated",
            Notice::UnapprovedMerge { reverted: true, .. } => "unapproved_merge",
            Notice::UnapprovedMerge {
                reverted: false, ..
            } => "unapproved_merge_kept",
        }
    }
}

/// Work the shell does for a rollout. Every effect must be idempotent: the shell may run one
/// twice after a crash (no commit when the file already says so, a comment found by its marker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    /// Commit the image at `weight` (100 = the whole service on the new image).
    CommitStep {
        weight: Weight,
        image_tag: String,
    },
    /// Open the approval PR carrying the first step's change.
    OpenApprovalPr {
        weight: Weight,
        image_tag: String,
    },
    /// Merge the approved PR at `head`, the commit the approvals were counted on, and nothing
    /// else; its merge commit comes back as `Committed`, a moved head as `ApprovalOutdated`, a
    /// person's merge of another head as `UnapprovedMerge`. (`None` only in audit rows written
    /// before approvals named their head.)
    MergeApprovalPr {
        #[serde(default)]
        head: Option<String>,
    },
    /// Revert, by direct push with the reason and evidence in each commit message and newest
    /// first as the branch has them: the commits listed, every bot commit on the branch whose
    /// `Deploy-Id` is in `find` (this rollout's own and those of the rollouts it superseded, so a
    /// commit the record missed is reverted too), and the `merges` of its approval PR (as a
    /// whole, against their first parent, whoever wrote what they merged).
    Revert {
        deploy_id: String,
        commits: Vec<String>,
        reason: String,
        evidence: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        find: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        merges: Vec<String>,
    },
    /// Close the rollout's approval PR if it is still open, saying why on it, and delete its bot
    /// branch: a PR left open could ship stale manifests when merged later.
    CloseApprovalPr {
        why: Closing,
    },
    /// Update the status comment on the app PR.
    Comment {
        notice: Notice,
    },
    Label {
        name: String,
    },
    SetStatus {
        state: StatusState,
        phase: Phase,
    },
    /// Read the last `window_secs` of metrics and judge them; answered by `Judged` or
    /// `MetricsUnavailable`.
    QueryMetrics {
        window_secs: u64,
    },
    WaitForSync {
        revision: String,
        deadline: DateTime<Utc>,
    },
    Notify {
        level: Level,
        notice: Notice,
    },
    /// Keep the service from being deployed again until a human releases it.
    HoldService {
        reason: String,
    },
    ReleaseService,
}

/// Why an approval PR is closed: its rollout ended (or the PR was merged without the approvals).
/// The comment on the PR is rendered from it (`templates/rollout/approval-pr-closed.txt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Closing {
    Completed,
    RolledBack,
    Superseded {
        by_deploy_id: String,
    },
    Failed,
    /// Merged by a person without the approvals; `reverted` says whether deploybot reverts it.
    MergedUnapproved {
        by: String,
        reverted: bool,
    },
}

impl Closing {
    /// A stable name: the key of its text in `templates/rollout/approval-pr-closed.txt`.
    pub fn kind(&self) -> &'static str {
        match self {
            Closing::Completed => "completed",
            Closing::RolledBack => "rolled_back",
            Closing::Superseded { .. } => "superseded",
            Closing::Failed => "failed",
            Closing::MergedUnapproved { reverted: true, .. } => "merged_unapproved",
            Closing::MergedUnapproved {
                reverted: false, ..
            } => "merged_unapproved_kept",
        }
    }
}

/// The kind of an effect, for reporting failures without echoing the whole effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectKind {
    CommitStep,
    OpenApprovalPr,
    MergeApprovalPr,
    Revert,
    CloseApprovalPr,
    Comment,
    Label,
    SetStatus,
    QueryMetrics,
    WaitForSync,
    Notify,
    HoldService,
    ReleaseService,
}

impl Effect {
    pub fn kind(&self) -> EffectKind {
        match self {
            Effect::CommitStep { .. } => EffectKind::CommitStep,
            Effect::OpenApprovalPr { .. } => EffectKind::OpenApprovalPr,
            Effect::MergeApprovalPr { .. } => EffectKind::MergeApprovalPr,
            Effect::Revert { .. } => EffectKind::Revert,
            Effect::CloseApprovalPr { .. } => EffectKind::CloseApprovalPr,
            Effect::Comment { .. } => EffectKind::Comment,
            Effect::Label { .. } => EffectKind::Label,
            Effect::SetStatus { .. } => EffectKind::SetStatus,
            Effect::QueryMetrics { .. } => EffectKind::QueryMetrics,
            Effect::WaitForSync { .. } => EffectKind::WaitForSync,
            Effect::Notify { .. } => EffectKind::Notify,
            Effect::HoldService { .. } => EffectKind::HoldService,
            Effect::ReleaseService => EffectKind::ReleaseService,
        }
    }
}
