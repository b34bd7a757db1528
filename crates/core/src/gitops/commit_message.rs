//! Commit messages, PR titles and PR bodies of the writer, rendered from `templates/`.
//!
//! Rendering is plain `{{name}}` substitution: the templates are ours, the values are not (a
//! PR title or image comes from users), so values are flattened to one line where a newline
//! could forge a trailer or a heading. No logic lives in templates.

use super::edit::FileChange;
use crate::template::fill;

const COMMIT_TEMPLATE: &str = crate::template::COMMIT_MESSAGE_TXT;
const REVERT_TEMPLATE: &str = crate::template::REVERT_MESSAGE_TXT;
const PR_TITLE_TEMPLATE: &str = crate::template::GITOPS_PR_TITLE_TXT;
const PR_BODY_TEMPLATE: &str = crate::template::GITOPS_PR_BODY_MD;
const SUMMARY_TEMPLATE: &str = crate::template::COMMIT_SUMMARY_TXT;
const REVERT_REASON_TEMPLATE: &str = crate::template::REVERT_REASON_TXT;

/// The summary of a step's commit: `image` to `environment` at `weight` (e.g. `25%`); an
/// approval PR's says it needs approval.
pub fn step_summary(image: &str, environment: &str, weight: &str, needs_approval: bool) -> String {
    let kind = if needs_approval { "approval" } else { "step" };
    fill(
        crate::template::line(SUMMARY_TEMPLATE, kind),
        &[
            ("image", image),
            ("environment", environment),
            ("weight", weight),
        ],
    )
}

/// Why a rollout is reverted, as its revert commits say it: the reason and, when the judge gave
/// any, its evidence.
pub fn revert_reason(reason: &str, evidence: &str) -> String {
    if evidence.is_empty() {
        return reason.to_string();
    }
    fill(
        crate::template::text(REVERT_REASON_TEMPLATE),
        &[("reason", reason), ("evidence", evidence)],
    )
}

/// What a deploy step is, for people reading `git log` and for tools parsing its trailers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitInfo {
    /// One line saying what the step does, e.g. "ship ghcr.io/acme/checkout:1.4.2".
    pub summary: String,
    pub deploy_id: String,
    pub service: String,
    pub environment: String,
    /// Rollout step, e.g. "canary 2/5" or "promote".
    pub step: Option<String>,
    /// Canary weight in percent, when the step sets one.
    pub weight: Option<u8>,
    pub image: Option<String>,
    pub risk_score: Option<u32>,
    /// The application PR, e.g. "acme/checkout#42".
    pub source_pr: Option<String>,
}

impl CommitInfo {
    /// Trailers in a fixed order; absent values are left out rather than written empty.
    pub fn trailers(&self) -> Vec<(&'static str, String)> {
        let mut t = vec![
            ("Deploy-Id", one_line(&self.deploy_id)),
            ("Service", one_line(&self.service)),
            ("Environment", one_line(&self.environment)),
        ];
        if let Some(s) = &self.step {
            t.push(("Step", one_line(s)));
        }
        if let Some(w) = self.weight {
            t.push(("Weight", w.to_string()));
        }
        if let Some(i) = &self.image {
            t.push(("Image", one_line(i)));
        }
        if let Some(r) = self.risk_score {
            t.push(("Risk-Score", r.to_string()));
        }
        if let Some(p) = &self.source_pr {
            t.push(("Source-PR", one_line(p)));
        }
        t
    }
}

/// The commit message of a write.
pub fn render_commit(info: &CommitInfo, changes: &[FileChange]) -> String {
    let trailers = render_trailers(
        info.trailers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone())),
    );
    finish(fill(
        COMMIT_TEMPLATE,
        &[
            ("service", &one_line(&info.service)),
            ("environment", &one_line(&info.environment)),
            ("summary", &one_line(&info.summary)),
            ("changes", &render_changes(changes)),
            ("trailers", &trailers),
        ],
    ))
}

/// The message of a revert: git's own convention, the reason, and the original's trailers
/// (with `Step: revert`) so the audit trail stays greppable by deploy id.
pub fn render_revert(
    subject: &str,
    commit: &str,
    reason: &str,
    original_trailers: &[(String, String)],
) -> String {
    let mut trailers: Vec<(String, String)> = original_trailers
        .iter()
        .filter(|(k, _)| k != "Step")
        .cloned()
        .collect();
    trailers.push(("Step".into(), "revert".into()));
    let reason = if reason.trim().is_empty() {
        "No reason was given.".to_string()
    } else {
        reason.trim().to_string()
    };
    finish(fill(
        REVERT_TEMPLATE,
        &[
            ("subject", &one_line(subject)),
            ("commit", commit),
            ("reason", &reason),
            ("trailers", &render_trailers(trailers.into_iter())),
        ],
    ))
}

