//! The status comment deploybot keeps on the app PR, rendered from `templates/rollout/`: where
//! the rollout stands, the judge's latest evidence, what happens next, and the commands. Also the
//! other texts a rollout sends: its commit status description and its alerts.
//!
//! `status_comment_with_chart` adds, when there is data for it, a Mermaid chart of the canary's
//! error rate against the baseline's (`rollout::chart`) and a link to the rollout's status page
//! when a public URL is configured.
//!
//! Pure text in, text out. Finding and editing the existing comment (by its marker line) is the
//! GitHub adapter's job, not this module's.

use super::chart::mermaid_error_rate;
use super::input::{Closing, Level, Notice};
use super::page::rollout_page_url;
use super::record::{MetricPoint, Observation, Phase, Progress, Rollout, Step};

const STATUS_TEMPLATE: &str = crate::template::ROLLOUT_STATUS_COMMENT_MD;
const NOTICES: &str = crate::template::ROLLOUT_NOTICES_TXT;
const PAGE_LINK: &str = crate::template::ROLLOUT_STATUS_PAGE_LINK_MD;
const COMMIT_STATUS: &str = crate::template::COMMIT_STATUS_TXT;
const ALERT: &str = crate::template::ALERT_TXT;
const APPROVAL_PR_CLOSED: &str = crate::template::ROLLOUT_APPROVAL_PR_CLOSED_TXT;

/// The marker line that identifies a rollout's status comment, so it is edited, not duplicated.
pub fn marker(deploy_id: &str) -> String {
    format!("<!-- deploybot:rollout:{deploy_id} -->")
}

use crate::template::fill;

/// The one-line text of a notice.
pub fn notice_text(notice: &Notice) -> String {
    let kind = notice.kind();
    let values: Vec<(&str, String)> = match notice {
        Notice::AwaitingApproval | Notice::Verifying | Notice::Completed => vec![],
        Notice::StepStarted { weight } => vec![("weight", weight.to_string())],
        Notice::Promoted { from, to } => vec![("from", from.to_string()), ("to", to.to_string())],
        Notice::Paused { reason } | Notice::RevertFailed { reason } | Notice::Failed { reason } => {
            vec![("reason", reason.clone())]
        }
        Notice::Resumed { by } | Notice::Held { by } | Notice::HoldReleased { by } => {
            vec![("by", by.clone())]
        }
        Notice::RolledBack { reason, evidence } => {
            vec![("reason", reason.clone()), ("evidence", evidence.clone())]
        }
        Notice::Superseded { by_deploy_id } => vec![("by_deploy_id", by_deploy_id.clone())],
        Notice::ApprovalOutdated { reason } => vec![("reason", reason.clone())],
        Notice::UnapprovedMerge { by, reason, .. } => {
            vec![("by", by.clone()), ("reason", reason.clone())]
        }
    };
    let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fill(crate::template::line(NOTICES, kind), &values)
}

/// The marker line of the comment deploybot leaves on rollout `deploy_id`'s approval PR when it
/// closes it, so a retried close edits it instead of adding another.
pub fn approval_pr_marker(deploy_id: &str) -> String {
    format!("<!-- deploybot:approval-pr:{deploy_id} -->")
}

/// The comment on the approval PR of rollout `deploy_id` when deploybot closes it (or deletes
/// its branch), saying why, under its marker line.
pub fn approval_pr_closed(deploy_id: &str, why: &Closing) -> String {
    let mut values = vec![("deploy_id", deploy_id.to_string())];
    match why {
        Closing::Superseded { by_deploy_id } => values.push(("by_deploy_id", by_deploy_id.clone())),
        Closing::MergedUnapproved { by, .. } => values.push(("by", by.clone())),
        Closing::Completed | Closing::RolledBack | Closing::Failed => {}
    }
    let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    format!(
        "{}\n{}\n",
        approval_pr_marker(deploy_id),
        fill(
            crate::template::line(APPROVAL_PR_CLOSED, why.kind()),
            &values
        )
    )
}

/// The description of the `deploybot/ENVIRONMENT` commit status a rollout sets.
pub fn commit_status(environment: &str, phase: &Phase) -> String {
    fill(
        crate::template::line(COMMIT_STATUS, "rollout"),
        &[("environment", environment), ("phase", &phase.to_string())],
    )
}

/// The alert a notice sends at `level` about the rollout `subject` (`service/environment id`).
pub fn alert_text(subject: &str, level: Level, notice: &Notice) -> String {
    fill(
        crate::template::line(ALERT, level.as_str()),
        &[("subject", subject), ("notice", &notice_text(notice))],
    )
}

