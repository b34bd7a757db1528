//! The rollout record: one release going to one environment, with the settings it follows and
//! one closed [`State`] whose variants carry exactly the data valid in them. A weight exists once
//! (the step's); a paused rollout holds the live state it resumes to; a rollback whose revert is
//! still owed is live (`RollingBack`), and an ended rollout (`Ended`) can never be live again.
//!
//! [`Phase`] is not stored: it is a view of the state (`Rollout::phase`) for tables, the store's
//! `phase` column, commit statuses and the audit trail, whose names it keeps.
//!
//! Plain data only: transitions live in `rollout::step`, persistence behind `rollout::store`,
//! and records stored by earlier versions are read by `rollout::legacy`.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::plan::{Plan, Weight};
use crate::risk::Strategy;

/// One rollout of one image to one environment of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    pub deploy_id: String,
    /// What is shipped (the service, its image tag, the change behind it).
    pub release: Release,
    /// Where it goes.
    pub target: Target,
    /// The timing and limits it follows, copied when it started.
    pub settings: Settings,
    pub state: State,
    /// Every commit this rollout made, oldest first: what a rollback reverts (with every commit
    /// on the branch carrying its `Deploy-Id`, which the shell finds there).
    pub commits: Vec<CommitRecord>,
    /// The live rollouts this one superseded before they completed, newest first (and those
    /// they had superseded): their commits are still in the environment, so a rollback reverts
    /// them too and the environment returns to the last version that completed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<String>,
    /// The judge's latest word (the status comment, `/rollback`'s evidence).
    pub latest: Option<Snapshot>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The environment a rollout ships to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub environment: String,
    /// Kubernetes namespace (`{{namespace}}` in PromQL).
    pub namespace: String,
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum State {
    /// Moving: assessing, waiting for an approval, or shipping a step.
    Running {
        live: Live,
        /// An effect failed transiently: what is owed is re-issued on the first tick after this.
        retry_at: Option<DateTime<Utc>>,
    },
    /// Stopped by a person or an alert; never promotes while here. `resume` is where `/resume`
    /// (or `/hold cancel`) returns; a commit or sync in flight keeps being tracked in it.
    Paused {
        pause: Pause,
        resume: Live,
        retry_at: Option<DateTime<Utc>>,
    },
    /// A rollback was decided and the revert of this rollout's commits is owed. Live for the
    /// shell until the revert is recorded (or fails).
    RollingBack {
        rollback: Rollback,
        course: Option<Course>,
        /// The new version's traffic when the rollback was decided.
        traffic: Weight,
        retry_at: Option<DateTime<Utc>>,
    },
    /// A newer rollout (`by`) replaces this one, whose steps are reverted first so that the
    /// newer one starts from the last version that completed (a superseded canary is never left
    /// serving, unjudged). Live for the shell until the revert is recorded (or fails).
    Superseding {
        by: String,
        course: Option<Course>,
        /// The new version's traffic when it was superseded.
        traffic: Weight,
        retry_at: Option<DateTime<Utc>>,
    },
    /// Over: no input moves a rollout out of here.
    Ended {
        end: End,
        /// The course it followed; `None` when it ended before it was assessed.
        course: Option<Course>,
        /// The new version's traffic when it ended.
        traffic: Weight,
    },
}

/// A live, unpaused stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case", deny_unknown_fields)]
pub enum Live {
    /// Created from a trigger; waiting for the risk assessment to set the course.
    Assessing,
    /// The course requires a human: an approval PR is open in the GitOps repository and
    /// nothing is applied until it is approved.
    AwaitingApproval { course: Course },
    /// Shipping one step of the plan.
    Shipping { course: Course, step: Step },
}

/// How a rollout ships, as its assessment set it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Course {
    pub risk_score: f64,
    pub strategy: Strategy,
    /// The weights the strategy picked from the service's canary plan.
    pub plan: Plan,
    pub approval: Approval,
    /// The canary strategy the risk asked for, when the environment has no canary workload and
    /// the rollout ships `direct` instead (said in the status comment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked: Option<Strategy>,
}

