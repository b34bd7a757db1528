//! The transition function: `step(rollout, input, now) -> Transition`. Pure: no I/O, no clock
//! (time is the `now` argument), no randomness. The transition table is in the module docs of
//! `crate::rollout`, and each of its rows is a test below.
//!
//! An input that makes no sense in the current phase is rejected with a reason and changes
//! nothing; nothing here panics on input.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::input::{Command, Effect, EffectKind, Input, Level, Notice, Observation, StatusState};
use super::plan::{Plan, Strategy, Weight};
use super::record::{
    CommitRecord, ObservationKind, Phase, Progress, RevertRecord, Rollout, Snapshot,
    SyncFailurePolicy, secs,
};

/// The label put on the app PR when a rollout is rolled back.
pub const ROLLED_BACK_LABEL: &str = "deploy/rolled-back";

/// What became of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The record changed or effects were asked for.
    Applied,
    /// Accepted, nothing to do (e.g. a tick with nothing due).
    Unchanged,
    /// Not valid in this phase; `note` says why. The record is unchanged.
    Rejected,
}

/// The result of one step: the next record, the effects the shell should run, and a one-line
/// explanation for the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub next: Rollout,
    pub effects: Vec<Effect>,
    pub decision: Decision,
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
            let decision = if m.r == *rollout && polls_only {
                Decision::Unchanged
            } else {
                m.r.updated_at = now;
                Decision::Applied
            };
            Transition {
                next: m.r,
                effects: m.effects,
                decision,
                note,
                at: now,
            }
        }
        Err(reason) => Transition {
            next: rollout.clone(),
            effects: Vec::new(),
            decision: Decision::Rejected,
            note: reason,
            at: now,
        },
    }
}

/// The effects a record says are still owed: what the shell re-issues after a restart or a
/// transient failure. Re-issuing is safe because every effect is idempotent.
pub fn outstanding(r: &Rollout) -> Vec<Effect> {
    if r.revert_owed() {
        // The label and the hold matter as much as the revert: until the revert is recorded,
        // a restart re-issues all three.
        let reason = r
            .revert
            .as_ref()
            .map(|v| v.reason.clone())
            .unwrap_or_default();
        return vec![
            revert_effect(r),
            Effect::Label {
                name: ROLLED_BACK_LABEL.into(),
            },
            Effect::HoldService { reason },
        ];
    }
    if r.phase.is_terminal() {
        return Vec::new();
    }
    match &r.progress {
        Progress::Committing {
            via_approval_pr: true,
            ..
        } => vec![Effect::MergeApprovalPr],
        Progress::Committing { weight, .. } => vec![Effect::CommitStep {
            weight: *weight,
            image_tag: r.image_tag.clone(),
        }],
        Progress::Syncing {
            revision, deadline, ..
        } => vec![Effect::WaitForSync {
            revision: revision.clone(),
            deadline: *deadline,
        }],
        Progress::Idle if r.phase == Phase::AwaitingApproval => first_weight(r)
            .map(|weight| Effect::OpenApprovalPr {
                weight,
                image_tag: r.image_tag.clone(),
            })
            .into_iter()
            .collect(),
        Progress::Idle | Progress::Live { .. } => Vec::new(),
    }
}

fn first_weight(r: &Rollout) -> Option<Weight> {
    r.plan.as_ref().and_then(|p| p.get(0))
}

fn revert_effect(r: &Rollout) -> Effect {
    let (reason, evidence) = r
        .revert
        .as_ref()
        .map(|v| (v.reason.clone(), v.evidence.clone()))
        .unwrap_or_default();
    Effect::Revert {
        deploy_id: r.deploy_id.clone(),
        commits: r.commits.iter().map(|c| c.sha.clone()).collect(),
        reason,
        evidence,
    }
}

type Outcome = Result<String, String>;

struct Machine {
    r: Rollout,
    effects: Vec<Effect>,
    now: DateTime<Utc>,
}

