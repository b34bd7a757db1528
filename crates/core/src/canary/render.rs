//! Renders a [`Decision`] as the Markdown a PR comment or a revert commit carries, from
//! `templates/canary/verdict.md`. Text only: posting it is the orchestrator's business.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::scenario::Scenario;
    use crate::canary::{JudgeConfig, replay};

    /// Golden test: the comment for a shared regression scenario. Refresh with
    /// `UPDATE_GOLDEN=1 cargo test --lib canary::render`.
    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "test code: golden files are read from the repository, never at run time"
    )]
    fn rollback_comment_matches_the_golden_file() {
        let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let scenario = Scenario::parse(include_str!(
            "../../../../fixtures/canary-bench/scenarios/errors-x5.0-00.json"
        ))
        .unwrap();
        let d = replay(&scenario.window, &JudgeConfig::default());
        let text = verdict_markdown(&d, scenario.window.canary_weight);
        let golden = root.join("fixtures/canary/verdict-errors-x5.0-00.md");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &text).unwrap();
        }
        let expected = std::fs::read_to_string(&golden).unwrap();
        assert_eq!(text, expected);
        assert!(text.contains("### Canary verdict: rollback"));
        assert!(!text.contains("{{"), "unfilled placeholder in {text}");
    }
}
