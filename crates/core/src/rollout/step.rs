//! The transition function: `step(rollout, input, now) -> Transition`. Pure: no I/O, no clock
//! (time is the `now` argument), no randomness. The transition table is in the module docs of
//! `crate::rollout`, and each of its rows is a test below.
//!
//! An input that makes no sense in the current state is rejected with a reason and changes
//! nothing; nothing here panics on input.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::evidence::Evidence;
use super::input::{Closing, Command, Effect, EffectKind, Input, Level, Notice, StatusState};
use super::plan::{Plan, Weight};
use super::record::{
    Approval, CommitKind, CommitRecord, Course, End, Live, Observation, ObservationKind, Pause,
    Progress, Revert, Rollback, Rollout, Snapshot, State, Step, SyncFailurePolicy, secs,
};
use crate::risk::Strategy;

/// The label put on the app PR when a rollout is rolled back.
pub const ROLLED_BACK_LABEL: &str = "deploy/rolled-back";

/// Why a pause over an unapproved merge cannot be lifted yet.
const REVERT_FIRST: &str =
    "the unapproved merge of the approval PR is still being reverted; resume once it is";

/// What became of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The record changed or effects were asked for.
    Applied,
    /// Accepted, nothing to do (e.g. a tick with nothing due).
    Unchanged,
    /// Not valid in this state; `note` says why. The record is unchanged.
    Rejected,
}

impl Outcome {
    /// Its stored name (`applied`, `unchanged`, `rejected`), as the audit trail keeps it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Rejected => "rejected",
        }
    }
}

/// The result of one step: the next record, the effects the shell should run, and a one-line
/// explanation for the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub next: Rollout,
    pub effects: Vec<Effect>,
    pub outcome: Outcome,
    pub note: String,
    /// When the input was applied (the `now` given to `step`), for the audit trail.
    pub at: DateTime<Utc>,
}

/// Applies `input` to `rollout` at time `now`.
pub fn step(rollout: &Rollout, input: Input, now: DateTime<Utc>) -> Transition {
    let mut m = Machine {
        r: rollout.clone(),
        effects: Vec::new(),
        now,
    };
    match m.apply(input) {
        Ok(note) => {
            // A tick that only polls the sync changes nothing worth an audit row.
            let polls_only = m
                .effects
                .iter()
                .all(|e| matches!(e, Effect::WaitForSync { .. }));
            let outcome = if m.r == *rollout && polls_only {
                Outcome::Unchanged
            } else {
                m.r.updated_at = now;
                Outcome::Applied
            };
            Transition {
                next: m.r,
                effects: m.effects,
                outcome,
                note,
                at: now,
            }
        }
        Err(reason) => Transition {
            next: rollout.clone(),
            effects: Vec::new(),
            outcome: Outcome::Rejected,
            note: reason,
            at: now,
        },
    }
}

/// The effects a record says are still owed: what the shell re-issues after a restart or a
/// transient failure. Re-issuing is safe because every effect is idempotent.
pub fn outstanding(r: &Rollout) -> Vec<Effect> {
    match &r.state {
        State::RollingBack { rollback, .. } => vec![
            // The label and the hold matter as much as the revert: until the revert is
            // recorded, a restart re-issues all three.
            revert_effect(r, &rollback.reason, &rollback.evidence),
            Effect::Label {
                name: ROLLED_BACK_LABEL.into(),
            },
            Effect::HoldService {
                reason: rollback.reason.clone(),
            },
        ],
        State::Superseding { by, .. } => vec![revert_effect(r, &superseded_reason(by), "")],
        State::Ended { .. } => Vec::new(),
        // An unapproved merge is in the environment: its revert is owed before anything else.
        State::Paused { pause, .. } if pause.revert_owed => {
            vec![revert_effect(r, &pause.reason, "")]
        }
        // An approval PR is (re)opened only while waiting for it, not while paused.
        State::Running {
            live: Live::AwaitingApproval { course },
            ..
        } => vec![Effect::OpenApprovalPr {
            weight: first_weight(&course.plan),
            image_tag: r.release.image_tag.clone(),
        }],
        State::Running { live, .. } | State::Paused { resume: live, .. } => match live {
            Live::Shipping { course, step } => match &step.progress {
                Progress::Committing {
                    via_approval_pr: true,
                    ..
                } => vec![Effect::MergeApprovalPr {
                    head: approved_head(course),
                }],
                Progress::Committing { .. } => vec![Effect::CommitStep {
                    weight: step.weight,
                    image_tag: r.release.image_tag.clone(),
                }],
                Progress::Syncing { revision, deadline } => vec![Effect::WaitForSync {
                    revision: revision.clone(),
                    deadline: *deadline,
                }],
                Progress::Live { .. } => Vec::new(),
            },
            Live::Assessing | Live::AwaitingApproval { .. } => Vec::new(),
        },
    }
}

fn first_weight(plan: &Plan) -> Weight {
    plan.get(0).unwrap_or(Weight::FULL)
}

/// The approval PR head the approvals were counted on, once approved.
fn approved_head(course: &Course) -> Option<String> {
    match &course.approval {
        Approval::Required { head, .. } => head.clone(),
        Approval::NotRequired => None,
    }
}

/// The revert of everything this rollout put in the environment: its recorded commits, every
/// bot commit on the branch carrying its `Deploy-Id` or that of a rollout it superseded (so a
/// commit that landed unrecorded, or a superseded rollout's half-done steps, are reverted too),
/// and unapproved merges of its approval PR.
fn revert_effect(r: &Rollout, reason: &str, evidence: &str) -> Effect {
    let shas = |merges: bool| {
        r.commits
            .iter()
            .filter(|c| c.kind.is_step() != merges)
            .map(|c| c.sha.clone())
            .collect()
    };
    Effect::Revert {
        deploy_id: r.deploy_id.clone(),
        commits: shas(false),
        reason: reason.to_string(),
        evidence: evidence.to_string(),
        find: std::iter::once(r.deploy_id.clone())
            .chain(r.supersedes.iter().cloned())
            .collect(),
        merges: shas(true),
    }
}

/// Why a superseded rollout's steps are reverted, as its revert commits say.
fn superseded_reason(by: &str) -> String {
    format!(
        "superseded by {by}: its steps are reverted so that {by} starts from the last version that completed"
    )
}

/// The course with its approval not given (yet, or any more).
fn unapproved(mut course: Course) -> Course {
    if let Approval::Required { by, head } = &mut course.approval {
        *by = None;
        *head = None;
    }
    course
}

/// Why the approval PR of a rollout that ended as `end` is closed.
pub fn closing(end: &End) -> Closing {
    match end {
        End::Complete => Closing::Completed,
        End::RolledBack { .. } => Closing::RolledBack,
        End::Superseded { by, .. } => Closing::Superseded {
            by_deploy_id: by.clone(),
        },
        End::Failed { .. } => Closing::Failed,
    }
}

type Applied = Result<String, String>;

struct Machine {
    r: Rollout,
    effects: Vec<Effect>,
    now: DateTime<Utc>,
}

impl Machine {
    fn apply(&mut self, input: Input) -> Applied {
        match input {
            Input::Assessed {
                risk_score,
                strategy,
                approval_required,
            } => self.assessed(risk_score, strategy, approval_required),
            Input::Approved { by, head } => self.approved(by, head),
            Input::ApprovalRevoked => match self.running() {
                Some(Live::AwaitingApproval { .. }) => {
                    Ok("approval withdrawn; still waiting".into())
                }
                _ => Err(self.not_in_phase("an approval change")),
            },
            Input::ApprovalOutdated { reason } => self.approval_outdated(reason),
            Input::UnapprovedMerge {
                by,
                merge_sha,
                reason,
                revert,
            } => self.unapproved_merge(by, merge_sha, reason, revert),
            Input::Committed { sha, weight } => self.committed(sha, weight),
            Input::Synced { revision } => self.synced(revision),
            Input::SyncFailed { reason } => self.sync_failed(reason),
            Input::Overwritten { reason } => self.overwritten(reason),
            Input::MergeBlocked { reason } => self.merge_blocked(reason),
            Input::Judged(j) => self.judged(j.observation, j.accumulated),
            Input::MetricsUnavailable { reason } => {
                self.require_analysis_window("metrics")?;
                self.pause(format!("metrics unavailable: {reason}"), true);
                Ok("metrics unavailable: paused, never promoting blind".into())
            }
            Input::Tick => Ok(self.tick()),
            Input::Command { cmd, by } => self.command(cmd, by),
            Input::Superseded { by_deploy_id } => self.superseded(by_deploy_id),
            Input::Reverted { sha } => self.reverted(sha),
            Input::EffectFailed {
                effect,
                reason,
                transient,
            } => self.effect_failed(effect, reason, transient),
        }
    }

    // ----- reading the state -----

    /// The live stage when running (not paused).
    fn running(&self) -> Option<&Live> {
        match &self.r.state {
            State::Running { live, .. } => Some(live),
            _ => None,
        }
    }

    /// The live stage, running or the one a pause returns to.
    fn live_mut(&mut self) -> Option<&mut Live> {
        match &mut self.r.state {
            State::Running { live, .. } | State::Paused { resume: live, .. } => Some(live),
            _ => None,
        }
    }

    fn step_mut(&mut self) -> Option<&mut Step> {
        match self.live_mut() {
            Some(Live::Shipping { step, .. }) => Some(step),
            _ => None,
        }
    }

    fn is_paused(&self) -> bool {
        matches!(self.r.state, State::Paused { .. })
    }

    fn not_in_phase(&self, what: &str) -> String {
        format!("{what} is not valid in phase {}", self.r.phase())
    }

    /// Live and not rolled back: the rollout still takes commands and commits.
    fn require_live(&self, what: &str) -> Result<(), String> {
        match self.r.state {
            State::Running { .. } | State::Paused { .. } => Ok(()),
            State::RollingBack { .. } | State::Superseding { .. } | State::Ended { .. } => {
                Err(format!("{what}: the rollout is already {}", self.r.phase()))
            }
        }
    }

    /// Judgements and metric failures only count while a step is live and being judged.
    fn require_analysis_window(&self, what: &str) -> Result<(), String> {
        match self.running() {
            Some(Live::Shipping { step, .. }) if matches!(step.progress, Progress::Live { .. }) => {
                Ok(())
            }
            _ => Err(format!(
                "{what} ignored: no analysis window is open in phase {}",
                self.r.phase()
            )),
        }
    }

    // ----- writing the state -----

    fn status(&mut self, state: StatusState) {
        self.effects.push(Effect::SetStatus {
            state,
            phase: self.r.phase(),
        });
    }

