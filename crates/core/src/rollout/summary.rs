//! A rollout as a small block of aligned plain-text lines: what `deploybot status` prints and
//! what the `/status` PR command posts. Pure text from the record, so the command line and the
//! shell's event handlers share it without the shell reaching up into the CLI.

use std::fmt::Write as _;

use super::input::Observation;
use super::record::{Progress, Rollout};

/// One rollout as a small block of aligned lines.
pub fn render_rollout(r: &Rollout) -> String {
    let mut out = String::new();
    let live = if r.is_live() { "  [live]" } else { "" };
    let _ = writeln!(
        out,
        "{}/{}  {}  {}{live}",
        r.service, r.environment, r.deploy_id, r.phase
    );
    let pr = r
        .pull_request
        .map(|n| format!(", PR #{n}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  image     {} (was {}), by {}{pr}",
        r.image_tag, r.previous_tag, r.author
    );
    if let (Some(strategy), Some(plan)) = (r.strategy, &r.plan) {
        let risk = r
            .risk_score
            .map(|s| format!(" (risk {s:.2})"))
            .unwrap_or_default();
        let _ = writeln!(out, "  strategy  {strategy}{risk}, plan {plan}");
    }
    let progress = match &r.progress {
        Progress::Idle => String::new(),
        Progress::Committing { weight, .. } => format!(", committing {weight}"),
        Progress::Syncing {
            weight, revision, ..
        } => format!(", {weight} committed as {revision}, waiting for sync"),
        Progress::Live { since, .. } => format!(" (live since {})", since.to_rfc3339()),
    };
    let _ = writeln!(out, "  traffic   {}{progress}", r.canary_weight);
    if let Some(s) = &r.latest {
        let what = match &s.observation {
            Observation::Continue => "continue".to_string(),
            Observation::Promote => "promote".to_string(),
            Observation::Rollback { metric, evidence } => {
                format!("rollback on {metric}: {evidence}")
            }
            Observation::Hold { reason, .. } => format!("hold: {reason}"),
        };
        let _ = writeln!(
            out,
            "  judge     {what} at {} ({})",
            s.weight,
            s.at.to_rfc3339()
        );
    }
    if !r.commits.is_empty() {
        let commits: Vec<String> = r
            .commits
            .iter()
            .map(|c| format!("{} ({})", c.sha, c.weight))
            .collect();
        let _ = writeln!(out, "  commits   {}", commits.join(", "));
    }
    if let Some(v) = &r.revert {
        let state = match (&v.sha, &v.failed) {
            (Some(sha), _) => format!("reverted as {sha}"),
            (None, Some(err)) => format!("REVERT FAILED: {err}"),
            (None, None) => "revert pending".to_string(),
        };
        let _ = writeln!(out, "  rollback  {}: {state}", v.reason);
    }
    if r.held {
        let _ = writeln!(
            out,
            "  held      emergency hold in force (/hold cancel lifts it)"
        );
    }
    let _ = writeln!(out, "  updated   {}", r.updated_at.to_rfc3339());
    out
}
