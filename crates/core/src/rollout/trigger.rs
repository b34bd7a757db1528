//! From a merged change to a rollout's start: the image tag the configured template names, and
//! the gate on the commit's required checks (as in the pipeline of the article deploybot started
//! from, which docs/decisions.md names: lint, test, llm-eval, sbom-cve-scan). Pure decisions over
//! plain data; fetching check runs is the GitHub adapter's.

use std::collections::BTreeMap;

/// The image tag for a merge commit, from a template with `{sha}`, `{short_sha}` (7 characters)
/// and `{pr}` placeholders, e.g. `sha-{short_sha}`. The result must be a valid OCI tag.
pub fn image_tag(template: &str, sha: &str, pr: Option<u64>) -> Result<String, String> {
    TagTemplate::parse(template)?.render(sha, pr)
}

/// An image tag template (`services[].image_tag`), parsed once: its placeholders are known, so
/// rendering can only fail on the commit it is given (not a SHA, `{pr}` without a PR, a result
/// that is not a valid tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagTemplate {
    text: String,
    parts: Vec<TagPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TagPart {
    Literal(String),
    Sha,
    ShortSha,
    Pr,
}

impl TagTemplate {
    pub fn parse(template: &str) -> Result<TagTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(TagPart::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("image tag template {template:?}: unclosed {{"))?;
            parts.push(match &after[..close] {
                "sha" => TagPart::Sha,
                "short_sha" => TagPart::ShortSha,
                "pr" => TagPart::Pr,
                other => {
                    return Err(format!(
                        "image tag template {template:?}: unknown placeholder {{{other}}} \
                         (known: {{sha}}, {{short_sha}}, {{pr}})"
                    ));
                }
            });
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(TagPart::Literal(rest.to_string()));
        }
        Ok(TagTemplate {
            text: template.to_string(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The tag for merge commit `sha` of pull request `pr`.
    pub fn render(&self, sha: &str, pr: Option<u64>) -> Result<String, String> {
        let template = &self.text;
        if sha.len() < 7 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{sha:?} is not a commit SHA"));
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TagPart::Literal(text) => out.push_str(text),
                TagPart::Sha => out.push_str(sha),
                TagPart::ShortSha => out.push_str(&sha[..7]),
                TagPart::Pr => {
                    out.push_str(&pr.map(|n| n.to_string()).ok_or_else(|| {
                        format!("image tag template {template:?}: {{pr}} but no PR")
                    })?)
                }
            }
        }
        // OCI distribution spec: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
        let valid = !out.is_empty()
            && out.len() <= 128
            && !out.starts_with(['.', '-'])
            && out
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if valid {
            Ok(out)
        } else {
            Err(format!(
                "image tag template {template:?} gives {out:?}, not a valid image tag"
            ))
        }
    }
}

/// One check run on the merge commit (GitHub's check-runs API, or a commit status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRun {
    /// Newer runs (re-runs) have larger ids.
    pub id: u64,
    pub name: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// When completed: `success`, `neutral`, `skipped`, `failure`, `cancelled`, `timed_out`...
    pub conclusion: Option<String>,
}

/// Whether the required checks allow a rollout to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChecksGate {
    Ready,
    /// Still running, or not reported yet.
    Waiting {
        pending: Vec<String>,
    },
    /// A required check concluded without passing; the change is not deployed.
    Failed {
        check: String,
        conclusion: String,
    },
}

/// Decides the gate from the latest run of each required check.
pub fn required_checks(required: &[String], runs: &[CheckRun]) -> ChecksGate {
    let mut latest: BTreeMap<&str, &CheckRun> = BTreeMap::new();
    for run in runs {
        let slot = latest.entry(run.name.as_str()).or_insert(run);
        if run.id > slot.id {
            *slot = run;
        }
    }
    let mut pending = Vec::new();
    for name in required {
        match latest.get(name.as_str()) {
            None => pending.push(format!("{name} (not reported)")),
            Some(run) if run.status != "completed" => {
                pending.push(format!("{name} ({})", run.status))
            }
            Some(run) => match run.conclusion.as_deref() {
                // As branch protection treats them: neutral and skipped do not block.
                Some("success" | "neutral" | "skipped") => {}
                other => {
                    return ChecksGate::Failed {
                        check: name.clone(),
                        conclusion: other.unwrap_or("none").to_string(),
                    };
                }
            },
        }
    }
    if pending.is_empty() {
        ChecksGate::Ready
    } else {
        ChecksGate::Waiting { pending }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "4f2a9c81d3e7b6a5f0c1d2e3f4a5b6c7d8e9f0a1";

    #[test]
    fn image_tags_from_templates() {
        assert_eq!(
            image_tag("sha-{short_sha}", SHA, None).unwrap(),
            "sha-4f2a9c8"
        );
        assert_eq!(image_tag("{sha}", SHA, None).unwrap(), SHA);
        assert_eq!(
            image_tag("pr-{pr}-{short_sha}", SHA, Some(42)).unwrap(),
            "pr-42-4f2a9c8"
        );
        for (template, sha, pr, want) in [
            ("{branch}", SHA, None, "unknown placeholder {branch}"),
            ("sha-{short_sha", SHA, None, "unclosed"),
            ("pr-{pr}", SHA, None, "{pr} but no PR"),
            ("v/{short_sha}", SHA, None, "not a valid image tag"),
            ("{short_sha}", "main", None, "not a commit SHA"),
        ] {
            let err = image_tag(template, sha, pr).unwrap_err();
            assert!(err.contains(want), "{template}: {err}");
        }
    }

    fn run(id: u64, name: &str, status: &str, conclusion: Option<&str>) -> CheckRun {
        CheckRun {
            id,
            name: name.into(),
            status: status.into(),
            conclusion: conclusion.map(Into::into),
        }
    }

    #[test]
    fn the_gate_follows_the_latest_run_of_each_required_check() {
        let required: Vec<String> = ["lint", "test", "llm-eval", "sbom-cve-scan"]
            .map(String::from)
            .to_vec();
        let green = vec![
            run(1, "lint", "completed", Some("success")),
            run(2, "test", "completed", Some("success")),
            run(3, "llm-eval", "completed", Some("neutral")),
            run(4, "sbom-cve-scan", "completed", Some("success")),
            run(5, "optional-bench", "completed", Some("failure")),
        ];
        assert_eq!(required_checks(&required, &green), ChecksGate::Ready);

        let mut rerun = green.clone();
        rerun.push(run(9, "test", "in_progress", None));
        assert_eq!(
            required_checks(&required, &rerun),
            ChecksGate::Waiting {
                pending: vec!["test (in_progress)".into()]
            }
        );
        let mut failed = green.clone();
        failed.insert(0, run(10, "sbom-cve-scan", "completed", Some("failure")));
        assert_eq!(
            required_checks(&required, &failed),
            ChecksGate::Failed {
                check: "sbom-cve-scan".into(),
                conclusion: "failure".into()
            }
        );
        // A failed run followed by a successful re-run passes.
        let mut fixed = failed.clone();
        fixed.push(run(11, "sbom-cve-scan", "completed", Some("success")));
        assert_eq!(required_checks(&required, &fixed), ChecksGate::Ready);
        assert_eq!(
            required_checks(&required, &green[..2]),
            ChecksGate::Waiting {
                pending: vec![
                    "llm-eval (not reported)".into(),
                    "sbom-cve-scan (not reported)".into()
                ]
            }
        );
    }
}
