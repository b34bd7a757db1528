//! Rollout records as versions before the `State` sum type stored them (format 1: a flat record
//! with `phase`, `progress`, `canary_weight`, `resume_to`, `held`, `revert`, ...), frozen here
//! and upgraded to today's [`Rollout`]. The store decodes every record through [`decode`] and
//! rewrites old ones once (its migration 0006), so nothing else reads format 1.
//!
//! Two facts format 1 never stored are filled in, and say so: who superseded a rollout (the
//! audit trail has it) and why a rollout with nothing committed was rolled back.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::plan::{Plan, Weight};
use super::record::{
    Approval, CommitRecord, Course, End, Live, ObservationKind, Pause, Phase, Progress, Release,
    Revert, Rollback, Rollout, Settings, Snapshot, State, Step, Target,
};
use crate::risk::Strategy;

/// Reads a stored record, today's or format 1.
pub fn decode(json: &str) -> Result<Rollout, String> {
    match serde_json::from_str::<Rollout>(json) {
        Ok(r) => Ok(r),
        Err(today) => {
            let is_v1 = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json)
                .is_ok_and(|m| m.contains_key("phase") && !m.contains_key("state"));
            if !is_v1 {
                return Err(today.to_string());
            }
            let old: RolloutV1 = serde_json::from_str(json).map_err(|e| {
                format!("not a record of today's format ({today}) nor of format 1 ({e})")
            })?;
            old.upgrade()
        }
    }
}

/// Whether `json` is a format-1 record (the store's migration rewrites those).
pub fn is_format_1(json: &str) -> bool {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json)
        .is_ok_and(|m| m.contains_key("phase") && !m.contains_key("state"))
}

#[derive(Deserialize)]
struct RolloutV1 {
    deploy_id: String,
    service: String,
    namespace: String,
    environment: String,
    image_tag: String,
    previous_tag: String,
    changed_files: Vec<String>,
    commit_message: String,
    author: String,
    pull_request: Option<u64>,
    #[serde(default)]
    commit_sha: Option<String>,
    phase: Phase,
    risk_score: Option<f64>,
    strategy: Option<Strategy>,
    plan: Option<Plan>,
    approval_required: bool,
    approved_by: Option<String>,
    settings: Settings,
    canary_weight: Weight,
    progress: ProgressV1,
    latest: Option<Snapshot>,
    commits: Vec<CommitRecord>,
    hold_intervals: u32,
    held: bool,
    resume_to: Option<Box<Phase>>,
    revert: Option<RevertV1>,
    retry_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum ProgressV1 {
    Idle,
    Committing {
        weight: Weight,
        since: DateTime<Utc>,
        via_approval_pr: bool,
    },
    Syncing {
        weight: Weight,
        revision: String,
        deadline: DateTime<Utc>,
    },
    Live {
        weight: Weight,
        since: DateTime<Utc>,
        last_query_at: Option<DateTime<Utc>>,
        last_observation: Option<ObservationKind>,
        skip_bake: bool,
    },
}

#[derive(Deserialize)]
struct RevertV1 {
    reason: String,
    evidence: String,
    requested_at: DateTime<Utc>,
    sha: Option<String>,
    failed: Option<String>,
}

impl ProgressV1 {
    /// The step it describes; `inconclusive` is the record's count of inconclusive judgements,
    /// which format 1 kept beside the progress.
    fn step(self, inconclusive: u32) -> Option<Step> {
        let (weight, progress) = match self {
            ProgressV1::Idle => return None,
            ProgressV1::Committing {
                weight,
                since,
                via_approval_pr,
            } => (
                weight,
                Progress::Committing {
                    since,
                    via_approval_pr,
                },
            ),
            ProgressV1::Syncing {
                weight,
                revision,
                deadline,
            } => (weight, Progress::Syncing { revision, deadline }),
            ProgressV1::Live {
                weight,
                since,
                last_query_at,
                last_observation,
                skip_bake,
            } => (
                weight,
                Progress::Live {
                    since,
                    last_query_at,
                    last_observation,
                    skip_bake,
                    inconclusive,
                },
            ),
        };
        Some(Step { weight, progress })
    }
}

impl RevertV1 {
    fn rollback(&self) -> Rollback {
        Rollback {
            reason: self.reason.clone(),
            evidence: self.evidence.clone(),
            requested_at: self.requested_at,
        }
    }

