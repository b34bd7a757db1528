//! A rollout as JSON for people and scripts (`GET /api/rollouts`, `deploybot status --json`):
//! the flat facts dashboards read (phase, traffic, strategy, who approved, the revert), derived
//! from the record, beside the typed `state` itself. The flat names are the ones the API served
//! before the record became a sum type, so existing dashboards keep working.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::plan::{Plan, Weight};
use super::record::{CommitRecord, Phase, Revert, Rollout, Settings, Snapshot, State, Step};
use crate::risk::Strategy;

/// The JSON shape of one rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutView<'a> {
    pub deploy_id: &'a str,
    pub service: &'a str,
    pub namespace: &'a str,
    pub environment: &'a str,
    pub image_tag: &'a str,
    pub previous_tag: &'a str,
    pub changed_files: &'a [String],
    pub commit_message: &'a str,
    pub author: &'a str,
    pub pull_request: Option<u64>,
    pub commit_sha: Option<&'a str>,
    pub phase: Phase,
    pub live: bool,
    pub risk_score: Option<f64>,
    pub strategy: Option<Strategy>,
    pub plan: Option<&'a Plan>,
    pub approval_required: bool,
    pub approved_by: Option<&'a str>,
    /// The new version's traffic, as last confirmed live.
    pub canary_weight: Weight,
    /// The step being committed, synced or judged.
    pub step: Option<&'a Step>,
    pub held: bool,
    pub revert: Option<RevertView<'a>>,
    pub retry_at: Option<DateTime<Utc>>,
    pub latest: Option<&'a Snapshot>,
    pub commits: &'a [CommitRecord],
    pub settings: &'a Settings,
    pub state: &'a State,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A rollback and its revert: `sha` once reverted, `failed` when the revert could not be made,
/// both `null` while it is owed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevertView<'a> {
    pub reason: &'a str,
    pub evidence: &'a str,
    pub requested_at: DateTime<Utc>,
    pub sha: Option<&'a str>,
    pub failed: Option<&'a str>,
}

impl<'a> RolloutView<'a> {
    pub fn of(r: &'a Rollout) -> RolloutView<'a> {
        let course = r.course();
        RolloutView {
            deploy_id: &r.deploy_id,
            service: &r.release.service,
            namespace: &r.target.namespace,
            environment: &r.target.environment,
            image_tag: &r.release.image_tag,
            previous_tag: &r.release.previous_tag,
            changed_files: &r.release.changed_files,
            commit_message: &r.release.commit_message,
            author: &r.release.author,
            pull_request: r.release.pull_request,
            commit_sha: r.release.commit_sha.as_deref(),
            phase: r.phase(),
            live: r.is_live(),
            risk_score: course.map(|c| c.risk_score),
            strategy: course.map(|c| c.strategy),
            plan: course.map(|c| &c.plan),
            approval_required: course
                .is_some_and(|c| matches!(c.approval, super::record::Approval::Required { .. })),
            approved_by: r.approved_by(),
            canary_weight: r.traffic(),
            step: r.step(),
            held: r.pause().is_some_and(|p| p.held),
            revert: r.rollback().map(|(rollback, revert)| RevertView {
                reason: &rollback.reason,
                evidence: &rollback.evidence,
                requested_at: rollback.requested_at,
                sha: match revert {
                    Some(Revert::Done { sha }) => Some(sha),
                    _ => None,
                },
                failed: match revert {
                    Some(Revert::Failed { reason }) => Some(reason),
                    _ => None,
                },
            }),
            retry_at: r.retry_at(),
            latest: r.latest.as_ref(),
            commits: &r.commits,
            settings: &r.settings,
            state: &r.state,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}