    fn set_retry_at(&mut self, at: Option<DateTime<Utc>>) {
        match &mut self.r.state {
            State::Running { retry_at, .. }
            | State::Paused { retry_at, .. }
            | State::RollingBack { retry_at, .. }
            | State::Superseding { retry_at, .. } => *retry_at = at,
            State::Ended { .. } => {}
        }
    }

    /// Ends the rollout, keeping the course it followed and the traffic it had.
    fn end(&mut self, end: End) {
        self.r.state = State::Ended {
            course: self.r.course().cloned(),
            traffic: self.r.traffic(),
            end,
        };
    }

    /// Ends the rollout without success: says so on the PR and sets the status to error.
    fn finish(&mut self, end: End, notice: Notice) {
        let why = closing(&end);
        self.end(end);
        self.close_approval_pr(why);
        self.effects.push(Effect::Comment { notice });
        self.status(StatusState::Error);
    }

    fn assessed(&mut self, risk_score: f64, strategy: Strategy, approval: bool) -> Applied {
        if !matches!(self.running(), Some(Live::Assessing)) {
            return Err(self.not_in_phase("an assessment"));
        }
        if !(0.0..=1.0).contains(&risk_score) {
            return Err(format!("risk score {risk_score} is not within 0..=1"));
        }
        // A canary needs a canary workload: without one, whatever the risk asked, ship direct.
        let asked = (self.r.settings.no_canary && strategy != Strategy::Direct).then_some(strategy);
        let strategy = if asked.is_some() {
            Strategy::Direct
        } else {
            strategy
        };
        let mut plan = Plan::for_strategy(strategy, &self.r.settings.canary_plan);
        if let Some(pods) = self.r.settings.pods {
            plan = plan.in_pods(pods);
        }
        let mut note = format!("{strategy} (risk {risk_score:.2}): plan {plan}");
        if let Some(asked) = asked {
            note.push_str(&format!(
                "; {asked} asked, but the environment has no canary workload"
            ));
        }
        let course = Course {
            risk_score,
            strategy,
            plan,
            asked,
            approval: if approval {
                Approval::Required {
                    by: None,
                    head: None,
                }
            } else {
                Approval::NotRequired
            },
        };
        if approval {
            let first = first_weight(&course.plan);
            self.set_live(Live::AwaitingApproval { course });
            self.effects.push(Effect::OpenApprovalPr {
                weight: first,
                image_tag: self.r.release.image_tag.clone(),
            });
            self.effects.push(Effect::Comment {
                notice: Notice::AwaitingApproval,
            });
            self.status(StatusState::Pending);
            Ok(format!("{note}; waiting for approval"))
        } else {
            self.begin_first_step(course, false);
            Ok(note)
        }
    }

    /// Replaces the running stage, keeping a pending retry.
    fn set_live(&mut self, next: Live) {
        if let Some(live) = self.live_mut() {
            *live = next;
        }
    }

    /// An approval of the approval PR's `head`. While paused, only a person's merge of an
    /// approved head reaches here (deploybot counts reviews only when not paused): the merge is
    /// tracked as the first step, and the rollout stays paused.
    fn approved(&mut self, by: String, head: Option<String>) -> Applied {
        let Some(Live::AwaitingApproval { course }) = self.r.live() else {
            return Err(self.not_in_phase("an approval"));
        };
        if by.eq_ignore_ascii_case(&self.r.release.author) {
            return Err(format!(
                "@{by} wrote the change and cannot approve its rollout"
            ));
        }
        let Some(head) = head else {
            return Err("an approval must name the head it approved; none did".into());
        };
        let mut course = course.clone();
        course.approval = Approval::Required {
            by: Some(by.clone()),
            head: Some(head.clone()),
        };
        self.begin_first_step(course, true);
        Ok(format!("approved by @{by} at {head}"))
    }

    /// The approved head moved before it was merged: back to waiting, nothing merged.
    fn approval_outdated(&mut self, reason: String) -> Applied {
        let paused = self.is_paused();
        let course = match self.live_mut() {
            Some(Live::Shipping {
                course,
                step:
                    Step {
                        progress:
                            Progress::Committing {
                                via_approval_pr: true,
                                ..
                            },
                        ..
                    },
            }) => course.clone(),
            _ => return Err(self.not_in_phase("an outdated approval")),
        };
        self.set_live(Live::AwaitingApproval {
            course: unapproved(course),
        });
        self.effects.push(Effect::Comment {
            notice: Notice::ApprovalOutdated {
                reason: reason.clone(),
            },
        });
        if !paused {
            self.status(StatusState::Pending);
        }
        Ok(format!("approval outdated ({reason}); counting again"))
    }

    /// A person merged the approval PR without the approvals, or after the rollout ended: an
    /// out-of-band change. A rollout waiting for (or merging) its approval pauses with a
    /// critical alert and reverts the merge when `revert`; one rolling back reverts it with
    /// the rest; an ended one stays ended and only reverts and alerts.
    fn unapproved_merge(
        &mut self,
        by: String,
        merge_sha: String,
        reason: String,
        revert: bool,
    ) -> Applied {
        if self.r.commits.iter().any(|c| c.sha == merge_sha) {
            return Err(format!("merge {merge_sha} is this rollout's own commit"));
        }
        let why = format!("approval PR merged by @{by} without the approvals: {reason}");
        let notice = Notice::UnapprovedMerge {
            by: by.clone(),
            reason: reason.clone(),
            reverted: revert,
        };
        let first = self
            .r
            .course()
            .map_or(Weight::FULL, |c| first_weight(&c.plan));
        let record = CommitRecord {
            sha: merge_sha.clone(),
            weight: first,
            at: self.now,
            kind: CommitKind::UnapprovedMerge,
        };
        let waiting = self.r.awaits_approval_pr();
        let note = match &self.r.state {
            State::Running { .. } | State::Paused { .. } if waiting => {
                let course = self.r.course().cloned().map(unapproved);
                let Some(course) = course else {
                    return Err(self.not_in_phase("an approval PR merge"));
                };
                self.r.commits.push(record);
                let resume = if revert {
                    Live::AwaitingApproval { course }
                } else {
                    // Left in place: the merge is the first step, tracked while paused.
                    let deadline = self.now + secs(self.r.settings.sync_timeout_secs);
                    Live::Shipping {
                        course,
                        step: Step {
                            weight: first,
                            progress: Progress::Syncing {
                                revision: merge_sha.clone(),
                                deadline,
                            },
                        },
                    }
                };
                let (held, retry_at) = match &self.r.state {
                    State::Paused {
                        pause, retry_at, ..
                    } => (pause.held, *retry_at),
                    State::Running { retry_at, .. } => (false, *retry_at),
                    _ => (false, None),
                };
                self.r.state = State::Paused {
                    pause: Pause {
                        reason: why.clone(),
                        held,
                        revert_owed: revert,
                    },
                    resume,
                    retry_at,
                };
                if revert {
                    self.effects.push(revert_effect(&self.r, &why, ""));
                } else {
                    self.effects.extend(outstanding(&self.r));
                }
                self.effects.push(Effect::Comment {
                    notice: notice.clone(),
                });
                self.status(StatusState::Pending);
                "paused"
            }
            State::RollingBack { .. } | State::Superseding { .. } => {
                // Reverted with the rest of the rollout: the owed revert is issued again with it.
                self.r.commits.push(record);
                self.effects.extend(
                    outstanding(&self.r)
                        .into_iter()
                        .filter(|e| e.kind() == EffectKind::Revert),
                );
                "reverted with the rest of the rollout"
            }
            State::Ended { .. } if revert => {
                self.effects.push(Effect::Revert {
                    deploy_id: self.r.deploy_id.clone(),
                    commits: Vec::new(),
                    reason: why.clone(),
                    evidence: String::new(),
                    find: Vec::new(),
                    merges: vec![merge_sha.clone()],
                });
                "the rollout is over; reverting the merge"
            }
            State::Ended { .. } => "the rollout is over; the merge stays",
            State::Running { .. } | State::Paused { .. } => {
                return Err(format!(
                    "{}: the approval PR was merged already",
                    self.not_in_phase("an approval PR merge")
                ));
            }
        };
        self.effects.push(Effect::CloseApprovalPr {
            why: Closing::MergedUnapproved {
                by: by.clone(),
                reverted: revert,
            },
        });
        self.effects.push(Effect::Notify {
            level: Level::Critical,
            notice,
        });
        Ok(format!("{why}: {note}"))
    }

    /// A newer rollout replaces this one. What it put in the environment (its steps, what it
    /// had inherited, an unapproved merge) is reverted first, so that the newer one starts from
    /// the last version that completed and no superseded canary keeps serving unjudged.
    fn superseded(&mut self, by: String) -> Applied {
        self.require_live("superseding")?;
        let applied =
            !self.r.commits.is_empty() || self.r.step().is_some() || !self.r.supersedes.is_empty();
        if !applied {
            self.finish(
                End::Superseded {
                    by: by.clone(),
                    revert: None,
                },
                Notice::Superseded {
                    by_deploy_id: by.clone(),
                },
            );
            return Ok(format!("superseded by {by}"));
        }
        self.r.state = State::Superseding {
            by: by.clone(),
            course: self.r.course().cloned(),
            traffic: self.r.traffic(),
            retry_at: None,
        };
        self.effects
            .push(revert_effect(&self.r, &superseded_reason(&by), ""));
        self.effects.push(Effect::Comment {
            notice: Notice::Superseded {
                by_deploy_id: by.clone(),
            },
        });
        self.status(StatusState::Error);
        self.close_approval_pr(Closing::Superseded {
            by_deploy_id: by.clone(),
        });
        Ok(format!(
            "superseded by {by}: reverting its steps first, so that {by} starts from the last \
             version that completed"
        ))
    }

    fn reverted(&mut self, sha: String) -> Applied {
        match &mut self.r.state {
            State::RollingBack { rollback, .. } => {
                let rollback = rollback.clone();
                self.end(End::RolledBack {
                    rollback,
                    revert: Revert::Done { sha: sha.clone() },
                });
                Ok(format!("reverted as {sha}"))
            }
            State::Superseding { by, .. } => {
                let by = by.clone();
                self.end(End::Superseded {
                    by: by.clone(),
                    revert: Some(Revert::Done { sha: sha.clone() }),
                });
                Ok(format!("superseded by {by}; its steps reverted as {sha}"))
            }
            State::Paused { pause, .. } if pause.revert_owed => {
                pause.revert_owed = false;
                Ok(format!("unapproved merge reverted as {sha}"))
            }
            // The revert of an approval PR merged after the rollout ended.
            State::Ended { .. } => Ok(format!("unapproved merge reverted as {sha}")),
            State::Running { .. } | State::Paused { .. } => Err("no revert is owed".into()),
        }
    }

