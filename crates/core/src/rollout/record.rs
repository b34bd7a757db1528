//! The rollout record: its phase, the article's deployment context, the plan and settings it
//! follows, and how far the current step has got. This is what the store persists as JSON and
//! what `status` prints.
//!
//! Plain data only: transitions live in `rollout::step`, persistence in `rollout::store`.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::input::Observation;
use super::plan::{Plan, Strategy, Weight};

/// Where a rollout stands. `Complete`, `RolledBack`, `Superseded` and `Failed` are terminal: no
/// input moves a rollout out of them. The others are live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Phase {
    /// Created from a trigger; waiting for the risk assessment to pick a strategy.
    RiskAssessment,
    /// The assessment (or the environment) requires a human: an approval PR is open in the
    /// GitOps repository and nothing is applied until it is approved.
    AwaitingApproval,
    /// Step `step` of the plan (index from 0) at `weight` below 100 %: being committed, synced,
    /// then baked and judged every analysis interval.
    Canary { step: usize, weight: Weight },
    /// A canary step was promoted and the commit for the next canary weight is being made. Once
    /// it is committed the rollout is `Canary` again at the next step.
    ProgressiveRollout,
    /// The commit that sends 100 % of traffic to the new version is being made and synced.
    FullRollout,
    /// 100 % is live; the new version is judged for the verification time before completing.
    Verification,
    /// Terminal: verified at 100 %.
    Complete,
    /// Terminal: the rollout's commits are reverted (or the revert is in flight, see
    /// `Rollout::revert`) and the service is held.
    RolledBack,
    /// Live but stopped: never promotes while here. Left by `/resume` (or `/hold cancel` when
    /// the pause is an emergency hold); `/rollback` still works.
    Paused { reason: String },
    /// Terminal: a newer rollout of the same service and environment replaced this one.
    Superseded,
    /// Terminal: something that cannot be retried went wrong; a human must look.
    Failed { reason: String },
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

/// How far the current step's change has got. Kept apart from `Phase` so a pause does not lose
/// track of a commit or a sync that is still in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Progress {
    /// Nothing applied or in flight (before the first step, or after the rollout ended).
    Idle,
    /// A commit to `weight` was requested (directly, or by merging the approval PR).
    Committing {
        weight: Weight,
        since: DateTime<Utc>,
        /// The change is the approval PR, to be merged rather than committed.
        via_approval_pr: bool,
    },
    /// Committed as `revision`; waiting for Argo CD (or the settle time) to report it synced.
    Syncing {
        weight: Weight,
        revision: String,
        deadline: DateTime<Utc>,
    },
    /// `weight` is live since `since`: the step bakes and is judged every interval.
    Live {
        weight: Weight,
        since: DateTime<Utc>,
        /// When metrics were last requested (for the interval).
        last_query_at: Option<DateTime<Utc>>,
        /// The judge's last word on this step; a step advances only on `Promote`.
        last_observation: Option<ObservationKind>,
        /// `/promote` was given: advance on the next `Promote` without waiting for the bake.
        skip_bake: bool,
    },
}

impl Progress {
    /// The weight applied or being applied.
    pub fn weight(&self) -> Option<Weight> {
        match self {
            Progress::Idle => None,
            Progress::Committing { weight, .. }
            | Progress::Syncing { weight, .. }
            | Progress::Live { weight, .. } => Some(*weight),
        }
    }
}

/// The judge's observation without its payload, remembered per step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservationKind {
    Continue,
    Promote,
    Rollback,
    Hold,
}

/// The latest metrics evidence, shown in the status comment and `deploybot status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub at: DateTime<Utc>,
    pub weight: Weight,
    pub observation: Observation,
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
}