/// Whether the rollout needs a human's approval, and whose it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Approval {
    NotRequired,
    /// Required; `by` is set once approved, with `head`, the commit of the approval PR the
    /// approvals were counted on (the only one that may be merged).
    Required {
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        head: Option<String>,
    },
}

/// The step being shipped: its weight (the only place a rollout's weight is stored) and how far
/// its change has got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub weight: Weight,
    pub progress: Progress,
}

/// How far the current step's change has got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Progress {
    /// The commit was requested (directly, or by merging the approval PR).
    Committing {
        since: DateTime<Utc>,
        /// The change is the approval PR, to be merged rather than committed.
        via_approval_pr: bool,
    },
    /// Committed as `revision`; waiting for Argo CD (or the settle time) to report it synced.
    Syncing {
        revision: String,
        deadline: DateTime<Utc>,
    },
    /// Live since `since`: the step bakes and is judged every interval.
    Live {
        since: DateTime<Utc>,
        /// When metrics were last requested (for the interval).
        last_query_at: Option<DateTime<Utc>>,
        /// The judge's last word on this step; a step advances only on `Promote`.
        last_observation: Option<ObservationKind>,
        /// `/promote` was given: advance on the next `Promote` without waiting for the bake.
        skip_bake: bool,
        /// Consecutive `Inconclusive` observations on this step.
        inconclusive: u32,
    },
}

/// Why a rollout is paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pause {
    pub reason: String,
    /// An emergency hold (`/hold`): the service is held and only `/hold cancel` resumes.
    pub held: bool,
    /// An unapproved merge of the approval PR is in the GitOps repository and its revert is
    /// owed (re-issued after a restart); nothing resumes before it is done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revert_owed: bool,
}

/// A rollback decided for a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    pub reason: String,
    pub evidence: String,
    pub requested_at: DateTime<Utc>,
}

/// How a rollout ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum End {
    /// Verified at 100 %.
    Complete,
    /// Rolled back, and what became of the revert.
    RolledBack { rollback: Rollback, revert: Revert },
    /// A newer rollout of the same service and environment replaced this one; `revert` says
    /// what became of the revert of its steps (`None` when nothing had reached the repository,
    /// and in records written before supersedes reverted).
    Superseded {
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revert: Option<Revert>,
    },
    /// Something that cannot be retried went wrong; a human must look.
    Failed { reason: String },
}

/// What became of a rolled-back (or superseded) rollout's revert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Revert {
    /// Nothing had reached the GitOps repository.
    NotNeeded,
    /// Reverted as `sha`.
    Done { sha: String },
    /// The revert could not be made; a human must revert.
    Failed { reason: String },
}

/// Where a rollout stands, by name: a view of [`State`] for tables, the store's `phase` column,
/// commit statuses and the audit trail. `Complete`, `RolledBack`, `Superseded` and `Failed` are
/// terminal (a `RolledBack` rollout may still owe its revert: see `Rollout::is_live`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Phase {
    RiskAssessment,
    AwaitingApproval,
    /// Step `step` of the plan (index from 0) at `weight` below 100 %.
    Canary {
        step: usize,
        weight: Weight,
    },
    /// A canary step was promoted and the commit for the next canary weight is being made.
    ProgressiveRollout,
    /// The commit that sends 100 % of traffic to the new version is being made and synced.
    FullRollout,
    /// 100 % is live and judged for the verification time.
    Verification,
    Complete,
    RolledBack,
    Paused {
        reason: String,
    },
    Superseded,
    Failed {
        reason: String,
    },
}

impl Phase {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Phase::Complete | Phase::RolledBack | Phase::Superseded | Phase::Failed { .. }
        )
    }

    /// A short stable name for tables and the store's `phase` column.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::RiskAssessment => "risk_assessment",
            Phase::AwaitingApproval => "awaiting_approval",
            Phase::Canary { .. } => "canary",
            Phase::ProgressiveRollout => "progressive_rollout",
            Phase::FullRollout => "full_rollout",
            Phase::Verification => "verification",
            Phase::Complete => "complete",
            Phase::RolledBack => "rolled_back",
            Phase::Paused { .. } => "paused",
            Phase::Superseded => "superseded",
            Phase::Failed { .. } => "failed",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Phase::Canary { step, weight } => write!(f, "canary (step {}, {weight})", step + 1),
            Phase::Paused { reason } => write!(f, "paused ({reason})"),
            Phase::Failed { reason } => write!(f, "failed ({reason})"),
            other => f.write_str(other.name()),
        }
    }
}