    /// Ends the rollout's approval PR, if it has one (a course that required an approval).
    fn close_approval_pr(&mut self, why: Closing) {
        if matches!(
            self.r.course().map(|c| &c.approval),
            Some(Approval::Required { .. })
        ) {
            self.effects.push(Effect::CloseApprovalPr { why });
        }
    }

    fn begin_first_step(&mut self, course: Course, via_approval_pr: bool) {
        let w = first_weight(&course.plan);
        let head = approved_head(&course);
        self.set_live(Live::Shipping {
            course,
            step: Step {
                weight: w,
                progress: Progress::Committing {
                    since: self.now,
                    via_approval_pr,
                },
            },
        });
        self.effects.push(if via_approval_pr {
            Effect::MergeApprovalPr { head }
        } else {
            Effect::CommitStep {
                weight: w,
                image_tag: self.r.release.image_tag.clone(),
            }
        });
        self.effects.push(Effect::Comment {
            notice: Notice::StepStarted { weight: w },
        });
        self.status(StatusState::Pending);
    }

    fn committed(&mut self, sha: String, weight: Weight) -> Applied {
        self.require_live("a commit")?;
        let deadline = self.now + secs(self.r.settings.sync_timeout_secs);
        let Some(step) = self.step_mut() else {
            return Err(format!("commit {sha} reported but no commit is in flight"));
        };
        let kind = match step.progress {
            Progress::Committing {
                via_approval_pr: true,
                ..
            } if step.weight == weight => CommitKind::ApprovedMerge,
            Progress::Committing { .. } if step.weight == weight => CommitKind::Step,
            Progress::Committing { .. } => {
                return Err(format!(
                    "commit {sha} is for {weight} but the step in flight is {}",
                    step.weight
                ));
            }
            _ => return Err(format!("commit {sha} reported but no commit is in flight")),
        };
        step.progress = Progress::Syncing {
            revision: sha.clone(),
            deadline,
        };
        self.r.commits.push(CommitRecord {
            sha: sha.clone(),
            weight,
            at: self.now,
            kind,
        });
        self.set_retry_at(None);
        self.effects.push(Effect::WaitForSync {
            revision: sha.clone(),
            deadline,
        });
        Ok(format!("committed {weight} as {sha}; waiting for sync"))
    }

    fn synced(&mut self, revision: String) -> Applied {
        self.require_live("a sync")?;
        let now = self.now;
        let step = match self.step_mut() {
            Some(step) if matches!(&step.progress, Progress::Syncing { revision: r, .. } if *r == revision) => {
                step
            }
            _ => return Err(format!("revision {revision} is not the one being synced")),
        };
        step.progress = Progress::Live {
            since: now,
            last_query_at: None,
            last_observation: None,
            skip_bake: false,
            inconclusive: 0,
        };
        let weight = step.weight;
        if weight.is_full() {
            self.effects.push(Effect::Comment {
                notice: Notice::Verifying,
            });
            if !self.is_paused() {
                self.status(StatusState::Pending);
            }
        }
        Ok(format!("{weight} synced and healthy; analysis window open"))
    }

    /// `what` (an answer to `WaitForSync`) applies only to a live step being synced.
    fn require_syncing(&mut self, what: &str) -> Result<(), String> {
        self.require_live(what)?;
        if !matches!(
            self.step_mut().map(|s| &s.progress),
            Some(Progress::Syncing { .. })
        ) {
            return Err(format!("{what} reported but nothing is syncing"));
        }
        Ok(())
    }

    fn sync_failed(&mut self, reason: String) -> Applied {
        self.require_syncing("a sync failure")?;
        if self.is_paused() {
            return Ok(format!("sync failed while paused: {reason}"));
        }
        match self.r.settings.on_sync_failure {
            SyncFailurePolicy::Pause => {
                self.pause(format!("sync failed: {reason}"), true);
                Ok("sync failed: paused".into())
            }
            SyncFailurePolicy::Rollback => {
                self.rollback(format!("sync failed: {reason}"), reason);
                Ok(format!(
                    "sync failed: rolling back{}",
                    self.reverting_also()
                ))
            }
        }
    }

    /// Someone else's values run: pause and alert whatever `on_sync_failure` says, because a
    /// rollback would revert over their change and a judgement would judge their version.
    /// Someone else's values in the step's files at the revision Argo CD runs: found while the
    /// step syncs, or while it is judged (a later commit changed them under the analysis).
    fn overwritten(&mut self, reason: String) -> Applied {
        self.require_live("an overwrite")?;
        if !matches!(
            self.step_mut().map(|s| &s.progress),
            Some(Progress::Syncing { .. } | Progress::Live { .. })
        ) {
            return Err("an overwrite reported but no step is committed".into());
        }
        if self.is_paused() {
            return Ok(format!("overwritten while paused: {reason}"));
        }
        self.pause(format!("overwritten: {reason}"), true);
        Ok("the step's values were overwritten: paused".into())
    }

    /// A step's PR (PR mode's, or the approval PR) that branch protection will not let the bot
    /// merge: a person must act, so the rollout pauses and alerts whatever the plan says (nothing
    /// of the step is live yet).
    fn merge_blocked(&mut self, reason: String) -> Applied {
        let committing = matches!(
            self.r.step().map(|s| &s.progress),
            Some(Progress::Committing { .. })
        );
        if !committing || !matches!(self.r.state, State::Running { .. } | State::Paused { .. }) {
            return Err(self.not_in_phase("a blocked merge"));
        }
        if self.is_paused() {
            return Ok(format!("merge blocked while paused: {reason}"));
        }
        self.pause(format!("merge blocked: {reason}"), true);
        Ok("the step's PR cannot be merged: paused".into())
    }

    fn judged(&mut self, observation: Observation, evidence: Option<Evidence>) -> Applied {
        self.require_analysis_window("a judgement")?;
        let now = self.now;
        let max_inconclusive = self.r.settings.max_inconclusive_intervals;
        let Some(step) = self.step_mut() else {
            return Err("no step is live".into());
        };
        let weight = step.weight;
        let Progress::Live {
            since,
            skip_bake,
            last_observation,
            inconclusive,
            ..
        } = &mut step.progress
        else {
            return Err("no step is live".into());
        };
        *last_observation = Some(ObservationKind::of(&observation));
        let (since, skip_bake) = (*since, *skip_bake);
        let n = match &observation {
            Observation::Inconclusive { .. } => *inconclusive + 1,
            _ => 0,
        };
        *inconclusive = n;
        // A judgement without evidence of its own (the verification at 100 %, which has no
        // baseline left) keeps showing what the canary steps established.
        let evidence = evidence.or_else(|| self.r.latest.take().and_then(|s| s.evidence));
        self.r.latest = Some(Snapshot {
            at: now,
            weight,
            observation: observation.clone(),
            evidence,
        });
        match observation {
            Observation::Continue => Ok(format!("judge: continue at {weight}")),
            Observation::Promote => {
                let bake = secs(if weight.is_full() {
                    self.r.settings.verification_secs
                } else {
                    self.r.settings.bake_secs
                });
                let remaining = (since + bake) - now;
                if skip_bake || remaining <= chrono::TimeDelta::zero() {
                    Ok(self.advance())
                } else {
                    Ok(format!(
                        "judge: promote at {weight}, but the bake has {}s left",
                        remaining.num_seconds()
                    ))
                }
            }
            Observation::Rollback { metric, evidence } => {
                self.rollback(format!("judge: {metric} regressed at {weight}"), evidence);
                Ok(format!(
                    "judge: rollback on {metric}{}",
                    self.reverting_also()
                ))
            }
            Observation::Inconclusive { reason, escalate } => {
                if escalate || n > max_inconclusive {
                    self.pause(
                        format!("judge inconclusive for {n} interval(s): {reason}"),
                        true,
                    );
                    Ok(format!("judge: inconclusive #{n}: paused"))
                } else {
                    Ok(format!("judge: inconclusive #{n}: {reason}"))
                }
            }
        }
    }

    /// Moves past the live step: to the next weight, or from verification to complete.
    fn advance(&mut self) -> String {
        let now = self.now;
        let image_tag = self.r.release.image_tag.clone();
        let Some(Live::Shipping { course, step }) = self.live_mut() else {
            return "nothing to advance".into();
        };
        if let Progress::Live { inconclusive, .. } = &mut step.progress {
            *inconclusive = 0;
        }
        let weight = step.weight;
        if weight.is_full() {
            self.end(End::Complete);
            self.close_approval_pr(Closing::Completed);
            self.effects.push(Effect::Comment {
                notice: Notice::Completed,
            });
            self.status(StatusState::Success);
            self.effects.push(Effect::Notify {
                level: Level::Info,
                notice: Notice::Completed,
            });
            return "verified: complete".into();
        }
        let Some(next) = course
            .plan
            .position(weight)
            .and_then(|i| course.plan.get(i + 1))
        else {
            return "the plan has no further step".into();
        };
        *step = Step {
            weight: next,
            progress: Progress::Committing {
                since: now,
                via_approval_pr: false,
            },
        };
        self.effects.push(Effect::CommitStep {
            weight: next,
            image_tag,
        });
        self.effects.push(Effect::Comment {
            notice: Notice::Promoted {
                from: weight,
                to: next,
            },
        });
        self.status(StatusState::Pending);
        format!("promoted {weight} -> {next}")
    }

    /// Pauses (or re-words the pause in force, keeping what it resumes to and any hold).
    fn pause(&mut self, reason: String, alert: bool) {
        let state = std::mem::replace(
            &mut self.r.state,
            State::Ended {
                end: End::Complete,
                course: None,
                traffic: Weight::ZERO,
            },
        );
        self.r.state = match state {
            State::Running { live, retry_at } => State::Paused {
                pause: Pause {
                    reason: reason.clone(),
                    held: false,
                    revert_owed: false,
                },
                resume: live,
                retry_at,
            },
            State::Paused {
                pause,
                resume,
                retry_at,
            } => State::Paused {
                pause: Pause {
                    reason: reason.clone(),
                    held: pause.held,
                    revert_owed: pause.revert_owed,
                },
                resume,
                retry_at,
            },
            other => other,
        };
        self.effects.push(Effect::Comment {
            notice: Notice::Paused {
                reason: reason.clone(),
            },
        });
        self.status(StatusState::Pending);
        if alert {
            self.effects.push(Effect::Notify {
                level: Level::Warn,
                notice: Notice::Paused { reason },
            });
        }
    }