    /// What became of the revert; `None` while still owed.
    fn outcome(&self) -> Option<Revert> {
        match (&self.sha, &self.failed) {
            (Some(sha), _) => Some(Revert::Done { sha: sha.clone() }),
            (None, Some(reason)) => Some(Revert::Failed {
                reason: reason.clone(),
            }),
            (None, None) => None,
        }
    }
}

impl RolloutV1 {
    fn bad(&self, what: &str) -> String {
        format!("format-1 record {}: {what}", self.deploy_id)
    }

    /// The course the assessment set, when it had run.
    fn course(&self) -> Option<Course> {
        Some(Course {
            risk_score: self.risk_score?,
            strategy: self.strategy?,
            plan: self.plan.clone()?,
            asked: None,
            approval: if self.approval_required {
                Approval::Required {
                    by: self.approved_by.clone(),
                    head: None,
                }
            } else {
                Approval::NotRequired
            },
        })
    }

    /// The live stage of `phase` (the record's, or the one a pause returns to).
    fn live(&self, phase: &Phase) -> Result<Live, String> {
        let course = || {
            self.course()
                .ok_or_else(|| self.bad("assessed phase without a course"))
        };
        Ok(match phase {
            Phase::RiskAssessment => Live::Assessing,
            Phase::AwaitingApproval => Live::AwaitingApproval { course: course()? },
            Phase::Canary { .. }
            | Phase::ProgressiveRollout
            | Phase::FullRollout
            | Phase::Verification => Live::Shipping {
                course: course()?,
                step: self
                    .progress
                    .clone()
                    .step(self.hold_intervals)
                    .ok_or_else(|| self.bad("a shipping phase with nothing in flight"))?,
            },
            other => return Err(self.bad(&format!("cannot resume to {other}"))),
        })
    }

    /// How a terminal phase ended, or `None` while a revert is still owed.
    fn end(&self) -> Option<End> {
        Some(match &self.phase {
            Phase::Complete => End::Complete,
            Phase::Superseded => End::Superseded {
                by: "a newer rollout (not stored by format 1; see the audit trail)".into(),
                revert: None,
            },
            Phase::Failed { reason } => End::Failed {
                reason: reason.clone(),
            },
            _ => match &self.revert {
                Some(v) => End::RolledBack {
                    rollback: v.rollback(),
                    revert: v.outcome()?,
                },
                None => End::RolledBack {
                    rollback: Rollback {
                        reason: "rolled back before anything was committed (reason not stored \
                                 by format 1; see the audit trail)"
                            .into(),
                        evidence: String::new(),
                        requested_at: self.updated_at,
                    },
                    revert: Revert::NotNeeded,
                },
            },
        })
    }

    fn state(&self) -> Result<State, String> {
        let (course, traffic) = (self.course(), self.canary_weight);
        Ok(match &self.phase {
            Phase::Paused { reason } => State::Paused {
                pause: Pause {
                    reason: reason.clone(),
                    held: self.held,
                    revert_owed: false,
                },
                resume: self.live(self.resume_to.as_deref().unwrap_or(&Phase::RiskAssessment))?,
                retry_at: self.retry_at,
            },
            phase if phase.is_terminal() => match self.end() {
                Some(end) => State::Ended {
                    end,
                    course,
                    traffic,
                },
                None => State::RollingBack {
                    rollback: self
                        .revert
                        .as_ref()
                        .map(RevertV1::rollback)
                        .ok_or_else(|| self.bad("a revert owed without its reason"))?,
                    course,
                    traffic,
                    retry_at: self.retry_at,
                },
            },
            phase => State::Running {
                live: self.live(phase)?,
                retry_at: self.retry_at,
            },
        })
    }