/// The canary judge's word on one analysis interval, in the rollout's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observation {
    /// Nothing conclusive yet; keep baking.
    Continue,
    /// The canary is at least as good as the baseline.
    Promote,
    /// The canary is worse (or a guardrail tripped): revert now.
    Rollback { metric: String, evidence: String },
    /// The judge cannot tell (too little data); `escalate` asks to pause at once.
    // Stored audit rows written before the rename say `hold`.
    #[serde(alias = "hold")]
    Inconclusive { reason: String, escalate: bool },
}

/// The judge's observation without its payload, remembered per step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservationKind {
    Continue,
    Promote,
    Rollback,
    // Records written before the rename say `hold`.
    #[serde(alias = "hold")]
    Inconclusive,
}

impl ObservationKind {
    pub fn of(o: &Observation) -> ObservationKind {
        match o {
            Observation::Continue => ObservationKind::Continue,
            Observation::Promote => ObservationKind::Promote,
            Observation::Rollback { .. } => ObservationKind::Rollback,
            Observation::Inconclusive { .. } => ObservationKind::Inconclusive,
        }
    }
}

/// The latest metrics evidence, shown in the status comment and `deploybot status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub at: DateTime<Utc>,
    pub weight: Weight,
    pub observation: Observation,
    /// What the canary judge's latest observation rests on, accumulated over the rollout's
    /// steps; the verification at 100 % (no baseline left) keeps the canary steps' evidence.
    /// None before the canary judge has spoken, and in records stored before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<super::evidence::Evidence>,
}

/// One analysis interval of one metric, canary against baseline: the history the status page and
/// the PR comment draw. `None` means no sample (a gap, no traffic), never zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// End of the interval.
    pub at: DateTime<Utc>,
    /// Canary traffic while the interval was measured.
    pub weight: Weight,
    /// `error_rate` (a fraction, 0..1), `p99_latency_seconds`, ...
    pub metric: String,
    pub canary: Option<f64>,
    pub baseline: Option<f64>,
}

/// A commit this rollout made in the GitOps repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub sha: String,
    pub weight: Weight,
    pub at: DateTime<Utc>,
    /// What kind of commit it is (a step, or a merge of the approval PR).
    #[serde(default, skip_serializing_if = "CommitKind::is_step")]
    pub kind: CommitKind,
}

/// What a rollout's commit is, which says how it is reverted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitKind {
    /// The bot's own commit of a step (or the branch tip the step found already there): the
    /// bot reverts only its own commits.
    #[default]
    Step,
    /// The merge of the rollout's approval PR at the approved head: reverted as a whole against
    /// its first parent, whoever wrote what it merged (the approvals covered all of it).
    ApprovedMerge,
    /// A person's merge of the approval PR that no approval covered: reverted as a whole too.
    UnapprovedMerge,
}

impl CommitKind {
    pub fn is_step(&self) -> bool {
        *self == CommitKind::Step
    }
}

/// What to do when a commit is not reported synced and healthy by its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyncFailurePolicy {
    #[default]
    Pause,
    Rollback,
}

/// The timing and limits a rollout follows; copied into the record when it starts so a config
/// change does not alter a rollout already under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The service's canary plan; a strategy picks its tail (see `Plan::for_strategy`).
    pub canary_plan: Plan,
    /// Minimum time each canary step is live before it may be promoted.
    pub bake_secs: u64,
    /// How often a live step is judged.
    pub analysis_interval_secs: u64,
    /// How long 100 % is judged before the rollout completes.
    pub verification_secs: u64,
    /// Consecutive inconclusive judgements tolerated before the rollout pauses.
    // Records written before the rename say `max_hold_intervals`.
    #[serde(alias = "max_hold_intervals")]
    pub max_inconclusive_intervals: u32,
    /// How long a commit may take to be reported synced and healthy.
    pub sync_timeout_secs: u64,
    pub on_sync_failure: SyncFailurePolicy,
    /// Wait before re-issuing an effect that failed transiently.
    pub retry_after_secs: u64,
    /// A replica-ratio canary's pod count: the plan's weights become the shares whole pods can
    /// give (5 % of 10 pods is one pod, 10 %). `None`: traffic weights are exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<u32>,
    /// No target deploys a canary workload (`track: canary`): a canary step would have nothing
    /// to send traffic to, so every release ships `direct`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_canary: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            canary_plan: Plan::default_canary(),
            bake_secs: 600,
            analysis_interval_secs: 60,
            verification_secs: 600,
            max_inconclusive_intervals: 3,
            sync_timeout_secs: 600,
            on_sync_failure: SyncFailurePolicy::Pause,
            retry_after_secs: 30,
            pods: None,
            no_canary: false,
        }
    }
}