/// Everything a bot PR shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestText {
    pub title: String,
    pub body: String,
}

/// A PR title from `templates/gitops_pr_title.txt`, `summary` already on one line.
fn pr_title(info: &CommitInfo, summary: &str) -> String {
    finish(fill(
        PR_TITLE_TEMPLATE,
        &[
            ("service", &one_line(&info.service)),
            ("environment", &one_line(&info.environment)),
            ("summary", summary),
        ],
    ))
    .trim_end()
    .to_string()
}

/// Title and body of the PR that proposes a step in PR mode.
pub fn render_pull_request(
    info: &CommitInfo,
    changes: &[FileChange],
    head: &str,
    base: &str,
    human_edited_label: &str,
) -> PullRequestText {
    let title = pr_title(info, &one_line(&info.summary));
    let changes = if changes.is_empty() {
        "The files are already at the target values.".to_string()
    } else {
        render_changes(changes)
    };
    render_pr(info, title, &changes, head, base, human_edited_label)
}

/// Title and body of the PR that lands a rollback's reverts in PR mode: `reverted` are the
/// commits of the environment branch it reverts, newest first; `info.summary` says why.
pub fn render_revert_pull_request(
    info: &CommitInfo,
    reverted: &[String],
    head: &str,
    base: &str,
    human_edited_label: &str,
) -> PullRequestText {
    let title = pr_title(info, &format!("revert {}", one_line(&info.summary)));
    let list: Vec<String> = reverted.iter().map(|c| format!("- `{c}`")).collect();
    let changes = format!(
        "It reverts, newest first:\n\n{}\n\nWhy: {}",
        list.join("\n"),
        md_inline(&info.summary)
    );
    render_pr(info, title, &changes, head, base, human_edited_label)
}

fn render_pr(
    info: &CommitInfo,
    title: String,
    changes: &str,
    head: &str,
    base: &str,
    human_edited_label: &str,
) -> PullRequestText {
    let none = || "—".to_string();
    let body = finish(fill(
        PR_BODY_TEMPLATE,
        &[
            ("service", &md_inline(&info.service)),
            ("environment", &md_inline(&info.environment)),
            ("deploy_id", &md_inline(&info.deploy_id)),
            ("changes", changes),
            (
                "step",
                &info.step.as_deref().map(md_inline).unwrap_or_else(none),
            ),
            (
                "image",
                &info.image.as_deref().map(md_inline).unwrap_or_else(none),
            ),
            (
                "risk_score",
                &info.risk_score.map(|r| r.to_string()).unwrap_or_else(none),
            ),
            (
                "source_pr",
                &info
                    .source_pr
                    .as_deref()
                    .map(md_inline)
                    .unwrap_or_else(none),
            ),
            ("head", &md_inline(head)),
            ("base", &md_inline(base)),
            ("human_edited_label", &md_inline(human_edited_label)),
        ],
    ));
    PullRequestText { title, body }
}

fn render_changes(changes: &[FileChange]) -> String {
    let mut out = Vec::new();
    for f in changes {
        for c in &f.changes {
            out.push(format!(
                "- {}:{} {}: {} -> {}",
                f.path,
                c.line,
                one_line(&c.location),
                one_line(&c.old),
                one_line(&c.new)
            ));
        }
    }
    if out.is_empty() {
        "(no changes)".into()
    } else {
        out.join("\n")
    }
}

fn render_trailers(trailers: impl Iterator<Item = (String, String)>) -> String {
    trailers
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One trailing newline, as git stores messages.
fn finish(s: String) -> String {
    format!("{}\n", s.trim_end())
}

/// Newlines in a value would start a new trailer or paragraph; flatten them.
fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string()
}

/// A user value inside Markdown: one line, and no HTML comment that could fake our marker.
fn md_inline(s: &str) -> String {
    one_line(s).replace("<!--", "&lt;!--").replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_leaves_unknown_names_visible() {
        assert_eq!(fill("a {{x}} {{y}} {{", &[("x", "1")]), "a 1 {{y}} {{");
    }
}
