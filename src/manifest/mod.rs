//! Byte-preserving manifest edits: set an image, set a canary weight, set replica ratios.
//! Pure functions from text to text; no file or git I/O here.
//!
//! (Being built under issue 3.)

pub mod cli;

use serde::{Deserialize, Serialize};

/// One manifest target of an environment (a file and what to edit in it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Path of the manifest file inside the GitOps repository.
    pub path: String,
}

impl TargetConfig {
    pub fn validate(&self, key: &str, problems: &mut Vec<String>) {
        if self.path.trim().is_empty() {
            problems.push(format!("{key}.path: must not be empty"));
        }
    }
}