/// `n` seconds as a `TimeDelta`, saturating rather than overflowing.
pub fn secs(n: u64) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(n).unwrap_or(i64::MAX / 1000))
}

/// A version of a service to ship, before any environment: the deployment context of the article
/// deploybot started from (docs/decisions.md names it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub service: String,
    pub image_tag: String,
    /// The tag running before, when known (shown in comments; rollback uses git, not this).
    pub previous_tag: String,
    pub changed_files: Vec<String>,
    pub commit_message: String,
    pub author: String,
    /// The app pull request the status comment and labels go on, when there is one.
    pub pull_request: Option<u64>,
    /// The app commit being deployed (the merge commit), which carries the commit status.
    #[serde(default)]
    pub commit_sha: Option<String>,
}

/// What starts a rollout: a release, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub deploy_id: String,
    pub target: Target,
    pub release: Release,
}

impl Live {
    /// The course, once assessed.
    pub fn course(&self) -> Option<&Course> {
        match self {
            Live::Assessing => None,
            Live::AwaitingApproval { course } | Live::Shipping { course, .. } => Some(course),
        }
    }

    fn phase(&self) -> Phase {
        match self {
            Live::Assessing => Phase::RiskAssessment,
            Live::AwaitingApproval { .. } => Phase::AwaitingApproval,
            Live::Shipping { course, step } => {
                let index = course.plan.position(step.weight).unwrap_or(0);
                let live = matches!(step.progress, Progress::Live { .. });
                let committing = matches!(step.progress, Progress::Committing { .. });
                if step.weight.is_full() {
                    if live {
                        Phase::Verification
                    } else {
                        Phase::FullRollout
                    }
                } else if committing && index > 0 {
                    Phase::ProgressiveRollout
                } else {
                    Phase::Canary {
                        step: index,
                        weight: step.weight,
                    }
                }
            }
        }
    }

    /// The new version's share of traffic: the step's weight once it is live, the previous
    /// step's while the next one is committed and synced.
    fn traffic(&self) -> Weight {
        match self {
            Live::Assessing | Live::AwaitingApproval { .. } => Weight::ZERO,
            Live::Shipping { step, .. } if matches!(step.progress, Progress::Live { .. }) => {
                step.weight
            }
            Live::Shipping { course, step } => course
                .plan
                .position(step.weight)
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| course.plan.get(i))
                .unwrap_or(Weight::ZERO),
        }
    }
}

/// A canary step this rollout has left behind, as the judge re-reads its evidence: the weight
/// committed and the time it ran, from its commit to the next step's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepSpan {
    pub weight: Weight,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Where the canary judge's evidence for the current step comes from (`rollout::record` keeps
/// it so that it survives a restart: the commits are stored, Prometheus keeps the metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeSpans {
    /// The canary steps before the current one, oldest first.
    pub earlier: Vec<StepSpan>,
    /// The first step's commit: the stable version alone served everything before it.
    pub rollout_start: Option<DateTime<Utc>>,
    /// The plan's canary steps below 100 %.
    pub planned_steps: usize,
    /// Promoting the current step sends everyone to the new version.
    pub last_step: bool,
}

