//! The pull-request status comment: `templates/risk_comment.md` filled with an assessment; and
//! the `deploybot/risk` commit status description (`templates/commit_status.txt`).
//!
//! Pure. Text that came from the model (factors, rationale) is untrusted: it is escaped so that it
//! cannot break the table, inject HTML, ping people or close the `<details>` block. The comment is
//! found again by its hidden marker (first line of the template).

use super::{Assessment, AssessmentSource, FactorSource, RiskTier};
use crate::template::fill;

pub const TEMPLATE: &str = crate::template::RISK_COMMENT_MD;

/// The hidden marker that identifies deploybot's status comment.
pub const MARKER: &str = "<!-- deploybot:risk-assessment -->";

/// The comment commands (the same table `/help` answers with) and the CLI re-run.
fn commands(repo: &str, pr: u64) -> String {
    format!(
        "{}\n\nTo re-run this assessment from a shell:\n\n```\ndeploybot assess --repo {repo} --pr {pr}\n```",
        crate::template::ROLLOUT_HELP_MD.trim_end()
    )
}

/// The description of the `deploybot/risk` commit status for `a`, whose pull request's head
/// is `approved` (by someone who may) or not.
pub fn status_description(a: &Assessment, approved: bool) -> String {
    let kind = match (a.requires_manual_approval, approved) {
        (false, _) => "risk",
        (true, false) => "risk_needs_approval",
        (true, true) => "risk_approved",
    };
    fill(
        crate::template::line(crate::template::COMMIT_STATUS_TXT, kind),
        &[
            ("score", &format!("{:.2}", a.risk_score)),
            ("tier", a.tier.as_str()),
            ("strategy", &a.recommended_strategy.to_string()),
        ],
    )
}

/// Renders the comment.
/// `services` says which services merging the change releases (already markdown).
pub fn render(a: &Assessment, repo: &str, pr: u64, head_sha: &str, services: &str) -> String {
    let icon = match a.tier {
        RiskTier::Low => "🟢",
        RiskTier::Medium => "🟡",
        RiskTier::High => "🟠",
        RiskTier::Critical => "🔴",
    };
    let source = match a.source {
        AssessmentSource::Policy => "the deterministic policy",
        AssessmentSource::Llm => "the model (raised above the policy floor)",
        AssessmentSource::Both => "the policy, confirmed by the model",
    };
    let approval = if a.requires_manual_approval {
        "**required** (`needs-approval`)"
    } else {
        "not required"
    };
    let mut rows: Vec<String> = a
        .risk_factors
        .iter()
        .map(|f| {
            let src = match f.source {
                FactorSource::Policy => "policy",
                FactorSource::Llm => "llm",
            };
            let mut detail = escape_inline(&f.summary);
            if !f.files.is_empty() {
                let shown: Vec<String> = f
                    .files
                    .iter()
                    .take(5)
                    .map(|p| format!("`{}`", escape_inline(p).replace('`', "'")))
                    .collect();
                detail.push_str(": ");
                detail.push_str(&shown.join(", "));
                if f.files.len() > 5 {
                    detail.push_str(&format!(" and {} more", f.files.len() - 5));
                }
            }
            format!(
                "| {src} | {} | {:.3} | {detail} |",
                f.category.as_str(),
                f.weight
            )
        })
        .collect();
    if rows.is_empty() {
        rows.push("| policy | - | 0.000 | no risk factors found |".into());
    }
    let rationale = match &a.rationale {
        Some(r) => escape_block(r),
        None => "No model rationale: the deterministic policy decided alone.".into(),
    };
    let score = format!("{:.3}", a.risk_score);
    let weight = a.recommended_strategy.first_weight().to_string();
    let short: String = head_sha.chars().take(12).collect();
    let model = a.model.as_deref().map_or("none".to_string(), escape_inline);
    let prompt_version = a
        .prompt_version
        .as_deref()
        .map_or("-".to_string(), escape_inline);
    let rows = rows.join("\n");
    let commands = commands(repo, pr);
    let mut out = fill(
        TEMPLATE,
        &[
            ("icon", icon),
            ("tier", a.tier.as_str()),
            ("score", &score),
            ("strategy", a.recommended_strategy.as_str()),
            ("first_weight", &weight),
            ("approval", approval),
            ("source", source),
            ("head_sha", &short),
            ("factor_rows", &rows),
            ("rationale", &rationale),
            ("model", &model),
            ("prompt_version", &prompt_version),
            ("commands", &commands),
            // From the config, not the pull request: trusted.
            ("services", services),
        ],
    );
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// One line of untrusted text inside a table cell.
fn escape_inline(s: &str) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    escape_html(&one_line).replace('|', "\\|")
}

/// A block of untrusted text, quoted.
fn escape_block(s: &str) -> String {
    s.lines()
        .map(|l| format!("> {}", escape_html(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// HTML special characters become entities (no tags, no closing `</details>`), `@` mentions and
/// `#` references are broken with a zero-width joiner so nobody is pinged by model output.
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '@' => out.push_str("@\u{200d}"),
            '[' => out.push_str("\\["),
            ']' => out.push_str("\\]"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::{Factor, FactorKind, Strategy};

    #[test]
    fn model_text_cannot_break_out() {
        let a = Assessment {
            risk_score: 0.5,
            tier: RiskTier::High,
            recommended_strategy: Strategy::Canary10,
            requires_manual_approval: false,
            risk_factors: vec![Factor {
                category: FactorKind::Model,
                summary: "a | b\n</details><img src=x> @octocat [x](http://evil)".into(),
                files: vec![],
                weight: 0.5,
                source: FactorSource::Llm,
            }],
            source: AssessmentSource::Llm,
            rationale: Some("</details>\n@everyone <script>".into()),
            model: Some("m".into()),
            prompt_version: Some("v".into()),
        };
        let c = render(&a, "o/r", 1, "abc", "`svc`");
        assert_eq!(c.matches("</details>").count(), 1, "{c}");
        assert!(!c.contains("<img"), "{c}");
        assert!(!c.contains("<script"), "{c}");
        assert!(!c.contains("@octocat"), "{c}");
        assert!(!c.contains("@everyone"), "{c}");
        assert!(c.contains("\\[x\\](http"), "links are escaped: {c}");
        assert!(c.contains("a \\| b"), "{c}");
        assert!(c.starts_with(MARKER));
    }
}
