//! The GitOps writer: commits manifest edits to the repository Argo CD watches (git2), pushes
//! without force, reverts its own commits and opens pull requests for gated steps.
//!
//! (Being built under issue 3.)

pub mod bench;

use serde::{Deserialize, Serialize};

/// The `gitops` config section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitopsConfig {
    /// Default GitOps repository URL (`file://`, `https://`, `ssh://`) for environments that do
    /// not name their own.
    pub repo_url: Option<String>,
}

impl GitopsConfig {
    pub fn validate(&self, _problems: &mut Vec<String>) {}

    /// `owner/name` when the repository is on GitHub, so its webhooks are accepted.
    pub fn repo_full_name(&self) -> Option<String> {
        let url = self.repo_url.as_deref()?;
        let rest = url
            .strip_prefix("https://github.com/")
            .or_else(|| url.strip_prefix("git@github.com:"))
            .or_else(|| url.strip_prefix("ssh://git@github.com/"))?;
        Some(
            rest.trim_end_matches(".git")
                .trim_end_matches('/')
                .to_string(),
        )
    }
}