impl Rollout {
    /// The spans the canary judge reads for the current step (see [`JudgeSpans`]). The
    /// within-interval comparison conditions on each interval's observed split, so an earlier
    /// span's minutes while its commit was still syncing count without bias; the
    /// sample-ratio check looks at the current step only.
    pub fn judge_spans(&self) -> JudgeSpans {
        let current = self.step().map(|s| s.weight);
        let plan = self.course().map(|c| &c.plan);
        let canary_weights: Vec<Weight> = plan
            .map(|p| {
                p.weights()
                    .iter()
                    .copied()
                    .filter(|w| !w.is_full())
                    .collect()
            })
            .unwrap_or_default();
        let mut earlier: Vec<StepSpan> = Vec::new();
        if let Some(current) = current {
            for pair in self.commits.windows(2) {
                let (c, next) = (&pair[0], &pair[1]);
                if c.weight >= current {
                    break;
                }
                if c.weight == Weight::ZERO {
                    continue;
                }
                match earlier.last_mut() {
                    // A step committed twice (a retried commit) is one span.
                    Some(last) if last.weight == c.weight => last.end = next.at,
                    _ => earlier.push(StepSpan {
                        weight: c.weight,
                        start: c.at,
                        end: next.at,
                    }),
                }
            }
        }
        JudgeSpans {
            earlier,
            rollout_start: self.commits.first().map(|c| c.at),
            planned_steps: canary_weights.len().max(1),
            last_step: current.is_some_and(|w| canary_weights.last() == Some(&w)),
        }
    }
}