fn next_step(r: &Rollout) -> String {
    let plan = r.course().map(|c| &c.plan);
    match &r.phase() {
        Phase::RiskAssessment => "assessing the risk of the change".into(),
        Phase::AwaitingApproval => {
            "a reviewer (not the author) approves the approval PR; deploybot merges it".into()
        }
        Phase::Canary { step, weight } => {
            let after = plan
                .and_then(|p| p.get(step + 1))
                .map(|w| w.to_string())
                .unwrap_or_else(|| "100%".into());
            format!(
                "{weight} is baked for {}s and judged every {}s; on the judge's promote it goes to {after}",
                r.settings.bake_secs, r.settings.analysis_interval_secs
            )
        }
        Phase::ProgressiveRollout | Phase::FullRollout => {
            "the next step is committed, then judged once Argo CD reports it synced".into()
        }
        Phase::Verification => format!(
            "100% is verified for {}s, then the rollout completes",
            r.settings.verification_secs
        ),
        Phase::Paused { .. } => "nothing until `/resume` (or `/rollback`)".into(),
        Phase::Complete | Phase::Superseded | Phase::Failed { .. } => "nothing".into(),
        Phase::RolledBack => "nothing: the service is held until a human releases it".into(),
    }
}

/// The whole status comment for `rollout`, headed by `notice`.
pub fn status_comment(r: &Rollout, notice: &Notice) -> String {
    render(r, notice, "")
}

/// The status comment with the rollout's error-rate chart (from its metric history `points`;
/// left out below two intervals) and, when `public_url` (`server.public_url`) is set, a link to
/// the rollout's status page.
pub fn status_comment_with_chart(
    r: &Rollout,
    notice: &Notice,
    points: &[MetricPoint],
    public_url: Option<&str>,
) -> String {
    let mut extras = String::new();
    if let Some(base) = public_url.map(str::trim).filter(|u| !u.is_empty()) {
        extras.push('\n');
        extras.push_str(&fill(
            PAGE_LINK,
            &[("url", rollout_page_url(base, &r.deploy_id).as_str())],
        ));
    }
    let chart = mermaid_error_rate(points);
    if !chart.is_empty() {
        extras.push('\n');
        extras.push_str(&chart);
    }
    render(r, notice, &extras)
}

/// The new version's traffic, and the step in flight when one is being committed or synced:
/// `25%`, `25% (committing 50%)`, `25% (50% committed, waiting for sync)`.
pub fn traffic_text(r: &Rollout) -> String {
    let traffic = r.traffic();
    match r.step() {
        Some(Step {
            weight,
            progress: Progress::Committing { .. },
        }) => format!("{traffic} (committing {weight})"),
        Some(Step {
            weight,
            progress: Progress::Syncing { .. },
        }) => format!("{traffic} ({weight} committed, waiting for sync)"),
        _ => traffic.to_string(),
    }
}

fn render(r: &Rollout, notice: &Notice, extras: &str) -> String {
    let strategy = match r.course() {
        Some(c) => match c.asked {
            Some(asked) => format!(
                "{} (risk {:.2}; {asked} asked, but this environment has no canary workload): {}",
                c.strategy, c.risk_score, c.plan
            ),
            None => format!("{} (risk {:.2}): {}", c.strategy, c.risk_score, c.plan),
        },
        None => "not assessed yet".into(),
    };
    let traffic = traffic_text(r);
    let evidence = match r.latest.as_ref().map(|s| (&s.observation, s.weight)) {
        None => "no analysis yet".into(),
        Some((Observation::Continue, w)) => format!("continue at {w}"),
        Some((Observation::Promote, w)) => format!("promote at {w}"),
        Some((Observation::Rollback { metric, evidence }, w)) => {
            format!("rollback at {w}: {metric}: {evidence}")
        }
        Some((Observation::Inconclusive { reason, .. }, w)) => {
            format!("inconclusive at {w}: {reason}")
        }
    };
    // A table cell holds one line: the accumulated evidence goes on after line breaks.
    let evidence = match r.latest.as_ref().and_then(|s| s.evidence.as_ref()) {
        Some(e) => std::iter::once(evidence)
            .chain(std::iter::once(e.headline()))
            .chain(e.metric_lines())
            .map(|l| l.replace('|', "\\|"))
            .collect::<Vec<_>>()
            .join("<br>"),
        None => evidence,
    };
    let commits = if r.commits.is_empty() {
        "none".to_string()
    } else {
        r.commits
            .iter()
            .map(|c| format!("`{}` ({})", c.sha, c.weight))
            .collect::<Vec<_>>()
            .join(", ")
    };
    fill(
        STATUS_TEMPLATE,
        &[
            ("deploy_id", r.deploy_id.as_str()),
            ("service", r.service()),
            ("environment", r.environment()),
            ("headline", notice_text(notice).as_str()),
            ("phase", r.phase().to_string().as_str()),
            ("image_tag", r.image_tag()),
            (
                "previous_tag",
                if r.release.previous_tag.is_empty() {
                    "unknown"
                } else {
                    r.release.previous_tag.as_str()
                },
            ),
            ("strategy", strategy.as_str()),
            ("traffic", traffic.as_str()),
            ("evidence", evidence.as_str()),
            ("commits", commits.as_str()),
            ("next", next_step(r).as_str()),
            ("extras", extras),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_text_names_level_subject_and_notice() {
        assert_eq!(
            alert_text(
                "checkout/production d-1",
                Level::Warn,
                &Notice::Paused {
                    reason: "metrics unavailable: connection refused".into()
                }
            ),
            "[deploybot warning] checkout/production d-1: Paused: metrics unavailable: \
             connection refused. Nothing will be promoted until someone comments `/resume`."
        );
    }
}
