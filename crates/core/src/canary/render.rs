//! Renders a [`Decision`] as the Markdown a PR comment or a revert commit carries, from
//! `templates/canary/verdict.md`. Text only: posting it is the shell's business.

use super::judge::{Decision, MetricStatus};

const VERDICT: &str = crate::template::CANARY_VERDICT_MD;

/// The verdict, its reason and every metric's statistics as Markdown.
pub fn verdict_markdown(decision: &Decision, canary_weight: f64) -> String {
    let mut rows = String::new();
    for m in &decision.metrics {
        let ratio = m
            .ratio
            .map(|r| format!("{r:.2}x"))
            .unwrap_or_else(|| "n/a".into());
        let status = match m.status {
            MetricStatus::Regression => "worse",
            MetricStatus::WithinTolerance => "within tolerance",
            MetricStatus::NotGrosslyWorse => "not grossly worse",
            MetricStatus::NoEvidenceYet => "no evidence yet",
        };
        rows += &format!(
            "| {} | {} | {}/{} | {}/{} | {ratio} | {:.3e} ({:.0}) | {status} |\n",
            m.metric,
            if m.gating { "gate" } else { "dry-run" },
            m.canary_events,
            m.canary_requests,
            m.baseline_events,
            m.baseline_requests,
            m.log_evalue.exp(),
            m.log_threshold.exp(),
        );
    }
    let share = decision
        .canary_share
        .map(|s| format!("{:.2} %", s * 100.0))
        .unwrap_or_else(|| "n/a".into());
    VERDICT
        .replace("{{verdict}}", decision.verdict.name())
        .replace("{{interval}}", &decision.interval.to_string())
        .replace("{{reason}}", &decision.reason())
        .replace("{{metrics}}", &rows)
        .replace("{{verified}}", &decision.verified_intervals.to_string())
        .replace("{{share}}", &share)
        .replace("{{weight}}", &format!("{:.2} %", canary_weight * 100.0))
}