impl Rollout {
    /// A new rollout, waiting for its assessment.
    pub fn new(trigger: Trigger, settings: Settings, now: DateTime<Utc>) -> Rollout {
        Rollout {
            deploy_id: trigger.deploy_id,
            release: trigger.release,
            target: trigger.target,
            settings,
            state: State::Running {
                live: Live::Assessing,
                retry_at: None,
            },
            commits: Vec::new(),
            supersedes: Vec::new(),
            latest: None,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn service(&self) -> &str {
        &self.release.service
    }

    pub fn environment(&self) -> &str {
        &self.target.environment
    }

    pub fn image_tag(&self) -> &str {
        &self.release.image_tag
    }

    /// Where it stands, by name.
    pub fn phase(&self) -> Phase {
        match &self.state {
            State::Running { live, .. } => live.phase(),
            State::Paused { pause, .. } => Phase::Paused {
                reason: pause.reason.clone(),
            },
            State::RollingBack { .. } => Phase::RolledBack,
            State::Superseding { .. } => Phase::Superseded,
            State::Ended { end, .. } => match end {
                End::Complete => Phase::Complete,
                End::RolledBack { .. } => Phase::RolledBack,
                End::Superseded { .. } => Phase::Superseded,
                End::Failed { reason } => Phase::Failed {
                    reason: reason.clone(),
                },
            },
        }
    }

    /// The live stage: the running one, or the one a pause returns to.
    pub fn live(&self) -> Option<&Live> {
        match &self.state {
            State::Running { live, .. } | State::Paused { resume: live, .. } => Some(live),
            State::RollingBack { .. } | State::Superseding { .. } | State::Ended { .. } => None,
        }
    }

    /// The course the assessment set, once assessed.
    pub fn course(&self) -> Option<&Course> {
        match &self.state {
            State::Running { live, .. } | State::Paused { resume: live, .. } => live.course(),
            State::RollingBack { course, .. }
            | State::Superseding { course, .. }
            | State::Ended { course, .. } => course.as_ref(),
        }
    }

    /// The step being shipped (also while paused).
    pub fn step(&self) -> Option<&Step> {
        match self.live() {
            Some(Live::Shipping { step, .. }) => Some(step),
            _ => None,
        }
    }

    /// The new version's share of traffic as last confirmed live.
    pub fn traffic(&self) -> Weight {
        match &self.state {
            State::Running { live, .. } | State::Paused { resume: live, .. } => live.traffic(),
            State::RollingBack { traffic, .. }
            | State::Superseding { traffic, .. }
            | State::Ended { traffic, .. } => *traffic,
        }
    }

    /// The pause in force, if paused.
    pub fn pause(&self) -> Option<&Pause> {
        match &self.state {
            State::Paused { pause, .. } => Some(pause),
            _ => None,
        }
    }

    /// When owed effects are re-issued after a transient failure, if one is pending.
    pub fn retry_at(&self) -> Option<DateTime<Utc>> {
        match &self.state {
            State::Running { retry_at, .. }
            | State::Paused { retry_at, .. }
            | State::RollingBack { retry_at, .. }
            | State::Superseding { retry_at, .. } => *retry_at,
            State::Ended { .. } => None,
        }
    }

    /// The rollback decided for this rollout, and its revert (`None` while still owed).
    pub fn rollback(&self) -> Option<(&Rollback, Option<&Revert>)> {
        match &self.state {
            State::RollingBack { rollback, .. } => Some((rollback, None)),
            State::Ended {
                end: End::RolledBack { rollback, revert },
                ..
            } => Some((rollback, Some(revert))),
            _ => None,
        }
    }

    /// Whether the shell still has work for this rollout: running, paused, or a revert owed.
    pub fn is_live(&self) -> bool {
        !matches!(self.state, State::Ended { .. })
    }

    /// The revert commit, once the rollback is in the GitOps repository.
    pub fn reverted_as(&self) -> Option<&str> {
        match self.rollback()? {
            (_, Some(Revert::Done { sha })) => Some(sha),
            _ => None,
        }
    }

    /// Who approved it, when an approval was required and given.
    pub fn approved_by(&self) -> Option<&str> {
        match &self.course()?.approval {
            Approval::Required { by, .. } => by.as_deref(),
            Approval::NotRequired => None,
        }
    }

    /// Whether the rollout waits on its approval PR (paused or not): for the approvals, or for
    /// the merge of the approved head. Only then can a merge of that PR be its approval.
    pub fn awaits_approval_pr(&self) -> bool {
        match self.live() {
            Some(Live::AwaitingApproval { .. }) => true,
            Some(Live::Shipping { step, .. }) => matches!(
                step.progress,
                Progress::Committing {
                    via_approval_pr: true,
                    ..
                }
            ),
            Some(Live::Assessing) | None => false,
        }
    }

    /// A rollback's (or a supersede's) revert is still owed.
    pub fn revert_owed(&self) -> bool {
        matches!(
            self.state,
            State::RollingBack { .. } | State::Superseding { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::testing::{t, trigger};
    use crate::rollout::{Input, Observation, step};

    /// Feeds `inputs` (at their times) to a new rollout.
    fn drive(inputs: Vec<(i64, Input)>) -> Rollout {
        let mut r = Rollout::new(
            trigger("d-1", "checkout", "production"),
            Settings::default(),
            t(0),
        );
        for (at, input) in inputs {
            r = step(&r, input, t(at)).next;
        }
        r
    }

    #[test]
    fn judge_spans_name_the_steps_left_and_the_last_one() {
        let w = |p| Weight::new(p).unwrap();
        let unassessed = drive(vec![]);
        let spans = unassessed.judge_spans();
        assert!(spans.earlier.is_empty() && spans.rollout_start.is_none() && !spans.last_step);

        // canary_25: 25 -> 50 -> 100, live at 50 after the 25 % step
        let r = drive(vec![
            (
                0,
                Input::Assessed {
                    risk_score: 0.5,
                    strategy: crate::risk::Strategy::Canary25,
                    approval_required: false,
                },
            ),
            (
                1,
                Input::Committed {
                    sha: "a1".into(),
                    weight: w(25),
                },
            ),
            (
                2,
                Input::Synced {
                    revision: "a1".into(),
                },
            ),
            (700, Input::judged(Observation::Promote)),
            (
                701,
                Input::Committed {
                    sha: "a2".into(),
                    weight: w(50),
                },
            ),
            (
                702,
                Input::Synced {
                    revision: "a2".into(),
                },
            ),
        ]);
        assert_eq!(r.step().map(|s| s.weight), Some(w(50)), "{:?}", r.state);
        let spans = r.judge_spans();
        assert_eq!(
            spans.earlier,
            vec![StepSpan {
                weight: w(25),
                start: t(1),
                end: t(701),
            }]
        );
        assert_eq!(spans.rollout_start, Some(t(1)));
        assert_eq!(spans.planned_steps, 2);
        assert!(
            spans.last_step,
            "50 % is canary_25's last step before 100 %"
        );
    }
}