impl Machine {
    fn apply(&mut self, input: Input) -> Outcome {
        match input {
            Input::Assessed {
                risk_score,
                strategy,
                approval_required,
            } => self.assessed(risk_score, strategy, approval_required),
            Input::Approved { by } => self.approved(by),
            Input::ApprovalRevoked => match self.r.phase {
                Phase::AwaitingApproval => Ok("approval withdrawn; still waiting".into()),
                _ => Err(self.not_in_phase("an approval change")),
            },
            Input::Committed { sha, weight } => self.committed(sha, weight),
            Input::Synced { revision } => self.synced(revision),
            Input::SyncFailed { reason } => self.sync_failed(reason),
            Input::Judged(observation) => self.judged(observation),
            Input::MetricsUnavailable { reason } => {
                self.require_analysis_window("metrics")?;
                self.pause(format!("metrics unavailable: {reason}"), true);
                Ok("metrics unavailable: paused, never promoting blind".into())
            }
            Input::Tick => Ok(self.tick()),
            Input::Command { cmd, by } => self.command(cmd, by),
            Input::Superseded { by_deploy_id } => {
                self.require_live("superseding")?;
                // Progress is kept: the record still says what was applied when it was replaced.
                self.r.phase = Phase::Superseded;
                self.r.resume_to = None;
                self.effects.push(Effect::Comment {
                    notice: Notice::Superseded {
                        by_deploy_id: by_deploy_id.clone(),
                    },
                });
                self.status(StatusState::Error);
                Ok(format!("superseded by {by_deploy_id}"))
            }
            Input::Reverted { sha } => {
                if !self.r.revert_owed() {
                    return Err("no revert is owed".into());
                }
                if let Some(v) = self.r.revert.as_mut() {
                    v.sha = Some(sha.clone());
                }
                self.r.retry_at = None;
                Ok(format!("reverted as {sha}"))
            }
            Input::EffectFailed {
                effect,
                reason,
                transient,
            } => self.effect_failed(effect, reason, transient),
        }
    }

    fn not_in_phase(&self, what: &str) -> String {
        format!("{what} is not valid in phase {}", self.r.phase)
    }

    fn require_live(&self, what: &str) -> Result<(), String> {
        if self.r.phase.is_terminal() {
            Err(format!("{what}: the rollout is already {}", self.r.phase))
        } else {
            Ok(())
        }
    }

    /// Judgements and metric failures only count while a step is live and being judged.
    fn require_analysis_window(&self, what: &str) -> Result<(), String> {
        let judged_phase = matches!(self.r.phase, Phase::Canary { .. } | Phase::Verification);
        if judged_phase && matches!(self.r.progress, Progress::Live { .. }) {
            Ok(())
        } else {
            Err(format!(
                "{what} ignored: no analysis window is open in phase {}",
                self.r.phase
            ))
        }
    }

    fn status(&mut self, state: StatusState) {
        self.effects.push(Effect::SetStatus {
            state,
            phase: self.r.phase.clone(),
        });
    }

    fn assessed(&mut self, risk_score: f64, strategy: Strategy, approval: bool) -> Outcome {
        if self.r.phase != Phase::RiskAssessment {
            return Err(self.not_in_phase("an assessment"));
        }
        if !(0.0..=1.0).contains(&risk_score) {
            return Err(format!("risk score {risk_score} is not within 0..=1"));
        }
        let plan = Plan::for_strategy(strategy, &self.r.settings.canary_plan);
        let first = plan.get(0).unwrap_or(Weight::FULL);
        let note = format!("{strategy} (risk {risk_score:.2}): plan {plan}");
        self.r.risk_score = Some(risk_score);
        self.r.strategy = Some(strategy);
        self.r.plan = Some(plan);
        self.r.approval_required = approval;
        if approval {
            self.r.phase = Phase::AwaitingApproval;
            self.effects.push(Effect::OpenApprovalPr {
                weight: first,
                image_tag: self.r.image_tag.clone(),
            });
            self.effects.push(Effect::Comment {
                notice: Notice::AwaitingApproval,
            });
            self.status(StatusState::Pending);
            Ok(format!("{note}; waiting for approval"))
        } else {
            self.begin_first_step(false);
            Ok(note)
        }
    }

    fn approved(&mut self, by: String) -> Outcome {
        if self.r.phase != Phase::AwaitingApproval {
            return Err(self.not_in_phase("an approval"));
        }
        if by.eq_ignore_ascii_case(&self.r.author) {
            return Err(format!(
                "@{by} wrote the change and cannot approve its rollout"
            ));
        }
        self.r.approved_by = Some(by.clone());
        self.begin_first_step(true);
        Ok(format!("approved by @{by}"))
    }

    fn begin_first_step(&mut self, via_approval_pr: bool) {
        let w = first_weight(&self.r).unwrap_or(Weight::FULL);
        self.r.phase = if w.is_full() {
            Phase::FullRollout
        } else {
            Phase::Canary { step: 0, weight: w }
        };
        self.r.progress = Progress::Committing {
            weight: w,
            since: self.now,
            via_approval_pr,
        };
        self.effects.push(if via_approval_pr {
            Effect::MergeApprovalPr
        } else {
            Effect::CommitStep {
                weight: w,
                image_tag: self.r.image_tag.clone(),
            }
        });
        self.effects.push(Effect::Comment {
            notice: Notice::StepStarted { weight: w },
        });
        self.status(StatusState::Pending);
    }

    /// The phase the rollout is in, or returns to when paused.
    fn effective_phase(&mut self) -> &mut Phase {
        match (&self.r.phase, &mut self.r.resume_to) {
            (Phase::Paused { .. }, Some(to)) => to.as_mut(),
            _ => &mut self.r.phase,
        }
    }