    fn resume(&mut self, notice: Notice) {
        let State::Paused {
            resume: mut live,
            retry_at,
            ..
        } = self.r.state.clone()
        else {
            return;
        };
        // A pause means the time was not watched (or watched badly): the bake starts again and
        // a fresh Promote is needed.
        let now = self.now;
        let timeout = secs(self.r.settings.sync_timeout_secs);
        if let Live::Shipping { step, .. } = &mut live {
            match &mut step.progress {
                Progress::Live {
                    since,
                    last_query_at,
                    last_observation,
                    skip_bake,
                    inconclusive,
                } => {
                    *since = now;
                    *last_query_at = None;
                    *last_observation = None;
                    *skip_bake = false;
                    *inconclusive = 0;
                }
                Progress::Syncing { deadline, .. } if *deadline <= now => {
                    *deadline = now + timeout;
                }
                // The wait for the required checks starts again with the resumed attempt.
                Progress::Committing { since, .. } => *since = now,
                _ => {}
            }
        }
        self.r.state = State::Running { live, retry_at };
        self.effects.extend(outstanding(&self.r));
        self.effects.push(Effect::Comment { notice });
        self.status(StatusState::Pending);
    }

    fn rollback(&mut self, reason: String, evidence: String) {
        // Anything shipped (a step committed or in flight, an unapproved merge, or the half-done
        // steps of a superseded rollout) must be reverted; an assessment or an unapproved
        // approval PR reached nothing.
        let applied =
            !self.r.commits.is_empty() || self.r.step().is_some() || !self.r.supersedes.is_empty();
        let rollback = Rollback {
            reason: reason.clone(),
            evidence: evidence.clone(),
            requested_at: self.now,
        };
        if applied {
            self.r.state = State::RollingBack {
                course: self.r.course().cloned(),
                traffic: self.r.traffic(),
                rollback: rollback.clone(),
                retry_at: None,
            };
        } else {
            self.end(End::RolledBack {
                rollback: rollback.clone(),
                revert: Revert::NotNeeded,
            });
        }
        self.close_approval_pr(Closing::RolledBack);
        self.effects.push(Effect::Comment {
            notice: Notice::RolledBack {
                reason: reason.clone(),
                evidence: evidence.clone(),
            },
        });
        self.status(StatusState::Failure);
        if !applied {
            // Nothing reached the GitOps repository: there is nothing to revert or hold.
            return;
        }
        self.effects.insert(
            0,
            revert_effect(&self.r, &rollback.reason, &rollback.evidence),
        );
        self.effects.push(Effect::Label {
            name: ROLLED_BACK_LABEL.into(),
        });
        self.effects.push(Effect::HoldService {
            reason: reason.clone(),
        });
        self.effects.push(Effect::Notify {
            level: Level::Warn,
            notice: Notice::RolledBack { reason, evidence },
        });
    }

    /// What a rollback reverts beyond this rollout's own commits, for the audit trail.
    fn reverting_also(&self) -> String {
        if self.r.supersedes.is_empty() {
            return String::new();
        }
        format!(
            "; reverting also the commits of superseded rollout(s) {}, back to the last \
             version that completed",
            self.r.supersedes.join(", ")
        )
    }

    fn tick(&mut self) -> String {
        let now = self.now;
        if self.r.retry_at().is_some_and(|t| t <= now) {
            self.set_retry_at(None);
            let owed = outstanding(&self.r);
            if !owed.is_empty() {
                self.effects.extend(owed);
                return "retrying outstanding effects".into();
            }
        }
        let interval = self.r.settings.analysis_interval_secs;
        let step = match &mut self.r.state {
            State::Running {
                live: Live::Shipping { step, .. },
                ..
            } => step,
            State::Running { .. } => return "nothing due".into(),
            _ => return format!("{}: nothing due", self.r.phase().name()),
        };
        match &mut step.progress {
            Progress::Syncing { deadline, .. } if *deadline <= now => {
                let reason = format!("not synced and healthy by {}", deadline.to_rfc3339());
                match self.sync_failed(reason) {
                    Ok(note) | Err(note) => note,
                }
            }
            // Sync is polled: each tick asks again whether the revision is live, so a waiting
            // runner never blocks the loop and a lost answer is asked again.
            Progress::Syncing { revision, deadline } => {
                self.effects.push(Effect::WaitForSync {
                    revision: revision.clone(),
                    deadline: *deadline,
                });
                "syncing: asking again".into()
            }
            Progress::Live {
                since,
                last_query_at,
                ..
            } => {
                let due = last_query_at.unwrap_or(*since) + secs(interval);
                if due > now {
                    return "analysis not due".into();
                }
                *last_query_at = Some(now);
                self.effects.push(Effect::QueryMetrics {
                    window_secs: interval,
                });
                "analysis due: querying metrics".into()
            }
            Progress::Committing { .. } => "nothing due".into(),
        }
    }

    fn command(&mut self, cmd: Command, by: String) -> Applied {
        match cmd {
            Command::Deploy => Err(format!(
                "{} starts a new rollout; this one ({}) is already {}",
                cmd.as_str(),
                self.r.deploy_id,
                self.r.phase()
            )),
            Command::Promote => {
                self.require_analysis_window("/promote")?;
                if let Some(Step {
                    progress:
                        Progress::Live {
                            last_observation,
                            skip_bake,
                            ..
                        },
                    ..
                }) = self.step_mut()
                {
                    if *last_observation == Some(ObservationKind::Promote) {
                        let note = self.advance();
                        return Ok(format!("/promote by @{by}: {note}"));
                    }
                    *skip_bake = true;
                }
                Ok(format!(
                    "/promote by @{by}: bake skipped, promoting on the judge's next promote"
                ))
            }
            Command::Pause => {
                self.require_live("/pause")?;
                if self.is_paused() {
                    return Err("already paused".into());
                }
                self.pause(format!("paused by @{by}"), false);
                Ok(format!("paused by @{by}"))
            }
            Command::Resume => {
                match self.r.pause() {
                    None => return Err(self.not_in_phase("/resume")),
                    Some(p) if p.held => {
                        return Err("an emergency hold is in force: /hold cancel lifts it".into());
                    }
                    Some(p) if p.revert_owed => return Err(REVERT_FIRST.into()),
                    Some(_) => {}
                }
                self.resume(Notice::Resumed { by: by.clone() });
                Ok(format!("resumed by @{by}"))
            }
            Command::Rollback => {
                self.require_live("/rollback")?;
                let evidence = match self.r.latest.as_ref().map(|s| &s.observation) {
                    Some(Observation::Rollback { evidence, .. }) => evidence.clone(),
                    _ => format!("rollback requested by @{by}"),
                };
                self.rollback(format!("/rollback by @{by}"), evidence);
                Ok(format!("rolled back by @{by}{}", self.reverting_also()))
            }
            Command::Hold => {
                self.require_live("/hold")?;
                if self.r.pause().is_some_and(|p| p.held) {
                    return Err("already held".into());
                }
                let reason = format!("emergency hold by @{by}");
                self.pause(reason.clone(), false);
                if let State::Paused { pause, .. } = &mut self.r.state {
                    pause.held = true;
                }
                self.effects.push(Effect::HoldService { reason });
                self.effects.push(Effect::Notify {
                    level: Level::Warn,
                    notice: Notice::Held { by: by.clone() },
                });
                Ok(format!("held by @{by}"))
            }
            Command::HoldCancel => {
                match self.r.pause() {
                    Some(p) if p.held && p.revert_owed => return Err(REVERT_FIRST.into()),
                    Some(p) if p.held => {}
                    _ => return Err("no emergency hold is in force".into()),
                }
                self.effects.push(Effect::ReleaseService);
                self.resume(Notice::HoldReleased { by: by.clone() });
                Ok(format!("hold lifted by @{by}"))
            }
        }
    }

    /// Says on the PR and in a critical alert that a revert could not be made.
    fn revert_failed(&mut self, reason: String) {
        self.effects.push(Effect::Comment {
            notice: Notice::RevertFailed {
                reason: reason.clone(),
            },
        });
        self.effects.push(Effect::Notify {
            level: Level::Critical,
            notice: Notice::RevertFailed { reason },
        });
    }

