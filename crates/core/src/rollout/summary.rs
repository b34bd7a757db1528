//! A rollout as a small block of aligned plain-text lines: what `deploybot status` prints and
//! what the `/status` PR command posts. Pure text from the record, so the command line and the
//! shell's event handlers share it without the shell reaching up into the CLI.

use std::fmt::Write as _;

use super::record::Observation;
use super::record::{Progress, Revert, Rollout, Step};

/// One rollout as a small block of aligned lines.
pub fn render_rollout(r: &Rollout) -> String {
    let mut out = String::new();
    let live = if r.is_live() { "  [live]" } else { "" };
    let _ = writeln!(
        out,
        "{}/{}  {}  {}{live}",
        r.service(),
        r.environment(),
        r.deploy_id,
        r.phase()
    );
    let pr = r
        .release
        .pull_request
        .map(|n| format!(", PR #{n}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  image     {} (was {}), by {}{pr}",
        r.image_tag(),
        r.release.previous_tag,
        r.release.author
    );
    if let Some(c) = r.course() {
        let _ = writeln!(
            out,
            "  strategy  {} (risk {:.2}), plan {}",
            c.strategy, c.risk_score, c.plan
        );
    }
    let progress = match r.step() {
        None => String::new(),
        Some(Step {
            weight,
            progress: Progress::Committing { .. },
        }) => format!(", committing {weight}"),
        Some(Step {
            weight,
            progress: Progress::Syncing { revision, .. },
        }) => format!(", {weight} committed as {revision}, waiting for sync"),
        Some(Step {
            progress: Progress::Live { since, .. },
            ..
        }) => format!(" (live since {})", since.to_rfc3339()),
    };
    let _ = writeln!(out, "  traffic   {}{progress}", r.traffic());
    if let Some(s) = &r.latest {
        let what = match &s.observation {
            Observation::Continue => "continue".to_string(),
            Observation::Promote => "promote".to_string(),
            Observation::Rollback { metric, evidence } => {
                format!("rollback on {metric}: {evidence}")
            }
            Observation::Inconclusive { reason, .. } => format!("inconclusive: {reason}"),
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
    if let Some((v, revert)) = r.rollback() {
        let state = match revert {
            Some(Revert::Done { sha }) => format!("reverted as {sha}"),
            Some(Revert::Failed { reason }) => format!("REVERT FAILED: {reason}"),
            Some(Revert::NotNeeded) => "nothing was committed".to_string(),
            None => "revert pending".to_string(),
        };
        let _ = writeln!(out, "  rollback  {}: {state}", v.reason);
    }
    if r.pause().is_some_and(|p| p.held) {
        let _ = writeln!(
            out,
            "  held      emergency hold in force (/hold cancel lifts it)"
        );
    }
    let _ = writeln!(out, "  updated   {}", r.updated_at.to_rfc3339());
    out
}