    fn committed(&mut self, sha: String, weight: Weight) -> Outcome {
        self.require_live("a commit")?;
        match self.r.progress {
            Progress::Committing { weight: w, .. } if w == weight => {}
            Progress::Committing { weight: w, .. } => {
                return Err(format!(
                    "commit {sha} is for {weight} but the step in flight is {w}"
                ));
            }
            _ => return Err(format!("commit {sha} reported but no commit is in flight")),
        }
        let step = self.r.plan.as_ref().and_then(|p| p.position(weight));
        let phase = self.effective_phase();
        if *phase == Phase::ProgressiveRollout
            && let Some(step) = step
        {
            *phase = Phase::Canary { step, weight };
        }
        self.r.commits.push(CommitRecord {
            sha: sha.clone(),
            weight,
            at: self.now,
        });
        let deadline = self.now + secs(self.r.settings.sync_timeout_secs);
        self.r.progress = Progress::Syncing {
            weight,
            revision: sha.clone(),
            deadline,
        };
        self.r.retry_at = None;
        self.effects.push(Effect::WaitForSync {
            revision: sha.clone(),
            deadline,
        });
        Ok(format!("committed {weight} as {sha}; waiting for sync"))
    }

    fn synced(&mut self, revision: String) -> Outcome {
        self.require_live("a sync")?;
        let weight = match &self.r.progress {
            Progress::Syncing {
                weight,
                revision: r,
                ..
            } if *r == revision => *weight,
            _ => return Err(format!("revision {revision} is not the one being synced")),
        };
        self.r.canary_weight = weight;
        self.r.progress = Progress::Live {
            weight,
            since: self.now,
            last_query_at: None,
            last_observation: None,
            skip_bake: false,
        };
        self.r.hold_intervals = 0;
        let phase = self.effective_phase();
        if *phase == Phase::FullRollout {
            *phase = Phase::Verification;
            self.effects.push(Effect::Comment {
                notice: Notice::Verifying,
            });
            if !matches!(self.r.phase, Phase::Paused { .. }) {
                self.status(StatusState::Pending);
            }
        }
        Ok(format!("{weight} synced and healthy; analysis window open"))
    }

    fn sync_failed(&mut self, reason: String) -> Outcome {
        self.require_live("a sync failure")?;
        if !matches!(self.r.progress, Progress::Syncing { .. }) {
            return Err("a sync failure reported but nothing is syncing".into());
        }
        if matches!(self.r.phase, Phase::Paused { .. }) {
            return Ok(format!("sync failed while paused: {reason}"));
        }
        match self.r.settings.on_sync_failure {
            SyncFailurePolicy::Pause => {
                self.pause(format!("sync failed: {reason}"), true);
                Ok("sync failed: paused".into())
            }
            SyncFailurePolicy::Rollback => {
                self.rollback(format!("sync failed: {reason}"), reason);
                Ok("sync failed: rolling back".into())
            }
        }
    }

    fn judged(&mut self, observation: Observation) -> Outcome {
        self.require_analysis_window("a judgement")?;
        let Progress::Live {
            weight,
            since,
            skip_bake,
            ..
        } = self.r.progress
        else {
            return Err("no step is live".into());
        };
        self.r.latest = Some(Snapshot {
            at: self.now,
            weight,
            observation: observation.clone(),
        });
        let kind = match observation {
            Observation::Continue => ObservationKind::Continue,
            Observation::Promote => ObservationKind::Promote,
            Observation::Rollback { .. } => ObservationKind::Rollback,
            Observation::Hold { .. } => ObservationKind::Hold,
        };
        if let Progress::Live {
            last_observation, ..
        } = &mut self.r.progress
        {
            *last_observation = Some(kind);
        }
        match observation {
            Observation::Continue => {
                self.r.hold_intervals = 0;
                Ok(format!("judge: continue at {weight}"))
            }
            Observation::Promote => {
                self.r.hold_intervals = 0;
                let bake = secs(self.bake_secs());
                let remaining = (since + bake) - self.now;
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
                Ok(format!("judge: rollback on {metric}"))
            }
            Observation::Hold { reason, escalate } => {
                self.r.hold_intervals += 1;
                let n = self.r.hold_intervals;
                if escalate || n > self.r.settings.max_hold_intervals {
                    self.pause(
                        format!("judge inconclusive for {n} interval(s): {reason}"),
                        true,
                    );
                    Ok(format!("judge: hold #{n}: paused"))
                } else {
                    Ok(format!("judge: hold #{n}: {reason}"))
                }
            }
        }
    }

    fn bake_secs(&self) -> u64 {
        if self.r.phase == Phase::Verification {
            self.r.settings.verification_secs
        } else {
            self.r.settings.bake_secs
        }
    }