    fn effect_failed(&mut self, effect: EffectKind, reason: String, transient: bool) -> Applied {
        let what = format!("{effect:?} failed: {reason}");
        if transient {
            if !self.r.is_live() {
                if effect == EffectKind::Revert {
                    // Only an unapproved merge is reverted after the end: nobody retries it.
                    self.revert_failed(reason);
                    return Ok(format!("{what}: a human must revert"));
                }
                return Ok(format!("{what} (rollout over; not retried)"));
            }
            let after = self.r.settings.retry_after_secs;
            self.set_retry_at(Some(self.now + secs(after)));
            return Ok(format!("{what}; retrying after {after}s"));
        }
        match effect {
            EffectKind::CommitStep | EffectKind::MergeApprovalPr | EffectKind::OpenApprovalPr => {
                self.require_live("a failed commit")?;
                self.finish(
                    End::Failed {
                        reason: what.clone(),
                    },
                    Notice::Failed {
                        reason: what.clone(),
                    },
                );
                self.effects.push(Effect::Notify {
                    level: Level::Critical,
                    notice: Notice::Failed {
                        reason: what.clone(),
                    },
                });
                Ok(what)
            }
            EffectKind::Revert => {
                match &mut self.r.state {
                    State::RollingBack { rollback, .. } => {
                        let rollback = rollback.clone();
                        self.end(End::RolledBack {
                            rollback,
                            revert: Revert::Failed {
                                reason: reason.clone(),
                            },
                        });
                    }
                    State::Superseding { by, .. } => {
                        let by = by.clone();
                        self.end(End::Superseded {
                            by,
                            revert: Some(Revert::Failed {
                                reason: reason.clone(),
                            }),
                        });
                    }
                    State::Paused { pause, .. } if pause.revert_owed => pause.revert_owed = false,
                    State::Ended { .. } => {}
                    State::Running { .. } | State::Paused { .. } => {
                        return Err("a revert failure reported but no revert is owed".into());
                    }
                }
                self.revert_failed(reason);
                Ok(format!("{what}: a human must revert"))
            }
            EffectKind::QueryMetrics => {
                self.require_analysis_window("a failed metrics query")?;
                self.pause(format!("metrics unavailable: {reason}"), true);
                Ok(format!("{what}: paused"))
            }
            EffectKind::WaitForSync => self.sync_failed(reason),
            // Comments, labels, statuses and notifications are best effort: the rollout's
            // safety never depends on them, so their failure is recorded and nothing more.
            EffectKind::Comment
            | EffectKind::Label
            | EffectKind::CloseApprovalPr
            | EffectKind::SetStatus
            | EffectKind::Notify
            | EffectKind::HoldService
            | EffectKind::ReleaseService => Ok(format!("{what} (best effort; recorded)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::record::{Phase, Settings};
    use crate::rollout::testing::{t, trigger};
    use EffectKind as K;

    fn fresh_with(settings: Settings) -> Rollout {
        Rollout::new(trigger("d-1", "checkout", "production"), settings, t(0))
    }

    fn fresh() -> Rollout {
        fresh_with(Settings::default())
    }

    /// The risk asks for a canary, but the environment has no canary workload: the rollout
    /// ships direct, remembers what was asked, and an approval the risk asked for still stands.
    #[test]
    fn an_environment_without_a_canary_workload_ships_direct() {
        let course = |no_canary| {
            let r = fresh_with(Settings {
                no_canary,
                ..Settings::default()
            });
            let tr = step(&r, assessed(Strategy::Canary10, true), t(0));
            assert_eq!(tr.outcome, Outcome::Applied, "{}", tr.note);
            tr.next.course().cloned().unwrap()
        };
        let canary = course(false);
        assert_eq!((canary.strategy, canary.asked), (Strategy::Canary10, None));
        let direct = course(true);
        assert_eq!(
            (direct.strategy, direct.asked, direct.plan.to_string()),
            (
                Strategy::Direct,
                Some(Strategy::Canary10),
                "100".to_string()
            )
        );
        assert!(matches!(direct.approval, Approval::Required { .. }));
    }

    /// A replica-ratio canary of 10 pods cannot give 5 %: the course, its first commit and the
    /// traffic the judge expects are the 10 % one pod really gets.
    #[test]
    fn a_replica_ratio_canary_steps_through_the_shares_its_pods_give() {
        let r = fresh_with(Settings {
            pods: Some(10),
            ..Settings::default()
        });
        let tr = step(&r, assessed(Strategy::Canary5, false), t(0));
        assert_eq!(tr.outcome, Outcome::Applied, "{}", tr.note);
        let plan = tr.next.course().map(|c| c.plan.to_string());
        assert_eq!(plan.as_deref(), Some("10 -> 30 -> 50 -> 100"));
        let first = tr.effects.iter().find_map(|e| match e {
            Effect::CommitStep { weight, .. } => Some(*weight),
            _ => None,
        });
        assert_eq!(first, Some(w(10)), "{:?}", tr.effects);
        let tr = step(&tr.next, committed("c0", 10), t(1));
        let tr = step(&tr.next, synced("c0"), t(2));
        assert_eq!(tr.next.traffic(), w(10));
    }

    fn w(p: u8) -> Weight {
        Weight::new(p).unwrap()
    }

    fn assessed(strategy: Strategy, approval: bool) -> Input {
        Input::Assessed {
            risk_score: 0.4,
            strategy,
            approval_required: approval,
        }
    }
    fn committed(sha: &str, p: u8) -> Input {
        Input::Committed {
            sha: sha.into(),
            weight: w(p),
        }
    }
    fn synced(sha: &str) -> Input {
        Input::Synced {
            revision: sha.into(),
        }
    }
    fn judged(o: Observation) -> Input {
        Input::judged(o)
    }
    fn rollback_obs() -> Observation {
        Observation::Rollback {
            metric: "error_rate".into(),
            evidence: "canary 4.1% vs baseline 0.3%, p=0.001".into(),
        }
    }
    fn inconclusive_obs() -> Observation {
        Observation::Inconclusive {
            reason: "12 samples, need 30".into(),
            escalate: false,
        }
    }
    fn cmd(c: Command, by: &str) -> Input {
        Input::Command {
            cmd: c,
            by: by.into(),
        }
    }

    /// Applies `given` from `start`, each of which must be accepted (the row's setting).
    fn drive(start: Rollout, given: &[(i64, Input)]) -> Rollout {
        let mut r = start;
        for (at, input) in given {
            let tr = step(&r, input.clone(), t(*at));
            assert_ne!(
                tr.outcome,
                Outcome::Rejected,
                "setup input {input:?} rejected: {}",
                tr.note
            );
            r = tr.next;
        }
        r
    }

    /// One row of the transition table (`row`, as numbered in `crate::rollout`'s docs): from
    /// the state `given` builds, `when` leads to `phase` (its Display) with exactly `effects` (in
    /// order) and `outcome`. A failure names the row.
    #[track_caller]
    fn check_from(
        row: &str,
        start: Rollout,
        given: &[(i64, Input)],
        when: (i64, Input),
        phase: &str,
        effects: &[EffectKind],
        outcome: Outcome,
    ) -> Transition {
        let before = drive(start, given);
        let tr = step(&before, when.1.clone(), t(when.0));
        let kinds: Vec<EffectKind> = tr.effects.iter().map(Effect::kind).collect();
        assert_eq!(
            (
                tr.next.phase().to_string().as_str(),
                kinds.as_slice(),
                tr.outcome
            ),
            (phase, effects, outcome),
            "row {row}: input {:?}: {}",
            when.1,
            tr.note
        );
        if outcome == Outcome::Rejected {
            assert_eq!(
                tr.next, before,
                "row {row}: a rejected input must change nothing"
            );
            assert!(!tr.note.is_empty(), "row {row}: a rejection must say why");
        }
        tr
    }

    #[track_caller]
    fn check(
        row: &str,
        given: &[(i64, Input)],
        when: (i64, Input),
        phase: &str,
        effects: &[EffectKind],
        outcome: Outcome,
    ) -> Transition {
        check_from(row, fresh(), given, when, phase, effects, outcome)
    }

    use Outcome::{Applied, Rejected, Unchanged};

    fn committing5() -> Vec<(i64, Input)> {
        vec![(0, assessed(Strategy::Canary5, false))]
    }
    fn syncing5() -> Vec<(i64, Input)> {
        let mut g = committing5();
        g.push((1, committed("c1", 5)));
        g
    }
    /// Canary step 1 at 5 %, live since t=2 (bake 600 s, interval 60 s).
    fn live5() -> Vec<(i64, Input)> {
        let mut g = syncing5();
        g.push((2, synced("c1")));
        g
    }
    /// Canary step 2 at 50 % of `canary_25` (25 -> 50 -> 100), live since t=702.
    fn live50() -> Vec<(i64, Input)> {
        vec![
            (0, assessed(Strategy::Canary25, false)),
            (1, committed("c1", 25)),
            (2, synced("c1")),
            (700, judged(Observation::Promote)),
            (701, committed("c2", 50)),
            (702, synced("c2")),
        ]
    }
    /// `direct`, 100 % live in verification since t=2.
    fn verifying() -> Vec<(i64, Input)> {
        vec![
            (0, assessed(Strategy::Direct, false)),
            (1, committed("c1", 100)),
            (2, synced("c1")),
        ]
    }
    fn plus(mut g: Vec<(i64, Input)>, more: &[(i64, Input)]) -> Vec<(i64, Input)> {
        g.extend_from_slice(more);
        g
    }

    const CANARY5: &str = "canary (step 1, 5%)";

    #[test]
    fn table_rows() {
        let st = [K::CommitStep, K::Comment, K::SetStatus];
        let alert = [K::Comment, K::SetStatus, K::Notify];
        let revert = [
            K::Revert,
            K::Comment,
            K::SetStatus,
            K::Label,
            K::HoldService,
            K::Notify,
        ];
        // 1-4: assessment.
        check(
            "1",
            &[],
            (0, assessed(Strategy::Canary5, false)),
            CANARY5,
            &st,
            Applied,
        );
        check(
            "2",
            &[],
            (0, assessed(Strategy::Direct, false)),
            "full_rollout",
            &st,
            Applied,
        );
        check(
            "3",
            &[],
            (0, assessed(Strategy::Canary10, true)),
            "awaiting_approval",
            &[K::OpenApprovalPr, K::Comment, K::SetStatus],
            Applied,
        );
        check(
            "4",
            &[],
            (
                0,
                Input::Assessed {
                    risk_score: f64::NAN,
                    strategy: Strategy::Direct,
                    approval_required: false,
                },
            ),
            "risk_assessment",
            &[],
            Rejected,
        );
        // 5-7: approval.
        let awaiting = [(0, assessed(Strategy::Canary10, true))];
        let by = |who: &str| Input::Approved {
            by: who.into(),
            head: Some("h1".into()),
        };
        check(
            "5",
            &awaiting,
            (5, by("bob")),
            "canary (step 1, 10%)",
            &[K::MergeApprovalPr, K::Comment, K::SetStatus],
            Applied,
        );
        check(
            "6",
            &awaiting,
            (5, by("Alice")),
            "awaiting_approval",
            &[],
            Rejected,
        );
        check(
            "7",
            &awaiting,
            (5, Input::ApprovalRevoked),
            "awaiting_approval",
            &[],
            Unchanged,
        );
        let tr = check(
            "5c",
            &[
                (0, assessed(Strategy::Canary10, true)),
                (1, cmd(Command::Pause, "carol")),
            ],
            (5, by("bob")),
            "paused (paused by @carol)",
            &[K::MergeApprovalPr, K::Comment, K::SetStatus],
            Applied,
        );
        assert_eq!(tr.next.approved_by(), Some("bob"), "row 5c");
        check(
            "5b",
            &awaiting,
            (
                5,
                Input::Approved {
                    by: "bob".into(),
                    head: None,
                },
            ),
            "awaiting_approval",
            &[],
            Rejected,
        );
        // 8-13: commit and sync.
        check(
            "8",
            &committing5(),
            (1, committed("c1", 5)),
            CANARY5,
            &[K::WaitForSync],
            Applied,
        );
        check(
            "9",
            &committing5(),
            (1, committed("c1", 10)),
            CANARY5,
            &[],
            Rejected,
        );
        let blocked = || Input::MergeBlocked {
            reason: "At least 1 approving review is required".into(),
        };
        let tr = check(
            "9b",
            &committing5(),
            (40, blocked()),
            "paused (merge blocked: At least 1 approving review is required)",
            &alert,
            Applied,
        );
        // /resume tries the merge again, with the wait for the checks starting over.
        let resumed = step(&tr.next, cmd(Command::Resume, "carol"), t(90));
        assert_eq!(resumed.next.phase().to_string(), CANARY5);
        assert!(
            matches!(resumed.effects.first(), Some(Effect::CommitStep { .. })),
            "{:?}",
            resumed.effects
        );
        assert!(matches!(
            resumed.next.step().map(|s| &s.progress),
            Some(Progress::Committing { since, .. }) if *since == t(90)
        ));
        check("9c", &syncing5(), (40, blocked()), CANARY5, &[], Rejected);
        check("10", &syncing5(), (2, synced("c1")), CANARY5, &[], Applied);
        check(
            "11",
            &syncing5(),
            (2, synced("zzz")),
            CANARY5,
            &[],
            Rejected,
        );
        check(
            "12",
            &syncing5(),
            (602, Input::Tick),
            "paused (sync failed: not synced and healthy by 2026-11-26T10:10:01+00:00)",
            &alert,
            Applied,
        );
        check(
            "12b",
            &syncing5(),
            (30, Input::Tick),
            CANARY5,
            &[K::WaitForSync],
            Unchanged,
        );
        check(
            "13",
            &syncing5(),
            (
                30,
                Input::SyncFailed {
                    reason: "Degraded".into(),
                },
            ),
            "paused (sync failed: Degraded)",
            &alert,
            Applied,
        );
        check(
            "13b",
            &syncing5(),
            (
                30,
                Input::Overwritten {
                    reason: "k.yaml: newTag is 1.4.0".into(),
                },
            ),
            "paused (overwritten: k.yaml: newTag is 1.4.0)",
            &alert,
            Applied,
        );
        check(
            "13c",
            &live5(),
            (
                70,
                Input::Overwritten {
                    reason: "k.yaml: newTag is 1.4.0".into(),
                },
            ),
            "paused (overwritten: k.yaml: newTag is 1.4.0)",
            &alert,
            Applied,
        );
        // 14-17: analysis.
        check(
            "14",
            &live5(),
            (62, Input::Tick),
            CANARY5,
            &[K::QueryMetrics],
            Applied,
        );
        check("15", &live5(), (30, Input::Tick), CANARY5, &[], Unchanged);
        check(
            "16",
            &live5(),
            (62, judged(Observation::Continue)),
            CANARY5,
            &[],
            Applied,
        );
        check(
            "17",
            &live5(),
            (100, judged(Observation::Promote)),
            CANARY5,
            &[],
            Applied,
        );
        // 18-20: promotion.
        check(
            "18",
            &live5(),
            (602, judged(Observation::Promote)),
            "progressive_rollout",
            &st,
            Applied,
        );
        check(
            "19",
            &live50(),
            (1402, judged(Observation::Promote)),
            "full_rollout",
            &st,
            Applied,
        );
        check(
            "20",
            &plus(live5(), &[(602, judged(Observation::Promote))]),
            (603, committed("c2", 10)),
            "canary (step 2, 10%)",
            &[K::WaitForSync],
            Applied,
        );
        // 21-25: rollback, hold, missing metrics.
        check(
            "21",
            &live5(),
            (62, judged(rollback_obs())),
            "rolled_back",
            &revert,
            Applied,
        );
        check(
            "22",
            &plus(
                live5(),
                &[
                    (62, judged(inconclusive_obs())),
                    (122, judged(inconclusive_obs())),
                ],
            ),
            (182, judged(inconclusive_obs())),
            CANARY5,
            &[],
            Applied,
        );
        check(
            "23",
            &plus(
                live5(),
                &[
                    (62, judged(inconclusive_obs())),
                    (122, judged(inconclusive_obs())),
                    (182, judged(inconclusive_obs())),
                ],
            ),
            (242, judged(inconclusive_obs())),
            "paused (judge inconclusive for 4 interval(s): 12 samples, need 30)",
            &alert,
            Applied,
        );
        check(
            "24",
            &live5(),
            (
                62,
                Input::MetricsUnavailable {
                    reason: "connection refused after 3 tries".into(),
                },
            ),
            "paused (metrics unavailable: connection refused after 3 tries)",
            &alert,
            Applied,
        );
        check(
            "25",
            &syncing5(),
            (62, judged(Observation::Promote)),
            CANARY5,
            &[],
            Rejected,
        );
        // 26-27: /promote.
        check(
            "26",
            &plus(live5(), &[(100, judged(Observation::Promote))]),
            (101, cmd(Command::Promote, "carol")),
            "progressive_rollout",
            &st,
            Applied,
        );
        check(
            "27",
            &live5(),
            (100, cmd(Command::Promote, "carol")),
            CANARY5,
            &[],
            Applied,
        );
        // 28-30: full rollout and verification.
        let full_syncing = [
            (0, assessed(Strategy::Direct, false)),
            (1, committed("c1", 100)),
        ];
        check(
            "28",
            &full_syncing,
            (2, synced("c1")),
            "verification",
            &[K::Comment, K::SetStatus],
            Applied,
        );
        check(
            "29",
            &verifying(),
            (602, judged(Observation::Promote)),
            "complete",
            &[K::Comment, K::SetStatus, K::Notify],
            Applied,
        );
        check(
            "30",
            &verifying(),
            (62, judged(rollback_obs())),
            "rolled_back",
            &revert,
            Applied,
        );
        // 31-33: pause and resume.
        let paused = plus(live5(), &[(100, cmd(Command::Pause, "carol"))]);
        check(
            "31",
            &live5(),
            (100, cmd(Command::Pause, "carol")),
            "paused (paused by @carol)",
            &[K::Comment, K::SetStatus],
            Applied,
        );
        check(
            "32",
            &paused,
            (200, cmd(Command::Resume, "carol")),
            CANARY5,
            &[K::Comment, K::SetStatus],
            Applied,
        );
        check(
            "33",
            &paused,
            (200, judged(Observation::Promote)),
            "paused (paused by @carol)",
            &[],
            Rejected,
        );
        // 34: /rollback, with and without anything committed.
        check(
            "34",
            &live5(),
            (100, cmd(Command::Rollback, "dave")),
            "rolled_back",
            &revert,
            Applied,
        );
        check(
            "34 (nothing committed)",
            &awaiting,
            (5, cmd(Command::Rollback, "dave")),
            "rolled_back",
            &[K::CloseApprovalPr, K::Comment, K::SetStatus],
            Applied,
        );
        // 35-37: emergency hold.
        let held = plus(live5(), &[(100, cmd(Command::Hold, "erin"))]);
        check(
            "35",
            &live5(),
            (100, cmd(Command::Hold, "erin")),
            "paused (emergency hold by @erin)",
            &[K::Comment, K::SetStatus, K::HoldService, K::Notify],
            Applied,
        );
        check(
            "36",
            &held,
            (200, cmd(Command::Resume, "erin")),
            "paused (emergency hold by @erin)",
            &[],
            Rejected,
        );
        check(
            "37",
            &held,
            (200, cmd(Command::HoldCancel, "erin")),
            CANARY5,
            &[K::ReleaseService, K::Comment, K::SetStatus],
            Applied,
        );
        // 38: superseded: what it shipped is reverted first.
        let by_d2 = Input::Superseded {
            by_deploy_id: "d-2".into(),
        };
        let tr = check(
            "38",
            &live5(),
            (100, by_d2.clone()),
            "superseded",
            &[K::Revert, K::Comment, K::SetStatus],
            Applied,
        );
        assert!(tr.next.is_live() && tr.next.revert_owed(), "row 38");
        assert_eq!(outstanding(&tr.next).len(), 1, "row 38: the revert is owed");
        let done = check(
            "38b",
            &plus(live5(), &[(100, by_d2.clone())]),
            (101, Input::Reverted { sha: "r1".into() }),
            "superseded",
            &[],
            Applied,
        );
        assert!(!done.next.is_live(), "row 38b");
        check(
            "38c",
            &plus(live5(), &[(100, by_d2.clone())]),
            (
                101,
                Input::EffectFailed {
                    effect: K::Revert,
                    reason: "conflict".into(),
                    transient: false,
                },
            ),
            "superseded",
            &[K::Comment, K::Notify],
            Applied,
        );
        check(
            "38d",
            &[],
            (0, by_d2.clone()),
            "superseded",
            &[K::Comment, K::SetStatus],
            Applied,
        );
        check(
            "38e",
            &plus(live5(), &[(100, by_d2)]),
            (101, cmd(Command::Rollback, "carol")),
            "superseded",
            &[],
            Rejected,
        );
        // 39-40: terminal phases.
        let rolled = plus(live5(), &[(62, judged(rollback_obs()))]);
        check(
            "39",
            &rolled,
            (70, Input::Reverted { sha: "r1".into() }),
            "rolled_back",
            &[],
            Applied,
        );
        check(
            "40 (/resume)",
            &rolled,
            (70, cmd(Command::Resume, "x")),
            "rolled_back",
            &[],
            Rejected,
        );
        check(
            "40 (/rollback)",
            &rolled,
            (70, cmd(Command::Rollback, "x")),
            "rolled_back",
            &[],
            Rejected,
        );
        check(
            "40 (commit)",
            &rolled,
            (70, committed("c9", 5)),
            "rolled_back",
            &[],
            Rejected,
        );
        let complete = plus(verifying(), &[(602, judged(Observation::Promote))]);
        check(
            "40 (superseded)",
            &complete,
            (
                700,
                Input::Superseded {
                    by_deploy_id: "d-2".into(),
                },
            ),
            "complete",
            &[],
            Rejected,
        );
        check(
            "40 (/hold)",
            &complete,
            (700, cmd(Command::Hold, "x")),
            "complete",
            &[],
            Rejected,
        );
        check(
            "40 (tick)",
            &complete,
            (700, Input::Tick),
            "complete",
            &[],
            Unchanged,
        );
        // 41-42: transient failure and retry.
        let failed_once = Input::EffectFailed {
            effect: K::CommitStep,
            reason: "pushing branch main: connection reset".into(),
            transient: true,
        };
        check(
            "41",
            &committing5(),
            (1, failed_once.clone()),
            CANARY5,
            &[],
            Applied,
        );
        let retrying = plus(committing5(), &[(1, failed_once)]);
        check(
            "42 (not due)",
            &retrying,
            (10, Input::Tick),
            CANARY5,
            &[],
            Unchanged,
        );
        check(
            "42",
            &retrying,
            (31, Input::Tick),
            CANARY5,
            &[K::CommitStep],
            Applied,
        );
        // 43-44: permanent failures.
        check(
            "43",
            &committing5(),
            (
                1,
                Input::EffectFailed {
                    effect: K::CommitStep,
                    reason: "no target matched".into(),
                    transient: false,
                },
            ),
            "failed (CommitStep failed: no target matched)",
            &[K::Comment, K::SetStatus, K::Notify],
            Applied,
        );
        check(
            "44",
            &rolled,
            (
                70,
                Input::EffectFailed {
                    effect: K::Revert,
                    reason: "conflict".into(),
                    transient: false,
                },
            ),
            "rolled_back",
            &[K::Comment, K::Notify],
            Applied,
        );
        // 45: /deploy.
        check(
            "45",
            &live5(),
            (100, cmd(Command::Deploy, "x")),
            CANARY5,
            &[],
            Rejected,
        );
        // 46-53: approvals bound to their head; merges nobody approved.
        let merging = [(0, assessed(Strategy::Canary10, true)), (5, by("bob"))];
        let outdated = Input::ApprovalOutdated {
            reason: "the head moved".into(),
        };
        let tr = check(
            "46",
            &merging,
            (6, outdated.clone()),
            "awaiting_approval",
            &[K::Comment, K::SetStatus],
            Applied,
        );
        assert_eq!(tr.next.approved_by(), None, "row 46: the approval is gone");
        check("46b", &live5(), (100, outdated), CANARY5, &[], Rejected);
        let unapproved = |revert| Input::UnapprovedMerge {
            by: "erin".into(),
            merge_sha: "m1".into(),
            reason: "0 of 1 approvals".into(),
            revert,
        };
        let paused = "paused (approval PR merged by @erin without the approvals: 0 of 1 approvals)";
        let tr = check(
            "47",
            &awaiting,
            (6, unapproved(true)),
            paused,
            &[
                K::Revert,
                K::Comment,
                K::SetStatus,
                K::CloseApprovalPr,
                K::Notify,
            ],
            Applied,
        );
        assert!(matches!(
            &tr.effects[0],
            Effect::Revert { merges, commits, .. }
                if *merges == ["m1"] && commits.is_empty()
        ));
        assert!(matches!(
            tr.effects.last(),
            Some(Effect::Notify {
                level: Level::Critical,
                ..
            })
        ));
        assert_eq!(outstanding(&tr.next).len(), 1, "row 47: the revert is owed");
        check(
            "48",
            &[
                (0, assessed(Strategy::Canary10, true)),
                (6, unapproved(true)),
            ],
            (7, cmd(Command::Resume, "erin")),
            paused,
            &[],
            Rejected,
        );
        let done = check(
            "49",
            &[
                (0, assessed(Strategy::Canary10, true)),
                (6, unapproved(true)),
            ],
            (7, Input::Reverted { sha: "r1".into() }),
            paused,
            &[],
            Applied,
        );
        assert!(outstanding(&done.next).is_empty());
        check_from(
            "49b",
            done.next,
            &[],
            (8, cmd(Command::Resume, "carol")),
            "awaiting_approval",
            &[K::OpenApprovalPr, K::Comment, K::SetStatus],
            Applied,
        );
        check(
            "50",
            &merging,
            (6, unapproved(false)),
            paused,
            &[
                K::WaitForSync,
                K::Comment,
                K::SetStatus,
                K::CloseApprovalPr,
                K::Notify,
            ],
            Applied,
        );
        check(
            "51",
            &merging,
            (6, committed("m1", 10)),
            "canary (step 1, 10%)",
            &[K::WaitForSync],
            Applied,
        );
        check(
            "51b",
            &[
                (0, assessed(Strategy::Canary10, true)),
                (5, by("bob")),
                (6, committed("m1", 10)),
            ],
            (7, unapproved(true)),
            "canary (step 1, 10%)",
            &[],
            Rejected,
        );
        let superseded = [
            (0, assessed(Strategy::Canary10, true)),
            (
                1,
                Input::Superseded {
                    by_deploy_id: "d-2".into(),
                },
            ),
        ];
        check(
            "52",
            &superseded,
            (7, unapproved(true)),
            "superseded",
            &[K::Revert, K::CloseApprovalPr, K::Notify],
            Applied,
        );
        check(
            "53",
            &superseded,
            (7, unapproved(false)),
            "superseded",
            &[K::CloseApprovalPr, K::Notify],
            Applied,
        );
    }

    /// Every way a rollout with an approval PR ends closes that PR, saying why.
    #[test]
    fn a_rollout_ending_closes_its_approval_pr() {
        let awaiting = [(0, assessed(Strategy::Canary10, true))];
        let closes = |given: &[(i64, Input)], when: Input| {
            let tr = step(&drive(fresh(), given), when, t(900));
            tr.effects.iter().find_map(|e| match e {
                Effect::CloseApprovalPr { why } => Some(why.clone()),
                _ => None,
            })
        };
        assert_eq!(
            closes(
                &awaiting,
                Input::Superseded {
                    by_deploy_id: "d-2".into()
                }
            ),
            Some(Closing::Superseded {
                by_deploy_id: "d-2".into()
            })
        );
        assert_eq!(
            closes(&awaiting, cmd(Command::Rollback, "carol")),
            Some(Closing::RolledBack)
        );
        assert_eq!(
            closes(
                &awaiting,
                Input::EffectFailed {
                    effect: EffectKind::OpenApprovalPr,
                    reason: "no token".into(),
                    transient: false,
                }
            ),
            Some(Closing::Failed)
        );
        let approved_and_verifying = [
            (0, assessed(Strategy::Direct, true)),
            (
                1,
                Input::Approved {
                    by: "bob".into(),
                    head: Some("h1".into()),
                },
            ),
            (2, committed("m1", 100)),
            (3, synced("m1")),
        ];
        assert_eq!(
            closes(&approved_and_verifying, judged(Observation::Promote)),
            Some(Closing::Completed)
        );
        assert_eq!(
            closes(&live5(), cmd(Command::Rollback, "carol")),
            None,
            "no approval PR, nothing to close"
        );
    }

    #[test]
    fn sync_failure_can_roll_back_instead_of_pausing() {
        let settings = Settings {
            on_sync_failure: SyncFailurePolicy::Rollback,
            ..Settings::default()
        };
        let tr = check_from(
            "12 (on_sync_failure: rollback)",
            fresh_with(settings),
            &syncing5(),
            (602, Input::Tick),
            "rolled_back",
            &[
                K::Revert,
                K::Comment,
                K::SetStatus,
                K::Label,
                K::HoldService,
                K::Notify,
            ],
            Applied,
        );
        assert!(tr.next.revert_owed());
        check_from(
            "13b (on_sync_failure: rollback): an overwrite still only pauses",
            fresh_with(Settings {
                on_sync_failure: SyncFailurePolicy::Rollback,
                ..Settings::default()
            }),
            &syncing5(),
            (
                30,
                Input::Overwritten {
                    reason: "k.yaml: newTag is 1.4.0".into(),
                },
            ),
            "paused (overwritten: k.yaml: newTag is 1.4.0)",
            &[K::Comment, K::SetStatus, K::Notify],
            Applied,
        );
    }

    #[test]
    fn rollback_effects_carry_commits_and_evidence() {
        let r = drive(
            fresh(),
            &plus(
                live5(),
                &[
                    (602, judged(Observation::Promote)),
                    (603, committed("c2", 10)),
                    (604, synced("c2")),
                ],
            ),
        );
        let tr = step(&r, judged(rollback_obs()), t(700));
        assert_eq!(
            tr.effects[0],
            Effect::Revert {
                deploy_id: "d-1".into(),
                commits: vec!["c1".into(), "c2".into()],
                reason: "judge: error_rate regressed at 10%".into(),
                evidence: "canary 4.1% vs baseline 0.3%, p=0.001".into(),
                find: vec!["d-1".into()],
                merges: vec![],
            }
        );
        assert!(tr.effects.contains(&Effect::Label {
            name: "deploy/rolled-back".into()
        }));
        assert!(tr.next.is_live(), "a revert is still owed");
        let done = step(&tr.next, Input::Reverted { sha: "r1".into() }, t(701)).next;
        assert!(!done.is_live());
        assert_eq!(
            done.rollback().and_then(|(_, revert)| revert.cloned()),
            Some(Revert::Done { sha: "r1".into() })
        );
    }

    #[test]
    fn a_whole_canary_rollout_walks_every_step_in_order() {
        let mut r = fresh();
        let mut clock = 0;
        let mut go = |r: &Rollout, input: Input, dt: i64| {
            clock += dt;
            let tr = step(r, input, t(clock));
            assert_ne!(tr.outcome, Outcome::Rejected, "{}", tr.note);
            tr
        };
        r = go(&r, assessed(Strategy::Canary5, false), 0).next;
        let mut commits = Vec::new();
        for (i, p) in [5u8, 10, 25, 50, 100].into_iter().enumerate() {
            let sha = format!("c{i}");
            r = go(&r, committed(&sha, p), 1).next;
            r = go(&r, synced(&sha), 1).next;
            assert_eq!(r.traffic(), w(p));
            commits.push(sha);
            r = go(&r, judged(Observation::Promote), 601).next;
        }
        assert_eq!(r.phase(), Phase::Complete);
        assert_eq!(
            r.commits.iter().map(|c| c.sha.clone()).collect::<Vec<_>>(),
            commits
        );
        assert!(!r.is_live());
    }

    #[test]
    fn outstanding_effects_say_what_a_restart_must_redo() {
        let committing = drive(fresh(), &committing5());
        assert_eq!(
            outstanding(&committing),
            vec![Effect::CommitStep {
                weight: w(5),
                image_tag: "sha-abc1234".into()
            }]
        );
        let syncing = drive(fresh(), &syncing5());
        assert!(matches!(
            outstanding(&syncing).as_slice(),
            [Effect::WaitForSync { revision, .. }] if revision == "c1"
        ));
        assert!(outstanding(&drive(fresh(), &live5())).is_empty());
        let awaiting = drive(fresh(), &[(0, assessed(Strategy::Canary10, true))]);
        assert!(matches!(
            outstanding(&awaiting).as_slice(),
            [Effect::OpenApprovalPr { weight, .. }] if *weight == w(10)
        ));
        let merging = drive(
            fresh(),
            &[
                (0, assessed(Strategy::Canary10, true)),
                (
                    1,
                    Input::Approved {
                        by: "bob".into(),
                        head: Some("h1".into()),
                    },
                ),
            ],
        );
        assert_eq!(
            outstanding(&merging),
            vec![Effect::MergeApprovalPr {
                head: Some("h1".into())
            }]
        );
        let rolled = drive(fresh(), &plus(live5(), &[(62, judged(rollback_obs()))]));
        assert!(matches!(
            outstanding(&rolled).as_slice(),
            [
                Effect::Revert { .. },
                Effect::Label { .. },
                Effect::HoldService { .. }
            ]
        ));
    }

    #[test]
    fn a_commit_landing_while_paused_is_tracked_and_resume_continues_at_the_next_step() {
        let r = drive(
            fresh(),
            &plus(
                live5(),
                &[
                    (602, judged(Observation::Promote)),
                    (603, cmd(Command::Pause, "carol")),
                    (604, committed("c2", 10)),
                    (605, synced("c2")),
                    (700, cmd(Command::Resume, "carol")),
                ],
            ),
        );
        assert_eq!(
            r.phase(),
            Phase::Canary {
                step: 1,
                weight: w(10)
            }
        );
        assert_eq!(r.traffic(), w(10));
        // The bake restarted at the resume: a promote right after is not enough.
        let tr = step(&r, judged(Observation::Promote), t(760));
        assert_eq!(tr.next.phase(), r.phase());
    }

    #[test]
    fn a_hold_cancels_an_earlier_promote_even_with_promote_skipping_the_bake() {
        let r = drive(
            fresh(),
            &plus(
                live5(),
                &[
                    (62, judged(Observation::Promote)),
                    (122, judged(inconclusive_obs())),
                    (123, cmd(Command::Promote, "carol")),
                    (700, judged(Observation::Continue)),
                ],
            ),
        );
        assert_eq!(
            r.phase().to_string(),
            CANARY5,
            "no promote stands: still at 5%"
        );
        let tr = step(&r, judged(Observation::Promote), t(760));
        assert_eq!(tr.next.phase(), Phase::ProgressiveRollout);
    }

    /// Audit rows and records written before approvals named their head still read.
    #[test]
    fn rows_written_before_approvals_named_their_head_still_read() {
        let effect: Effect = serde_json::from_str(r#"{"kind":"merge_approval_pr"}"#).unwrap();
        assert_eq!(effect, Effect::MergeApprovalPr { head: None });
        let input: Input = serde_json::from_str(r#"{"type":"approved","by":"bob"}"#).unwrap();
        assert_eq!(
            input,
            Input::Approved {
                by: "bob".into(),
                head: None
            }
        );
        let revert: Effect = serde_json::from_str(
            r#"{"kind":"revert","deploy_id":"d-1","commits":["c1"],"reason":"r","evidence":"e"}"#,
        )
        .unwrap();
        assert!(matches!(revert, Effect::Revert { find, .. } if find.is_empty()));
        let approval: Approval = serde_json::from_str(r#"{"kind":"required","by":"bob"}"#).unwrap();
        assert_eq!(
            approval,
            Approval::Required {
                by: Some("bob".into()),
                head: None
            }
        );
    }

    #[test]
    fn the_record_round_trips_through_json() {
        let r = drive(fresh(), &plus(live5(), &[(62, judged(rollback_obs()))]));
        let json = serde_json::to_string(&r).unwrap();
        let back: Rollout = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    mod properties {
        use super::*;
        use proptest::prelude::{
            Just, ProptestConfig, any, prop, prop_assert, prop_assert_eq, prop_oneof, proptest,
        };
        use proptest::strategy::Strategy as Gen;

        /// An input shape; made concrete against the current state so that random sequences
        /// mostly make progress instead of being rejected.
        #[derive(Debug, Clone)]
        enum Abstract {
            Assess(u8, bool),
            Approve(bool),
            Outdated,
            Unapproved(bool),
            Commit(bool),
            Sync(bool),
            SyncFail,
            Overwritten,
            MergeBlocked,
            Judge(u8),
            MetricsGone,
            Tick,
            Cmd(u8),
            Supersede,
            Revert,
            Fail(u8, bool),
            Wait(i64),
        }

        fn abstract_input() -> impl Gen<Value = Abstract> {
            prop_oneof![
                1 => (0u8..4, any::<bool>()).prop_map(|(s, a)| Abstract::Assess(s, a)),
                1 => any::<bool>().prop_map(Abstract::Approve),
                1 => Just(Abstract::Outdated),
                1 => any::<bool>().prop_map(Abstract::Unapproved),
                4 => prop::bool::weighted(0.9).prop_map(Abstract::Commit),
                4 => prop::bool::weighted(0.9).prop_map(Abstract::Sync),
                1 => Just(Abstract::SyncFail),
                1 => Just(Abstract::Overwritten),
                1 => Just(Abstract::MergeBlocked),
                8 => (0u8..8).prop_map(Abstract::Judge),
                1 => Just(Abstract::MetricsGone),
                3 => Just(Abstract::Tick),
                2 => (0u8..7).prop_map(Abstract::Cmd),
                1 => Just(Abstract::Supersede),
                1 => Just(Abstract::Revert),
                1 => (0u8..13, any::<bool>()).prop_map(|(k, tr)| Abstract::Fail(k, tr)),
                6 => (0i64..900).prop_map(Abstract::Wait),
            ]
        }

        const KINDS: [EffectKind; 13] = [
            K::CommitStep,
            K::OpenApprovalPr,
            K::MergeApprovalPr,
            K::Revert,
            K::CloseApprovalPr,
            K::Comment,
            K::Label,
            K::SetStatus,
            K::QueryMetrics,
            K::WaitForSync,
            K::Notify,
            K::HoldService,
            K::ReleaseService,
        ];

        fn concrete(a: &Abstract, r: &Rollout, n: usize) -> Option<Input> {
            let in_flight = r.step().map_or(Weight::FULL, |s| s.weight);
            Some(match a {
                Abstract::Assess(s, approval) => assessed(
                    [
                        Strategy::Direct,
                        Strategy::Canary5,
                        Strategy::Canary10,
                        Strategy::Canary25,
                    ][*s as usize],
                    *approval,
                ),
                Abstract::Approve(author) => Input::Approved {
                    by: if *author { "alice" } else { "bob" }.into(),
                    head: Some("h1".into()),
                },
                Abstract::Outdated => Input::ApprovalOutdated {
                    reason: "pushed".into(),
                },
                Abstract::Unapproved(revert) => Input::UnapprovedMerge {
                    by: "erin".into(),
                    merge_sha: format!("m{n}"),
                    reason: "0 of 1 approvals".into(),
                    revert: *revert,
                },
                Abstract::Commit(right) => Input::Committed {
                    sha: format!("c{n}"),
                    weight: if *right { in_flight } else { w(50) },
                },
                Abstract::Sync(right) => Input::Synced {
                    revision: match (r.step().map(|s| &s.progress), right) {
                        (Some(Progress::Syncing { revision, .. }), true) => revision.clone(),
                        _ => "elsewhere".into(),
                    },
                },
                Abstract::SyncFail => Input::SyncFailed {
                    reason: "Degraded".into(),
                },
                Abstract::Overwritten => Input::Overwritten {
                    reason: "k.yaml: newTag is 1.4.0".into(),
                },
                Abstract::MergeBlocked => Input::MergeBlocked {
                    reason: "Required status check \"ci\" is expected.".into(),
                },
                Abstract::Judge(k) => judged(match k {
                    0 | 1 => Observation::Continue,
                    2..=4 => Observation::Promote,
                    5 => rollback_obs(),
                    6 => inconclusive_obs(),
                    _ => Observation::Inconclusive {
                        reason: "no data".into(),
                        escalate: true,
                    },
                }),
                Abstract::MetricsGone => Input::MetricsUnavailable {
                    reason: "down".into(),
                },
                Abstract::Tick => Input::Tick,
                Abstract::Cmd(c) => cmd(
                    [
                        Command::Deploy,
                        Command::Promote,
                        Command::Pause,
                        Command::Resume,
                        Command::Rollback,
                        Command::Hold,
                        Command::HoldCancel,
                    ][*c as usize],
                    "ops",
                ),
                Abstract::Supersede => Input::Superseded {
                    by_deploy_id: "d-9".into(),
                },
                Abstract::Revert => Input::Reverted {
                    sha: format!("r{n}"),
                },
                Abstract::Fail(k, transient) => Input::EffectFailed {
                    effect: KINDS[*k as usize],
                    reason: "boom".into(),
                    transient: *transient,
                },
                Abstract::Wait(_) => return None,
            })
        }

        fn live_since(r: &Rollout) -> Option<DateTime<Utc>> {
            match r.step().map(|s| &s.progress) {
                Some(Progress::Live { since, .. }) => Some(*since),
                _ => None,
            }
        }

        /// What the rollout has put (or is putting) in the environment; an approval PR being
        /// merged has put nothing there until it is.
        fn applied(r: &Rollout) -> Weight {
            r.step()
                .filter(|s| {
                    !matches!(
                        s.progress,
                        Progress::Committing {
                            via_approval_pr: true,
                            ..
                        }
                    )
                })
                .map_or(Weight::ZERO, |s| s.weight)
                .max(r.traffic())
        }

        fn live_weight(r: &Rollout) -> Option<Weight> {
            r.step()
                .filter(|s| matches!(s.progress, Progress::Live { .. }))
                .map(|s| s.weight)
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
            #[test]
            fn rollouts_never_promote_without_the_judge(
                seq in prop::collection::vec(abstract_input(), 0..80)
            ) {
                let mut r = fresh();
                let mut clock = 0i64;
                // The model: the judge's last word since the current step went live, and the
                // weights the judge promoted.
                let mut last: Option<ObservationKind> = None;
                let mut promoted: Vec<Weight> = Vec::new();
                for (n, a) in seq.iter().enumerate() {
                    if let Abstract::Wait(s) = a {
                        clock += s;
                        continue;
                    }
                    clock += 1;
                    let Some(input) = concrete(a, &r, n) else { continue };
                    let tr = step(&r, input.clone(), t(clock));
                    let next = &tr.next;
                    if tr.outcome == Outcome::Rejected {
                        prop_assert_eq!(next, &r);
                        prop_assert!(tr.effects.is_empty());
                        continue;
                    }
                    if !r.is_live() {
                        prop_assert_eq!(&next.state, &r.state, "ended rollouts stay ended");
                    }
                    if r.phase().is_terminal() {
                        prop_assert_eq!(next.phase(), r.phase(), "terminal phases stay terminal");
                    }
                    if let Input::Judged(j) = &input {
                        last = Some(ObservationKind::of(&j.observation));
                    }
                    let advanced = match (live_weight(&r), next.step()) {
                        (Some(weight), s) => {
                            s.is_some_and(|s| s.weight > weight)
                                || (next.phase() == Phase::Complete && r.phase() != Phase::Complete)
                        }
                        _ => false,
                    };
                    if advanced {
                        prop_assert_eq!(
                            last, Some(ObservationKind::Promote),
                            "advanced from {:?} on {:?} without a standing Promote", r.state, input
                        );
                        promoted.push(r.traffic());
                    }
                    // While a rollout ships, its weights only rise; only a rollback takes traffic
                    // back, and an ended rollout ships nothing more.
                    if next.live().is_some() {
                        prop_assert!(applied(next) >= applied(&r), "weights only increase");
                    }
                    if live_since(next) != live_since(&r) {
                        last = None;
                    }
                    if next.phase() == Phase::Complete && r.phase() != Phase::Complete {
                        let plan = next.course().expect("assessed").plan.clone();
                        for weight in plan.weights() {
                            prop_assert!(
                                promoted.contains(weight),
                                "{} reached Complete without a Promote", weight
                            );
                        }
                    }
                    r = tr.next;
                }
            }
        }
    }
}