    fn upgrade(self) -> Result<Rollout, String> {
        let state = self.state()?;
        Ok(Rollout {
            deploy_id: self.deploy_id,
            release: Release {
                service: self.service,
                image_tag: self.image_tag,
                previous_tag: self.previous_tag,
                changed_files: self.changed_files,
                commit_message: self.commit_message,
                author: self.author,
                pull_request: self.pull_request,
                commit_sha: self.commit_sha,
            },
            target: Target {
                environment: self.environment,
                namespace: self.namespace,
            },
            settings: self.settings,
            state,
            commits: self.commits,
            supersedes: Vec::new(),
            latest: self.latest,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records written by the code before the `State` type (one per state it could be in), and
    /// what each must read back as: the same phase, traffic, liveness and commits.
    const RECORDS: &[(&str, &str)] = &[
        (
            "assessing",
            include_str!("../../../../fixtures/rollout/records-v1/assessing.json"),
        ),
        (
            "awaiting-approval",
            include_str!("../../../../fixtures/rollout/records-v1/awaiting-approval.json"),
        ),
        (
            "merging-approval",
            include_str!("../../../../fixtures/rollout/records-v1/merging-approval.json"),
        ),
        (
            "committing-first-step",
            include_str!("../../../../fixtures/rollout/records-v1/committing-first-step.json"),
        ),
        (
            "syncing",
            include_str!("../../../../fixtures/rollout/records-v1/syncing.json"),
        ),
        (
            "live-judged",
            include_str!("../../../../fixtures/rollout/records-v1/live-judged.json"),
        ),
        (
            "committing-next-step",
            include_str!("../../../../fixtures/rollout/records-v1/committing-next-step.json"),
        ),
        (
            "verification",
            include_str!("../../../../fixtures/rollout/records-v1/verification.json"),
        ),
        (
            "paused",
            include_str!("../../../../fixtures/rollout/records-v1/paused.json"),
        ),
        (
            "held",
            include_str!("../../../../fixtures/rollout/records-v1/held.json"),
        ),
        (
            "paused-while-committing",
            include_str!("../../../../fixtures/rollout/records-v1/paused-while-committing.json"),
        ),
        (
            "retry-owed",
            include_str!("../../../../fixtures/rollout/records-v1/retry-owed.json"),
        ),
        (
            "rolling-back",
            include_str!("../../../../fixtures/rollout/records-v1/rolling-back.json"),
        ),
        (
            "rolled-back",
            include_str!("../../../../fixtures/rollout/records-v1/rolled-back.json"),
        ),
        (
            "revert-failed",
            include_str!("../../../../fixtures/rollout/records-v1/revert-failed.json"),
        ),
        (
            "rolled-back-before-any-commit",
            include_str!(
                "../../../../fixtures/rollout/records-v1/rolled-back-before-any-commit.json"
            ),
        ),
        (
            "complete",
            include_str!("../../../../fixtures/rollout/records-v1/complete.json"),
        ),
        (
            "superseded",
            include_str!("../../../../fixtures/rollout/records-v1/superseded.json"),
        ),
        (
            "failed",
            include_str!("../../../../fixtures/rollout/records-v1/failed.json"),
        ),
    ];

    #[test]
    fn every_format_1_record_reads_back_as_what_it_was() {
        for (name, json) in RECORDS {
            assert!(is_format_1(json), "{name}");
            let old: serde_json::Value = serde_json::from_str(json).unwrap();
            let r = decode(json).unwrap_or_else(|e| panic!("{name}: {e}"));
            let phase: Phase = serde_json::from_value(old["phase"].clone()).unwrap();
            assert_eq!(r.phase(), phase, "{name}: phase");
            let traffic: Weight = serde_json::from_value(old["canary_weight"].clone()).unwrap();
            assert_eq!(r.traffic(), traffic, "{name}: traffic");
            let revert_owed = old["revert"].is_object()
                && old["revert"]["sha"].is_null()
                && old["revert"]["failed"].is_null();
            assert_eq!(
                r.is_live(),
                !phase.is_terminal() || revert_owed,
                "{name}: liveness"
            );
            assert_eq!(r.revert_owed(), revert_owed, "{name}: revert owed");
            assert_eq!(
                r.commits.len(),
                old["commits"].as_array().unwrap().len(),
                "{name}: commits"
            );
            assert_eq!(r.release.author, old["author"].as_str().unwrap(), "{name}");
            assert_eq!(r.target.namespace, old["namespace"].as_str().unwrap());
            assert_eq!(
                r.pause().is_some_and(|p| p.held),
                old["held"] == true,
                "{name}"
            );
            assert_eq!(r.retry_at().is_some(), !old["retry_at"].is_null(), "{name}");
            // Today's format round-trips and is not mistaken for format 1.
            let today = serde_json::to_string(&r).unwrap();
            assert!(!is_format_1(&today), "{name}");
            assert_eq!(decode(&today).unwrap(), r, "{name}: round trip");
        }
    }

    #[test]
    fn a_paused_commit_in_flight_resumes_where_it_was() {
        let r = decode(RECORDS[10].1).unwrap();
        let Some(Live::Shipping { step, course }) = r.live() else {
            panic!("{:?}", r.state)
        };
        assert_eq!(step.weight, Weight::new(50).unwrap());
        assert!(matches!(step.progress, Progress::Committing { .. }));
        assert_eq!(
            course.strategy,
            Strategy::Canary25,
            "read from the old `canary25`"
        );
        assert_eq!(r.phase().to_string(), "paused (paused by @carol)");
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let e = decode(r#"{"phase": {"kind": "complete"}}"#).unwrap_err();
        assert!(e.contains("format 1"), "{e}");
        assert!(decode("[]").is_err());
    }
}