    /// Moves past the live step: to the next weight, or from verification to complete.
    fn advance(&mut self) -> String {
        self.r.hold_intervals = 0;
        if self.r.phase == Phase::Verification {
            self.r.phase = Phase::Complete;
            self.r.progress = Progress::Idle;
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
        let Phase::Canary { step, weight } = self.r.phase else {
            return "nothing to advance".into();
        };
        let Some(next) = self.r.plan.as_ref().and_then(|p| p.get(step + 1)) else {
            return "the plan has no further step".into();
        };
        self.r.phase = if next.is_full() {
            Phase::FullRollout
        } else {
            Phase::ProgressiveRollout
        };
        self.r.progress = Progress::Committing {
            weight: next,
            since: self.now,
            via_approval_pr: false,
        };
        self.effects.push(Effect::CommitStep {
            weight: next,
            image_tag: self.r.image_tag.clone(),
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

    fn pause(&mut self, reason: String, alert: bool) {
        if !matches!(self.r.phase, Phase::Paused { .. }) {
            self.r.resume_to = Some(Box::new(self.r.phase.clone()));
        }
        self.r.phase = Phase::Paused {
            reason: reason.clone(),
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
        let to = self
            .r
            .resume_to
            .take()
            .map(|b| *b)
            .unwrap_or(Phase::RiskAssessment);
        self.r.phase = to;
        self.r.hold_intervals = 0;
        // A pause means the time was not watched (or watched badly): the bake starts again and
        // a fresh Promote is needed.
        let now = self.now;
        let timeout = secs(self.r.settings.sync_timeout_secs);
        match &mut self.r.progress {
            Progress::Live {
                since,
                last_query_at,
                last_observation,
                skip_bake,
                ..
            } => {
                *since = now;
                *last_query_at = None;
                *last_observation = None;
                *skip_bake = false;
            }
            Progress::Syncing { deadline, .. } if *deadline <= now => {
                *deadline = now + timeout;
            }
            _ => {}
        }
        self.effects.extend(outstanding(&self.r));
        self.effects.push(Effect::Comment { notice });
        self.status(StatusState::Pending);
    }

    fn rollback(&mut self, reason: String, evidence: String) {
        let applied = !self.r.commits.is_empty() || self.r.progress != Progress::Idle;
        self.r.phase = Phase::RolledBack;
        self.r.progress = Progress::Idle;
        self.r.resume_to = None;
        self.r.retry_at = None;
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
        self.r.revert = Some(RevertRecord {
            reason: reason.clone(),
            evidence: evidence.clone(),
            requested_at: self.now,
            sha: None,
            failed: None,
        });
        self.effects.insert(0, revert_effect(&self.r));
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

    fn tick(&mut self) -> String {
        let now = self.now;
        if self.r.retry_at.is_some_and(|t| t <= now) {
            self.r.retry_at = None;
            let owed = outstanding(&self.r);
            if !owed.is_empty() {
                self.effects.extend(owed);
                return "retrying outstanding effects".into();
            }
        }
        if self.r.phase.is_terminal() || matches!(self.r.phase, Phase::Paused { .. }) {
            return format!("{}: nothing due", self.r.phase.name());
        }
        match self.r.progress {
            Progress::Syncing { deadline, .. } if deadline <= now => {
                let reason = format!("not synced and healthy by {}", deadline.to_rfc3339());
                match self.sync_failed(reason) {
                    Ok(note) | Err(note) => note,
                }
            }
            // Sync is polled: each tick asks again whether the revision is live, so a waiting
            // runner never blocks the loop and a lost answer is asked again.
            Progress::Syncing {
                ref revision,
                deadline,
                ..
            } => {
                self.effects.push(Effect::WaitForSync {
                    revision: revision.clone(),
                    deadline,
                });
                "syncing: asking again".into()
            }
            Progress::Live {
                since,
                last_query_at,
                ..
            } if matches!(self.r.phase, Phase::Canary { .. } | Phase::Verification) => {
                let interval = self.r.settings.analysis_interval_secs;
                let due = last_query_at.unwrap_or(since) + secs(interval);
                if due > now {
                    return "analysis not due".into();
                }
                if let Progress::Live { last_query_at, .. } = &mut self.r.progress {
                    *last_query_at = Some(now);
                }
                self.effects.push(Effect::QueryMetrics {
                    window_secs: interval,
                });
                "analysis due: querying metrics".into()
            }
            _ => "nothing due".into(),
        }
    }

    fn command(&mut self, cmd: Command, by: String) -> Outcome {
        match cmd {
            Command::Deploy => Err(format!(
                "{} starts a new rollout; this one ({}) is already {}",
                cmd.as_str(),
                self.r.deploy_id,
                self.r.phase
            )),
            Command::Promote => {
                self.require_analysis_window("/promote")?;
                if let Progress::Live {
                    last_observation,
                    skip_bake,
                    ..
                } = &mut self.r.progress
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
                if matches!(self.r.phase, Phase::Paused { .. }) {
                    return Err("already paused".into());
                }
                self.pause(format!("paused by @{by}"), false);
                Ok(format!("paused by @{by}"))
            }
            Command::Resume => {
                if !matches!(self.r.phase, Phase::Paused { .. }) {
                    return Err(self.not_in_phase("/resume"));
                }
                if self.r.held {
                    return Err("an emergency hold is in force: /hold cancel lifts it".into());
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
                Ok(format!("rolled back by @{by}"))
            }
            Command::Hold => {
                self.require_live("/hold")?;
                if self.r.held {
                    return Err("already held".into());
                }
                self.r.held = true;
                let reason = format!("emergency hold by @{by}");
                self.pause(reason.clone(), false);
                self.effects.push(Effect::HoldService { reason });
                self.effects.push(Effect::Notify {
                    level: Level::Warn,
                    notice: Notice::Held { by: by.clone() },
                });
                Ok(format!("held by @{by}"))
            }
            Command::HoldCancel => {
                if !self.r.held || self.r.phase.is_terminal() {
                    return Err("no emergency hold is in force".into());
                }
                self.r.held = false;
                self.effects.push(Effect::ReleaseService);
                self.resume(Notice::HoldReleased { by: by.clone() });
                Ok(format!("hold lifted by @{by}"))
            }
        }
    }

    fn effect_failed(&mut self, effect: EffectKind, reason: String, transient: bool) -> Outcome {
        let what = format!("{effect:?} failed: {reason}");
        if transient {
            if !self.r.is_live() {
                return Ok(format!("{what} (rollout over; not retried)"));
            }
            self.r.retry_at = Some(self.now + secs(self.r.settings.retry_after_secs));
            return Ok(format!(
                "{what}; retrying after {}s",
                self.r.settings.retry_after_secs
            ));
        }
        match effect {
            EffectKind::CommitStep | EffectKind::MergeApprovalPr | EffectKind::OpenApprovalPr => {
                self.require_live("a failed commit")?;
                self.r.phase = Phase::Failed {
                    reason: what.clone(),
                };
                self.r.resume_to = None;
                self.effects.push(Effect::Comment {
                    notice: Notice::Failed {
                        reason: what.clone(),
                    },
                });
                self.status(StatusState::Error);
                self.effects.push(Effect::Notify {
                    level: Level::Critical,
                    notice: Notice::Failed {
                        reason: what.clone(),
                    },
                });
                Ok(what)
            }
            EffectKind::Revert => {
                if !self.r.revert_owed() {
                    return Err("a revert failure reported but no revert is owed".into());
                }
                if let Some(v) = self.r.revert.as_mut() {
                    v.failed = Some(reason.clone());
                }
                self.effects.push(Effect::Comment {
                    notice: Notice::RevertFailed {
                        reason: reason.clone(),
                    },
                });
                self.effects.push(Effect::Notify {
                    level: Level::Critical,
                    notice: Notice::RevertFailed { reason },
                });
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
    use crate::rollout::record::Settings;
    use crate::rollout::testing::{t, trigger};
    use EffectKind as K;

    fn fresh_with(settings: Settings) -> Rollout {
        Rollout::new(trigger("d-1", "checkout", "production"), settings, t(0))
    }

    fn fresh() -> Rollout {
        fresh_with(Settings::default())
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
        Input::Judged(o)
    }
    fn rollback_obs() -> Observation {
        Observation::Rollback {
            metric: "error_rate".into(),
            evidence: "canary 4.1% vs baseline 0.3%, p=0.001".into(),
        }
    }
    fn hold_obs() -> Observation {
        Observation::Hold {
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
                tr.decision,
                Decision::Rejected,
                "setup input {input:?} rejected: {}",
                tr.note
            );
            r = tr.next;
        }
        r
    }

    /// One row of the transition table: from the state `given` builds, `when` leads to `phase`
    /// (its Display) with exactly `effects` (in order) and `decision`.
    #[track_caller]
    fn check_from(
        start: Rollout,
        given: &[(i64, Input)],
        when: (i64, Input),
        phase: &str,
        effects: &[EffectKind],
        decision: Decision,
    ) -> Transition {
        let before = drive(start, given);
        let tr = step(&before, when.1.clone(), t(when.0));
        let kinds: Vec<EffectKind> = tr.effects.iter().map(Effect::kind).collect();
        assert_eq!(
            (
                tr.next.phase.to_string().as_str(),
                kinds.as_slice(),
                tr.decision
            ),
            (phase, effects, decision),
            "input {:?}: {}",
            when.1,
            tr.note
        );
        if decision == Decision::Rejected {
            assert_eq!(tr.next, before, "a rejected input must change nothing");
            assert!(!tr.note.is_empty(), "a rejection must say why");
        }
        tr
    }

    #[track_caller]
    fn check(
        given: &[(i64, Input)],
        when: (i64, Input),
        phase: &str,
        effects: &[EffectKind],
        decision: Decision,
    ) -> Transition {
        check_from(fresh(), given, when, phase, effects, decision)
    }

    use Decision::{Applied, Rejected, Unchanged};

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
            &[],
            (0, assessed(Strategy::Canary5, false)),
            CANARY5,
            &st,
            Applied,
        );
        check(
            &[],
            (0, assessed(Strategy::Direct, false)),
            "full_rollout",
            &st,
            Applied,
        );
        check(
            &[],
            (0, assessed(Strategy::Canary10, true)),
            "awaiting_approval",
            &[K::OpenApprovalPr, K::Comment, K::SetStatus],
            Applied,
        );
        check(
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
        let by = |who: &str| Input::Approved { by: who.into() };
        check(
            &awaiting,
            (5, by("bob")),
            "canary (step 1, 10%)",
            &[K::MergeApprovalPr, K::Comment, K::SetStatus],
            Applied,
        );
        check(
            &awaiting,
            (5, by("Alice")),
            "awaiting_approval",
            &[],
            Rejected,
        );
        check(
            &awaiting,
            (5, Input::ApprovalRevoked),
            "awaiting_approval",
            &[],
            Unchanged,
        );
        // 8-13: commit and sync.
        check(
            &committing5(),
            (1, committed("c1", 5)),
            CANARY5,
            &[K::WaitForSync],
            Applied,
        );
        check(
            &committing5(),
            (1, committed("c1", 10)),
            CANARY5,
            &[],
            Rejected,
        );
        check(&syncing5(), (2, synced("c1")), CANARY5, &[], Applied);
        check(&syncing5(), (2, synced("zzz")), CANARY5, &[], Rejected);
        check(
            &syncing5(),
            (602, Input::Tick),
            "paused (sync failed: not synced and healthy by 2026-11-26T10:10:01+00:00)",
            &alert,
            Applied,
        );
        check(
            &syncing5(),
            (30, Input::Tick),
            CANARY5,
            &[K::WaitForSync],
            Unchanged,
        );
        check(
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
        // 14-17: analysis.
        check(
            &live5(),
            (62, Input::Tick),
            CANARY5,
            &[K::QueryMetrics],
            Applied,
        );
        check(&live5(), (30, Input::Tick), CANARY5, &[], Unchanged);
        check(
            &live5(),
            (62, judged(Observation::Continue)),
            CANARY5,
            &[],
            Applied,
        );
        check(
            &live5(),
            (100, judged(Observation::Promote)),
            CANARY5,
            &[],
            Applied,
        );
        // 18-20: promotion.
        check(
            &live5(),
            (602, judged(Observation::Promote)),
            "progressive_rollout",
            &st,
            Applied,
        );
        check(
            &live50(),
            (1402, judged(Observation::Promote)),
            "full_rollout",
            &st,
            Applied,
        );
        check(
            &plus(live5(), &[(602, judged(Observation::Promote))]),
            (603, committed("c2", 10)),
            "canary (step 2, 10%)",
            &[K::WaitForSync],
            Applied,
        );
        // 21-25: rollback, hold, missing metrics.
        check(
            &live5(),
            (62, judged(rollback_obs())),
            "rolled_back",
            &revert,
            Applied,
        );
        check(
            &plus(
                live5(),
                &[(62, judged(hold_obs())), (122, judged(hold_obs()))],
            ),
            (182, judged(hold_obs())),
            CANARY5,
            &[],
            Applied,
        );
        check(
            &plus(
                live5(),
                &[
                    (62, judged(hold_obs())),
                    (122, judged(hold_obs())),
                    (182, judged(hold_obs())),
                ],
            ),
            (242, judged(hold_obs())),
            "paused (judge inconclusive for 4 interval(s): 12 samples, need 30)",
            &alert,
            Applied,
        );
        check(
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
            &syncing5(),
            (62, judged(Observation::Promote)),
            CANARY5,
            &[],
            Rejected,
        );
        // 26-27: /promote.
        check(
            &plus(live5(), &[(100, judged(Observation::Promote))]),
            (101, cmd(Command::Promote, "carol")),
            "progressive_rollout",
            &st,
            Applied,
        );
        check(
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
            &full_syncing,
            (2, synced("c1")),
            "verification",
            &[K::Comment, K::SetStatus],
            Applied,
        );
        check(
            &verifying(),
            (602, judged(Observation::Promote)),
            "complete",
            &[K::Comment, K::SetStatus, K::Notify],
            Applied,
        );
        check(
            &verifying(),
            (62, judged(rollback_obs())),
            "rolled_back",
            &revert,
            Applied,
        );
        // 31-33: pause and resume.
        let paused = plus(live5(), &[(100, cmd(Command::Pause, "carol"))]);
        check(
            &live5(),
            (100, cmd(Command::Pause, "carol")),
            "paused (paused by @carol)",
            &[K::Comment, K::SetStatus],
            Applied,
        );
        check(
            &paused,
            (200, cmd(Command::Resume, "carol")),
            CANARY5,
            &[K::Comment, K::SetStatus],
            Applied,
        );
        check(
            &paused,
            (200, judged(Observation::Promote)),
            "paused (paused by @carol)",
            &[],
            Rejected,
        );
        // 34: /rollback, with and without anything committed.
        check(
            &live5(),
            (100, cmd(Command::Rollback, "dave")),
            "rolled_back",
            &revert,
            Applied,
        );
        check(
            &awaiting,
            (5, cmd(Command::Rollback, "dave")),
            "rolled_back",
            &[K::Comment, K::SetStatus],
            Applied,
        );
        // 35-37: emergency hold.
        let held = plus(live5(), &[(100, cmd(Command::Hold, "erin"))]);
        check(
            &live5(),
            (100, cmd(Command::Hold, "erin")),
            "paused (emergency hold by @erin)",
            &[K::Comment, K::SetStatus, K::HoldService, K::Notify],
            Applied,
        );
        check(
            &held,
            (200, cmd(Command::Resume, "erin")),
            "paused (emergency hold by @erin)",
            &[],
            Rejected,
        );
        check(
            &held,
            (200, cmd(Command::HoldCancel, "erin")),
            CANARY5,
            &[K::ReleaseService, K::Comment, K::SetStatus],
            Applied,
        );
        // 38: superseded.
        check(
            &live5(),
            (
                100,
                Input::Superseded {
                    by_deploy_id: "d-2".into(),
                },
            ),
            "superseded",
            &[K::Comment, K::SetStatus],
            Applied,
        );
        // 39-40: terminal phases.
        let rolled = plus(live5(), &[(62, judged(rollback_obs()))]);
        check(
            &rolled,
            (70, Input::Reverted { sha: "r1".into() }),
            "rolled_back",
            &[],
            Applied,
        );
        check(
            &rolled,
            (70, cmd(Command::Resume, "x")),
            "rolled_back",
            &[],
            Rejected,
        );
        check(
            &rolled,
            (70, cmd(Command::Rollback, "x")),
            "rolled_back",
            &[],
            Rejected,
        );
        check(
            &rolled,
            (70, committed("c9", 5)),
            "rolled_back",
            &[],
            Rejected,
        );
        let complete = plus(verifying(), &[(602, judged(Observation::Promote))]);
        check(
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
            &complete,
            (700, cmd(Command::Hold, "x")),
            "complete",
            &[],
            Rejected,
        );
        check(&complete, (700, Input::Tick), "complete", &[], Unchanged);
        // 41-42: transient failure and retry.
        let failed_once = Input::EffectFailed {
            effect: K::CommitStep,
            reason: "pushing branch main: connection reset".into(),
            transient: true,
        };
        check(
            &committing5(),
            (1, failed_once.clone()),
            CANARY5,
            &[],
            Applied,
        );
        let retrying = plus(committing5(), &[(1, failed_once)]);
        check(&retrying, (10, Input::Tick), CANARY5, &[], Unchanged);
        check(
            &retrying,
            (31, Input::Tick),
            CANARY5,
            &[K::CommitStep],
            Applied,
        );
        // 43-44: permanent failures.
        check(
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
            &live5(),
            (100, cmd(Command::Deploy, "x")),
            CANARY5,
            &[],
            Rejected,
        );
    }

    #[test]
    fn sync_failure_can_roll_back_instead_of_pausing() {
        let settings = Settings {
            on_sync_failure: SyncFailurePolicy::Rollback,
            ..Settings::default()
        };
        let tr = check_from(
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
            }
        );
        assert!(tr.effects.contains(&Effect::Label {
            name: "deploy/rolled-back".into()
        }));
        assert!(tr.next.is_live(), "a revert is still owed");
        let done = step(&tr.next, Input::Reverted { sha: "r1".into() }, t(701)).next;
        assert!(!done.is_live());
        assert_eq!(done.revert.unwrap().sha.as_deref(), Some("r1"));
    }

    #[test]
    fn a_whole_canary_rollout_walks_every_step_in_order() {
        let mut r = fresh();
        let mut clock = 0;
        let mut go = |r: &Rollout, input: Input, dt: i64| {
            clock += dt;
            let tr = step(r, input, t(clock));
            assert_ne!(tr.decision, Decision::Rejected, "{}", tr.note);
            tr
        };
        r = go(&r, assessed(Strategy::Canary5, false), 0).next;
        let mut commits = Vec::new();
        for (i, p) in [5u8, 10, 25, 50, 100].into_iter().enumerate() {
            let sha = format!("c{i}");
            r = go(&r, committed(&sha, p), 1).next;
            r = go(&r, synced(&sha), 1).next;
            assert_eq!(r.canary_weight, w(p));
            commits.push(sha);
            r = go(&r, judged(Observation::Promote), 601).next;
        }
        assert_eq!(r.phase, Phase::Complete);
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
                (1, Input::Approved { by: "bob".into() }),
            ],
        );
        assert_eq!(outstanding(&merging), vec![Effect::MergeApprovalPr]);
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
            r.phase,
            Phase::Canary {
                step: 1,
                weight: w(10)
            }
        );
        assert_eq!(r.canary_weight, w(10));
        // The bake restarted at the resume: a promote right after is not enough.
        let tr = step(&r, judged(Observation::Promote), t(760));
        assert_eq!(tr.next.phase, r.phase);
    }

    #[test]
    fn a_hold_cancels_an_earlier_promote_even_with_promote_skipping_the_bake() {
        let r = drive(
            fresh(),
            &plus(
                live5(),
                &[
                    (62, judged(Observation::Promote)),
                    (122, judged(hold_obs())),
                    (123, cmd(Command::Promote, "carol")),
                    (700, judged(Observation::Continue)),
                ],
            ),
        );
        assert_eq!(
            r.phase.to_string(),
            CANARY5,
            "no promote stands: still at 5%"
        );
        let tr = step(&r, judged(Observation::Promote), t(760));
        assert_eq!(tr.next.phase, Phase::ProgressiveRollout);
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
            Commit(bool),
            Sync(bool),
            SyncFail,
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
                4 => prop::bool::weighted(0.9).prop_map(Abstract::Commit),
                4 => prop::bool::weighted(0.9).prop_map(Abstract::Sync),
                1 => Just(Abstract::SyncFail),
                8 => (0u8..8).prop_map(Abstract::Judge),
                1 => Just(Abstract::MetricsGone),
                3 => Just(Abstract::Tick),
                2 => (0u8..7).prop_map(Abstract::Cmd),
                1 => Just(Abstract::Supersede),
                1 => Just(Abstract::Revert),
                1 => (0u8..12, any::<bool>()).prop_map(|(k, tr)| Abstract::Fail(k, tr)),
                6 => (0i64..900).prop_map(Abstract::Wait),
            ]
        }

        const KINDS: [EffectKind; 12] = [
            K::CommitStep,
            K::OpenApprovalPr,
            K::MergeApprovalPr,
            K::Revert,
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
            let in_flight = r.progress.weight().unwrap_or(Weight::FULL);
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
                },
                Abstract::Commit(right) => Input::Committed {
                    sha: format!("c{n}"),
                    weight: if *right { in_flight } else { w(50) },
                },
                Abstract::Sync(right) => Input::Synced {
                    revision: match (&r.progress, right) {
                        (Progress::Syncing { revision, .. }, true) => revision.clone(),
                        _ => "elsewhere".into(),
                    },
                },
                Abstract::SyncFail => Input::SyncFailed {
                    reason: "Degraded".into(),
                },
                Abstract::Judge(k) => judged(match k {
                    0 | 1 => Observation::Continue,
                    2..=4 => Observation::Promote,
                    5 => rollback_obs(),
                    6 => hold_obs(),
                    _ => Observation::Hold {
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
            match r.progress {
                Progress::Live { since, .. } => Some(since),
                _ => None,
            }
        }

        fn applied(r: &Rollout) -> Weight {
            r.progress
                .weight()
                .unwrap_or(Weight::ZERO)
                .max(r.canary_weight)
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
                    if tr.decision == Decision::Rejected {
                        prop_assert_eq!(next, &r);
                        prop_assert!(tr.effects.is_empty());
                        continue;
                    }
                    if r.phase.is_terminal() {
                        prop_assert_eq!(&next.phase, &r.phase, "terminal phases stay terminal");
                    }
                    if let Input::Judged(o) = &input {
                        last = Some(match o {
                            Observation::Continue => ObservationKind::Continue,
                            Observation::Promote => ObservationKind::Promote,
                            Observation::Rollback { .. } => ObservationKind::Rollback,
                            Observation::Hold { .. } => ObservationKind::Hold,
                        });
                    }
                    let advanced = match (&r.progress, &next.progress) {
                        (Progress::Live { weight, .. }, p) => {
                            p.weight().is_some_and(|nw| nw > *weight)
                                || (next.phase == Phase::Complete && r.phase != Phase::Complete)
                        }
                        _ => false,
                    };
                    if advanced {
                        prop_assert_eq!(
                            last, Some(ObservationKind::Promote),
                            "advanced from {:?} on {:?} without a standing Promote", r.progress, input
                        );
                        promoted.push(r.canary_weight);
                    }
                    if next.phase != Phase::RolledBack {
                        prop_assert!(applied(next) >= applied(&r), "weights only increase");
                    }
                    if live_since(next) != live_since(&r) {
                        last = None;
                    }
                    if next.phase == Phase::Complete && r.phase != Phase::Complete {
                        let plan = next.plan.clone().expect("assessed");
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