/// A rollback decided for this rollout. While `sha` is `None` and `failed` is `None`, the revert
/// is still owed and the rollout stays live for the shell even though its phase is terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevertRecord {
    pub reason: String,
    pub evidence: String,
    pub requested_at: DateTime<Utc>,
    pub sha: Option<String>,
    pub failed: Option<String>,
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
    /// Consecutive judge `Hold`s tolerated before the rollout pauses.
    pub max_hold_intervals: u32,
    /// How long a commit may take to be reported synced and healthy.
    pub sync_timeout_secs: u64,
    pub on_sync_failure: SyncFailurePolicy,
    /// Wait before re-issuing an effect that failed transiently.
    pub retry_after_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            canary_plan: Plan::default_canary(),
            bake_secs: 600,
            analysis_interval_secs: 60,
            verification_secs: 600,
            max_hold_intervals: 3,
            sync_timeout_secs: 600,
            on_sync_failure: SyncFailurePolicy::Pause,
            retry_after_secs: 30,
        }
    }
}

pub fn secs(n: u64) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(n).unwrap_or(i64::MAX / 1000))
}

/// A version of a service to ship, before any environment: the article's deployment context.
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
    pub namespace: String,
    pub environment: String,
    pub release: Release,
}

/// One rollout of one image to one environment of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub deploy_id: String,
    pub service: String,
    pub namespace: String,
    pub environment: String,
    pub image_tag: String,
    pub previous_tag: String,
    pub changed_files: Vec<String>,
    pub commit_message: String,
    pub author: String,
    pub pull_request: Option<u64>,
    #[serde(default)]
    pub commit_sha: Option<String>,

    pub phase: Phase,
    pub risk_score: Option<f64>,
    pub strategy: Option<Strategy>,
    /// The plan the strategy picked; `None` until assessed.
    pub plan: Option<Plan>,
    pub approval_required: bool,
    pub approved_by: Option<String>,
    pub settings: Settings,

    /// Traffic the new version receives, as last confirmed synced.
    pub canary_weight: Weight,
    pub progress: Progress,
    pub latest: Option<Snapshot>,
    pub commits: Vec<CommitRecord>,
    /// Consecutive `Hold` observations on the current step.
    pub hold_intervals: u32,
    /// Emergency hold (`/hold`): only `/hold cancel` resumes.
    pub held: bool,
    /// The phase a pause returns to.
    pub resume_to: Option<Box<Phase>>,
    pub revert: Option<RevertRecord>,
    /// An effect failed transiently: re-issue outstanding effects on the first tick after this.
    pub retry_at: Option<DateTime<Utc>>,

    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Rollout {
    /// A new rollout in `RiskAssessment`.
    pub fn new(trigger: Trigger, settings: Settings, now: DateTime<Utc>) -> Rollout {
        let r = trigger.release;
        Rollout {
            deploy_id: trigger.deploy_id,
            service: r.service,
            namespace: trigger.namespace,
            environment: trigger.environment,
            image_tag: r.image_tag,
            previous_tag: r.previous_tag,
            changed_files: r.changed_files,
            commit_message: r.commit_message,
            author: r.author,
            pull_request: r.pull_request,
            commit_sha: r.commit_sha,
            phase: Phase::RiskAssessment,
            risk_score: None,
            strategy: None,
            plan: None,
            approval_required: false,
            approved_by: None,
            settings,
            canary_weight: Weight::ZERO,
            progress: Progress::Idle,
            latest: None,
            commits: Vec::new(),
            hold_intervals: 0,
            held: false,
            resume_to: None,
            revert: None,
            retry_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether the shell still has work for this rollout: a live phase, or a revert still owed.
    pub fn is_live(&self) -> bool {
        !self.phase.is_terminal() || self.revert_owed()
    }

    /// The release this rollout ships (to start it in another environment).
    pub fn release(&self) -> Release {
        Release {
            service: self.service.clone(),
            image_tag: self.image_tag.clone(),
            previous_tag: self.previous_tag.clone(),
            changed_files: self.changed_files.clone(),
            commit_message: self.commit_message.clone(),
            author: self.author.clone(),
            pull_request: self.pull_request,
            commit_sha: self.commit_sha.clone(),
        }
    }

    pub fn revert_owed(&self) -> bool {
        self.revert
            .as_ref()
            .is_some_and(|r| r.sha.is_none() && r.failed.is_none())
    }
}
