//! `{{name}}` substitution for the text deploybot writes (commit messages, PR bodies and comments,
//! the LLM prompt), whose templates live in `templates/`.
//!
//! One pass over the template: a value is never scanned again, so untrusted text that happens to
//! contain `{{name}}` (a PR title, a diff) stays literal and cannot pull in another value. Unknown
//! names are left as written, which the golden tests of each template would show.

/// Every text deploybot writes, compiled in from `templates/` at the repository root: the one
/// list of them, so a text that is not here is not one deploybot posts.
pub const ALERT_TXT: &str = include_str!("../../../templates/alert.txt");
pub const CANARY_VERDICT_MD: &str = include_str!("../../../templates/canary/verdict.md");
pub const COMMIT_MESSAGE_TXT: &str = include_str!("../../../templates/commit_message.txt");
pub const COMMIT_STATUS_TXT: &str = include_str!("../../../templates/commit_status.txt");
pub const COMMIT_SUMMARY_TXT: &str = include_str!("../../../templates/commit_summary.txt");
pub const GITOPS_PR_BODY_MD: &str = include_str!("../../../templates/gitops_pr_body.md");
pub const GITOPS_PR_TITLE_TXT: &str = include_str!("../../../templates/gitops_pr_title.txt");
pub const PAGE_INDEX_HTML: &str = include_str!("../../../templates/page/index.html");
pub const PAGE_LAYOUT_HTML: &str = include_str!("../../../templates/page/layout.html");
pub const PAGE_MESSAGE_HTML: &str = include_str!("../../../templates/page/message.html");
pub const PAGE_ROLLOUT_HTML: &str = include_str!("../../../templates/page/rollout.html");
pub const REVERT_MESSAGE_TXT: &str = include_str!("../../../templates/revert_message.txt");
pub const REVERT_REASON_TXT: &str = include_str!("../../../templates/revert_reason.txt");
pub const RISK_COMMENT_MD: &str = include_str!("../../../templates/risk_comment.md");
pub const RISK_PROMPT_MD: &str = include_str!("../../../templates/risk_prompt.md");
pub const ROLLOUT_APPROVAL_PR_CLOSED_TXT: &str =
    include_str!("../../../templates/rollout/approval-pr-closed.txt");
pub const ROLLOUT_HELP_MD: &str = include_str!("../../../templates/rollout/help.md");
pub const ROLLOUT_INVALID_COMMAND_MD: &str =
    include_str!("../../../templates/rollout/invalid-command.md");
pub const ROLLOUT_NOTICES_TXT: &str = include_str!("../../../templates/rollout/notices.txt");
pub const ROLLOUT_REPLIES_TXT: &str = include_str!("../../../templates/rollout/replies.txt");
pub const ROLLOUT_STATUS_COMMENT_MD: &str =
    include_str!("../../../templates/rollout/status-comment.md");
pub const ROLLOUT_STATUS_PAGE_LINK_MD: &str =
    include_str!("../../../templates/rollout/status-page-link.md");
pub const ROLLOUT_STATUS_REPLY_MD: &str =
    include_str!("../../../templates/rollout/status-reply.md");
pub const ROLLOUT_UNKNOWN_COMMAND_MD: &str =
    include_str!("../../../templates/rollout/unknown-command.md");

/// The text of the `kind: text` line of a template made of such lines (`#` lines are comments),
/// such as `rollout/notices.txt`; `kind` itself when there is no such line, so that a golden file
/// shows the gap.
pub fn line<'a>(template: &'a str, kind: &'a str) -> &'a str {
    template
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(kind)
                .and_then(|rest| rest.strip_prefix(": "))
        })
        .unwrap_or(kind)
}

/// A template without the newline that ends its file, for a text that ends where its last line
/// does (a one-line reply, a commit message paragraph).
pub fn text(template: &str) -> &str {
    template.strip_suffix('\n').unwrap_or(template)
}

/// Replaces each `{{name}}` of `template` with its value from `values`.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match values.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{fill, line, text};

    #[test]
    fn a_line_is_found_by_its_whole_kind_and_a_missing_one_shows_its_kind() {
        let t = "# risk: a comment\nrisk_high: high\nrisk: plain\n";
        assert_eq!(line(t, "risk"), "plain");
        assert_eq!(line(t, "risk_high"), "high");
        assert_eq!(line(t, "gone"), "gone");
        assert_eq!(text("a\nb\n"), "a\nb");
        assert_eq!(text("a"), "a");
    }

    #[test]
    fn substitutes_once_and_keeps_unknown_and_unclosed_placeholders() {
        assert_eq!(
            fill("a {{x}} {{ y }} {{z}} {{", &[("x", "1"), ("y", "2")]),
            "a 1 2 {{z}} {{"
        );
        // A value that looks like a placeholder is not expanded again.
        assert_eq!(
            fill("{{a}} {{b}}", &[("a", "{{b}}"), ("b", "B")]),
            "{{b}} B"
        );
    }
}
