//! The status comment deploybot keeps on the app PR, rendered from `templates/rollout/`: where
//! the rollout stands, the judge's latest evidence, what happens next, and the commands.
//!
//! `status_comment_with_chart` adds, when there is data for it, a Mermaid chart of the canary's
//! error rate against the baseline's (`rollout::chart`) and a link to the rollout's status page
//! when a public URL is configured.
//!
//! Pure text in, text out. Finding and editing the existing comment (by its marker line) is the
//! GitHub adapter's job, not this module's.

use super::chart::mermaid_error_rate;
use super::input::{Notice, Observation};
use super::page::rollout_page_url;
use super::record::{MetricPoint, Phase, Progress, Rollout, Step};

const STATUS_TEMPLATE: &str = crate::template::ROLLOUT_STATUS_COMMENT_MD;
const NOTICES: &str = crate::template::ROLLOUT_NOTICES_TXT;
const PAGE_LINK: &str = crate::template::ROLLOUT_STATUS_PAGE_LINK_MD;

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
    };
    let line = NOTICES
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(kind)
                .and_then(|rest| rest.strip_prefix(": "))
        })
        .unwrap_or(kind);
    let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fill(line, &values)
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
        Some(c) => format!("{} (risk {:.2}): {}", c.strategy, c.risk_score, c.plan),
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
        Some((Observation::Hold { reason, .. }, w)) => format!("hold at {w}: {reason}"),
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
    use crate::risk::Strategy;
    use crate::rollout::testing::{golden, rolled_back_at_25, t, trigger};
    use crate::rollout::{Input, Settings, Weight, step};

    fn drive(inputs: Vec<Input>) -> (Rollout, Vec<Notice>) {
        let mut r = Rollout::new(
            trigger("d-42", "checkout", "production"),
            Settings::default(),
            t(0),
        );
        let mut notices = Vec::new();
        for (i, input) in inputs.into_iter().enumerate() {
            let tr = step(&r, input, t(i as i64 * 700));
            for e in &tr.effects {
                if let crate::rollout::Effect::Comment { notice } = e {
                    notices.push(notice.clone());
                }
            }
            r = tr.next;
        }
        (r, notices)
    }

    #[test]
    fn status_comments_are_pinned() {
        let w = |p| Weight::new(p).unwrap();
        let (r, notices) = drive(vec![
            Input::Assessed {
                risk_score: 0.42,
                strategy: Strategy::Canary5,
                approval_required: false,
            },
            Input::Committed {
                sha: "c0ffee1".into(),
                weight: w(5),
            },
            Input::Synced {
                revision: "c0ffee1".into(),
            },
            Input::Judged(Observation::Promote),
        ]);
        golden(
            "status-promoted.md",
            &status_comment(&r, notices.last().unwrap()),
        );
        let (r, notices) = drive(rolled_back_at_25(
            "canary 4.1% vs baseline 0.3% (Mann-Whitney p=0.001)",
        ));
        let body = status_comment(&r, notices.last().unwrap());
        assert!(body.starts_with(&marker("d-42")));
        golden("status-rolled-back.md", &body);
    }

    #[test]
    fn status_comment_with_chart_is_pinned() {
        let w = |p| Weight::new(p).unwrap();
        let (r, notices) = drive(rolled_back_at_25("canary 4.1% vs baseline 0.3%"));
        let notice = notices.last().unwrap();
        let points: Vec<MetricPoint> = [(0.003, 0.003), (0.012, 0.002), (0.041, 0.003)]
            .iter()
            .enumerate()
            .map(|(i, (c, b))| MetricPoint {
                at: t(1400 + 60 * i as i64),
                weight: w(25),
                metric: crate::rollout::metrics::ERROR_RATE.into(),
                canary: Some(*c),
                baseline: Some(*b),
            })
            .collect();
        let body =
            status_comment_with_chart(&r, notice, &points, Some("https://deploybot.example.com/"));
        assert!(body.starts_with(&marker("d-42")));
        golden("status-with-chart.md", &body);
        // Nothing to add: exactly the plain comment, so existing comments do not change.
        assert_eq!(
            status_comment_with_chart(&r, notice, &points[..1], None),
            status_comment(&r, notice)
        );
        assert_eq!(
            status_comment_with_chart(&r, notice, &[], Some("  ")),
            status_comment(&r, notice)
        );
    }

    #[test]
    fn every_notice_kind_has_its_text() {
        let by = || "bob".to_string();
        let w = Weight::new(5).unwrap();
        let all = [
            Notice::AwaitingApproval,
            Notice::StepStarted { weight: w },
            Notice::Promoted { from: w, to: w },
            Notice::Verifying,
            Notice::Completed,
            Notice::Paused { reason: "r".into() },
            Notice::Resumed { by: by() },
            Notice::Held { by: by() },
            Notice::HoldReleased { by: by() },
            Notice::RolledBack {
                reason: "r".into(),
                evidence: "e".into(),
            },
            Notice::RevertFailed { reason: "r".into() },
            Notice::Superseded {
                by_deploy_id: "d".into(),
            },
            Notice::Failed { reason: "r".into() },
        ];
        for n in &all {
            let text = notice_text(n);
            assert!(text.ends_with('.'), "no template line for {n:?}: {text:?}");
            assert!(!text.contains("{{"), "unfilled placeholder in {text:?}");
        }
    }
}
